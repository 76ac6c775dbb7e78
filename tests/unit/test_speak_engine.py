"""The Piper voice in-process (no espeak-ng: phonemes are written here): which files a voice name means,
the clear errors, Piper's id layout, and batches cut back into sentences exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from gpu_service.errors import ModelNotFound, Unavailable, Unprocessable
from gpu_service.models.resolve import ModelPolicy
from gpu_service.settings import Settings
from gpu_service.tasks import TASKS
from gpu_service.tasks.speak import engine as engine_module
from gpu_service.tasks.speak.engine import Noise, PiperEngine, Utterance
from gpu_service.tasks.speak.phonemize import EspeakPhonemizer
from gpu_service.tasks.speak.service import speaker_of
from gpu_service.tasks.speak.voices import (
    BUNDLED_VOICE,
    VoiceFiles,
    load_config,
    resolve_voice,
)
from tests.support.piper_voice import FOX, HELLO


class WrittenPhonemes:
    """A phonemizer that knows a few sentences by heart (espeak-ng is a process: tests/service uses it)."""

    known = {"Hello, world.": HELLO, "The quick brown fox jumps over the lazy dog.": FOX}

    def phonemes(self, sentences: list[str]) -> list[list[str]]:
        return [list(self.known[s]) for s in sentences]


@pytest.fixture(scope="module")
def engine(voice: VoiceFiles) -> PiperEngine:
    """The bundled voice without randomness: the same ids give the same audio, batched or not; batched as
    on a GPU (`batch_calls=True`), so its batches are tested on this CPU."""
    return PiperEngine(voice, threads=2, noise=Noise(0.0, 0.0), phonemizer=WrittenPhonemes(), batch_calls=True)


def test_the_bundled_voice_loads_from_the_package(engine: PiperEngine) -> None:
    assert engine.name == BUNDLED_VOICE and engine.voices == [BUNDLED_VOICE]
    assert engine.sample_rate == 22_050 and engine.memory_bytes > 10 * 2**20
    assert engine.batches and engine.samples_per_frame == 256  # its graph gives durations: batches are cut exactly
    assert engine.device == "CPUExecutionProvider"


def test_ids_follow_pipers_layout(voice: VoiceFiles) -> None:
    config = load_config(voice)
    m = config.phoneme_id_map
    assert config.ids(["h", "ə", "?", "\N{SNOWMAN}"]) == [*m["^"], *m["_"], *m["h"], *m["_"], *m["ə"], *m["_"],
                                                           *m["?"], *m["_"], *m["$"]]  # an unknown phoneme is left out


def _loud(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


def test_a_sentence_is_speech_as_long_as_its_text(engine: PiperEngine) -> None:
    hello, fox = engine.synthesize(["Hello, world.", "The quick brown fox jumps over the lazy dog."])
    assert hello.dtype == np.float32 and _loud(hello) > 0.02 and _loud(fox) > 0.02
    hello_s, fox_s = len(hello) / engine.sample_rate, len(fox) / engine.sample_rate
    assert 0.5 < hello_s < 2.5 and 1.8 < fox_s < 5.0 and fox_s > 1.8 * hello_s


@pytest.fixture
def calls(engine: PiperEngine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each model call the engine makes."""
    sizes: list[int] = []
    call = engine._call

    def counted(batch: list[Utterance], speed: float) -> tuple[np.ndarray, list[np.ndarray]]:
        sizes.append(len(batch))
        return call(batch, speed)

    monkeypatch.setattr(engine, "_call", counted)
    return sizes


def test_a_batch_is_cut_back_into_the_sentences_it_would_be_alone(engine: PiperEngine, calls: list[int]) -> None:
    utterances = engine.prepare(["The quick brown fox jumps over the lazy dog.", "Hello, world."])
    together = list(engine.run(utterances))
    alone = [next(iter(engine.run([u]))) for u in utterances]
    assert calls == [2, 1, 1]
    for batched, single in zip(together, alone, strict=True):
        assert len(batched) == len(single) and np.abs(batched - single).max() < 1e-3


def test_speed_two_takes_about_half_the_time_and_speeds_never_share_a_call(engine: PiperEngine,
                                                                           calls: list[int]) -> None:
    (normal,) = engine.prepare(["The quick brown fox jumps over the lazy dog."])
    fast = Utterance(normal.ids, speed=2.0)
    audio = list(engine.run([normal, fast, normal]))
    assert sorted(calls) == [1, 2] and len(audio[0]) == len(audio[2])
    assert 0.4 < len(audio[1]) / len(audio[0]) < 0.7  # each id's frames are rounded up: a bit over half


def test_a_voice_without_durations_is_run_one_sentence_per_call(voice: VoiceFiles,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "with_extra_output", lambda model: None)
    plain = PiperEngine(voice, threads=2, noise=Noise(0.0, 0.0), phonemizer=WrittenPhonemes(), batch_calls=True)
    assert not plain.batches
    hello, fox = plain.synthesize(["Hello, world.", "The quick brown fox jumps over the lazy dog."])
    assert len(fox) > 1.8 * len(hello) and _loud(hello) > 0.02


def test_on_a_cpu_each_sentence_is_its_own_call_one_per_worker_in_input_order(voice: VoiceFiles,
                                                                            engine: PiperEngine) -> None:
    single = PiperEngine(voice, threads=2, noise=Noise(0.0, 0.0), phonemizer=WrittenPhonemes())
    assert not single.batch_calls and not single.batches and not single.padded and single.concurrency == 2
    assert single.session.get_session_options().intra_op_num_threads == 1  # a thread per call, calls side by side
    sizes: list[int] = []
    call = single._call

    def counted(batch: list[Utterance], speed: float) -> tuple[np.ndarray, list[np.ndarray]]:
        sizes.append(len(batch))
        return call(batch, speed)

    single._call = counted  # type: ignore[method-assign]
    hello, fox = single.prepare(["Hello, world.", "The quick brown fox jumps over the lazy dog."])
    audio = list(single.run([hello, fox, Utterance(hello.ids, speed=2.0)]))
    assert sizes == [1, 1, 1]
    alone = list(engine.run([hello])) + list(engine.run([fox]))  # the batching engine, one at a time
    assert [len(a) for a in audio[:2]] == [len(a) for a in alone] and len(audio[2]) < len(audio[0])
    assert all(np.abs(a - b).max() < 1e-3 for a, b in zip(audio, alone, strict=False))
    single.close()


def test_an_operators_voice_with_several_speakers_in_the_model_dirs(voice: VoiceFiles, tmp_path: Path) -> None:
    """A voice of the operator's (`GPU_MODEL_DIRS`, named by its file's name): allowed, found, its speakers
    listed and spoken by name (their ids go to the graph's `sid` input, which a multi-speaker voice has)."""
    models = tmp_path / "voices"
    models.mkdir()
    (models / "duo.onnx").symlink_to(voice.model)
    raw = json.loads(voice.config.read_text())
    (models / "duo.onnx.json").write_text(json.dumps({**raw, "num_speakers": 2, "speaker_id_map": {"amy": 0, "bob": 1}}))
    settings = Settings(model_dirs=[str(models)])
    ModelPolicy(settings).check("duo")
    speak = next(task for task in TASKS if task.kind == "speak")
    assert speak.resolve is not None and speak.resolve("duo", settings).origin == "directory"
    duo = PiperEngine(resolve_voice("duo", [str(models)]), threads=1, noise=Noise(0.0, 0.0),
                      phonemizer=WrittenPhonemes())
    assert duo.voices == ["amy", "bob"] and duo.details().speakers == ["amy", "bob"]
    assert (speaker_of(duo, "bob"), speaker_of(duo, "amy"), speaker_of(duo, "alloy")) == (1, 0, 0)
    with pytest.raises(Unprocessable, match="voices: amy, bob, alloy"):
        speaker_of(duo, "duo")
    feeds: list[dict[str, np.ndarray]] = []
    session = duo.session

    class WithSpeakers:
        """The same graph, as if it took `sid` (this voice's graph has one speaker)."""

        def run(self, outputs: list[str], given: dict[str, np.ndarray]) -> list[np.ndarray]:
            feeds.append(given)
            return session.run(outputs, {k: v for k, v in given.items() if k != "sid"})

    duo.session, duo._inputs = WithSpeakers(), {*duo._inputs, "sid"}  # type: ignore[assignment]
    (hello,) = duo.prepare(["Hello, world."], speaker=speaker_of(duo, "bob"))
    (audio,) = duo.run([hello])
    assert feeds[0]["sid"].tolist() == [1] and _loud(audio) > 0.02
    duo.close()


@pytest.mark.anyio
async def test_info_lists_the_speakers_of_a_loaded_voice_with_several(voice: VoiceFiles, tmp_path: Path) -> None:
    """/info's `speak` capability names the speakers of a loaded voice model that has several (what the
    bridge lists at /v1/audio/voices and routes a request's `voice` by); a one-speaker voice adds none."""
    from gpu_service.capabilities import capabilities
    from gpu_service.runtime.state import ServiceState

    models = tmp_path / "voices"
    models.mkdir()
    _voice_copy(voice, models, "solo")
    (models / "duo.onnx").symlink_to(voice.model)
    raw = json.loads(voice.config.read_text())
    (models / "duo.onnx.json").write_text(json.dumps({**raw, "num_speakers": 2, "speaker_id_map": {"amy": 0, "bob": 1}}))
    settings = Settings(model_dirs=[str(models)], warm_defaults=False, cpu_threads=1)
    state = ServiceState(settings, TASKS)
    registry = state.registry
    async with registry.use(registry.key("speak", "duo")), registry.use(registry.key("speak", "solo")):
        speak = capabilities(state, settings)["speak"]
    assert sorted(speak.loaded) == ["duo", "solo"] and speak.speakers == {"duo": ["amy", "bob"]}
    assert speak.voice_model("bob") == "duo" and speak.voice_model("solo") == "solo"
    await registry.close()


def _voice_copy(voice: VoiceFiles, folder: Path, stem: str = "my-voice") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.onnx").symlink_to(voice.model)
    (folder / f"{stem}.onnx.json").symlink_to(voice.config)
    return folder / f"{stem}.onnx"


def test_a_voice_is_named_by_package_path_folder_or_model_dir(voice: VoiceFiles, tmp_path: Path) -> None:
    assert resolve_voice(BUNDLED_VOICE).origin == "bundled"
    model = _voice_copy(voice, tmp_path / "voices" / "joe")
    by_path = resolve_voice(str(model))
    assert (by_path.model, by_path.config.name, by_path.origin) == (model, "my-voice.onnx.json", "path")
    assert resolve_voice(str(model.parent)).model == model
    assert resolve_voice("joe", [str(tmp_path / "voices")]).model == model  # a folder in GPU_MODEL_DIRS
    assert resolve_voice("my-voice", [str(model.parent)]).model == model  # <dir>/<name>.onnx


def test_a_bad_voice_gets_an_error_saying_what_a_voice_is(voice: VoiceFiles, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no Piper voice 'nobody'.*GPU_MODEL_DIRS"):
        resolve_voice("nobody", [str(tmp_path)])
    with pytest.raises(ModelNotFound, match="no Piper voice at"):
        resolve_voice(str(tmp_path / "missing.onnx"))
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(b"")
    with pytest.raises(ModelNotFound, match="has no lonely.onnx.json beside it"):
        resolve_voice(str(lonely))
    with pytest.raises(ModelNotFound, match="exactly one Piper voice.*found none"):
        resolve_voice(str(_empty(tmp_path / "empty")))
    _voice_copy(voice, tmp_path / "two", "a")
    _voice_copy(voice, tmp_path / "two", "b")
    with pytest.raises(ModelNotFound, match="found a.onnx, b.onnx"):
        resolve_voice(str(tmp_path / "two"))
    with pytest.raises(ModelNotFound, match="not a Piper voice"):
        resolve_voice(str(voice.config))


def _empty(folder: Path) -> Path:
    folder.mkdir()
    return folder


def test_a_config_that_is_no_piper_config_is_refused(voice: VoiceFiles, tmp_path: Path) -> None:
    raw = json.loads(voice.config.read_text())
    for name, change, message in [("text", {"phoneme_type": "text"}, "'text' phonemes"),
                                  ("no-rate", {"audio": {}}, "not a Piper voice config: KeyError"),
                                  ("no-bos", {"phoneme_id_map": {"_": [0], "$": [2]}}, "lacks \\^")]:
        config = tmp_path / f"{name}.onnx.json"
        config.write_text(json.dumps({**raw, **change}))
        with pytest.raises(Unprocessable, match=message):
            load_config(VoiceFiles(name, voice.model, config, "path"))


def test_a_host_without_espeak_ng_is_told_how_to_get_it() -> None:
    with pytest.raises(Unavailable, match="apt-get install espeak-ng"):
        EspeakPhonemizer("en-us", program="espeak-ng-that-is-not-installed")


def test_cuda_goes_first_when_onnxruntime_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mock: no GPU exists on this machine, so onnxruntime's list of providers is patched (the CUDA row of
    bench/gpu.md is the check on a real one)."""
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert engine_module.providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["AzureExecutionProvider", "CPUExecutionProvider"])
    assert engine_module.providers() == ["CPUExecutionProvider"]


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_a_voice_that_ends_up_on_the_cpu_despite_cuda_warns_and_runs_one_call_per_core(
        voice: VoiceFiles, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A mock, as above: onnxruntime says it has CUDA, the session still lands on the CPU (this machine has no
    GPU, as when CUDA's libraries are missing): the engine says so and runs as a CPU engine (no batches, one
    single-thread call per core), not as a batching one."""
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with caplog.at_level("WARNING", logger=engine_module.__name__):
        fallen = PiperEngine(voice, threads=2, noise=Noise(0.0, 0.0), phonemizer=WrittenPhonemes())
    assert "onnxruntime has CUDA but the session runs on the CPU" in caplog.text
    assert fallen.device == "CPUExecutionProvider" and not fallen.batch_calls and not fallen.batches
    assert fallen.concurrency == 2 and fallen.session.get_session_options().intra_op_num_threads == 1
    fallen.close()
