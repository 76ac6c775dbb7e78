"""Other hardware and operating systems: CUDA/ROCm, then Apple's MPS, then the CPU; and the
one Linux-only call (the embedded service's parent-death signal) degrading elsewhere.

There is no GPU here, CUDA or Apple, and this is Linux: these tests patch torch's
availability functions (`torch.cuda.is_available`, `torch.backends.mps.is_available`),
the `torch.mps` memory calls, and `sys.platform` / libc - the only mocks, standing in for
hardware and systems that cannot exist on this machine. They check our decisions, not
that MPS, macOS or Windows work; those have not been tried.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch
from fastapi.testclient import TestClient

from gpu_service.runtime import device as devices
from gpu_service.settings import Settings


def gpus(monkeypatch: pytest.MonkeyPatch, *, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1 if cuda else 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(("cuda", "mps", "chosen"), [
    (True, True, "cuda:0"),  # a CUDA/ROCm GPU first
    (False, True, "mps"),  # then the Apple GPU
    (False, False, "cpu"),
])
def test_automatic_choice(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool, chosen: str) -> None:
    gpus(monkeypatch, cuda=cuda, mps=mps)
    assert str(devices.select_device(None)) == chosen


def test_torch_device_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus(monkeypatch, cuda=True, mps=True)
    assert devices.select_device("mps") == torch.device("mps"), "the operator's choice beats the CUDA GPU"
    gpus(monkeypatch, cuda=False, mps=False)
    with pytest.raises(ValueError, match="TORCH_DEVICE='mps' but torch sees no Apple GPU"):
        devices.select_device("mps")
    with pytest.raises(ValueError, match="runs on cuda, mps, cpu"):
        devices.select_device("xpu")
    assert devices.select_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(("setting", "kind", "half"), [
    (None, "cuda", True), (False, "cuda", False), (True, "cuda", True),
    (None, "mps", False), (True, "mps", True), (False, "mps", False),  # MPS: off unless GPU_FP16=1
    (None, "cpu", False), (True, "cpu", False),  # never on the CPU
])
def test_half_precision_policy(setting: bool | None, kind: str, half: bool) -> None:
    assert devices.use_half_precision(setting, torch.device(kind)) is half


@pytest.mark.parametrize(("raw", "parsed"), [(None, None), ("", None), ("1", True), ("0", False), ("false", False)])
def test_gpu_fp16_setting(monkeypatch: pytest.MonkeyPatch, raw: str | None, parsed: bool | None) -> None:
    if raw is None:
        monkeypatch.delenv("GPU_FP16", raising=False)
    else:
        monkeypatch.setenv("GPU_FP16", raw)
    assert Settings.from_env().fp16 is parsed


def test_mps_memory_and_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    mps = torch.device("mps")
    emptied: list[bool] = []
    fake = SimpleNamespace(recommended_max_memory=lambda: 16 * 2**30, driver_allocated_memory=lambda: 4 * 2**30,
                           empty_cache=lambda: emptied.append(True))
    monkeypatch.setattr(torch, "mps", fake)
    assert devices.vram_mb(mps) == (16 * 1024, 12 * 1024)
    devices.release_cached_memory(mps)
    assert emptied == [True]
    assert devices.device_name(mps) == "Apple GPU (MPS)"
    assert devices.is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 17.9 GB)"))

    # An older torch without these calls, or torch's own refusal without MPS: unknown, not a crash.
    monkeypatch.setattr(torch, "mps", SimpleNamespace())
    assert devices.vram_mb(mps) == (None, None)
    devices.release_cached_memory(mps)


def test_info_and_health_report_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service picks MPS by itself and says so; no model is loaded (there is no Apple GPU)."""
    from gpu_service.app import create_app

    gpus(monkeypatch, cuda=False, mps=True)
    with TestClient(create_app(Settings(warm_defaults=False))) as client:
        assert client.get("/health").json()["device"] == "mps"
        info = client.get("/info").json()
    assert info["device"] == "mps" and info["device_name"] == "Apple GPU (MPS)"
    assert info["half_precision"] is False, "fp16 is off on MPS unless GPU_FP16=1"
    assert info["vram_total_mb"] is None, "torch refuses the memory query without a real MPS device"


def test_parent_death_signal_degrades_without_linux_libc(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    from mcp_bridge.embedded import die_with_parent

    def no_libc(*args: object, **kwargs: object) -> None:
        raise OSError("libc.so.6: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    die_with_parent()  # macOS/Windows have no libc.so.6: nothing happens, nothing raises


@pytest.mark.anyio
async def test_embedded_service_uses_no_preexec_fn_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    """Popen refuses preexec_fn on Windows: the embedded service passes none off Linux."""
    from mcp_bridge import embedded

    seen: dict[str, object] = {}

    class Stop(Exception):
        pass

    def popen(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(embedded.sys, "platform", "win32")
    monkeypatch.setattr(embedded.subprocess, "Popen", popen)
    with pytest.raises(Stop):
        await embedded.EmbeddedService().start()
    assert seen["preexec_fn"] is None


def test_cpu_threads_default_to_every_core_and_follow_gpu_cpu_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU device torch gets one thread per usable core (the older policy left one idle
    under load, which cost ~40% on 2 cores), or exactly GPU_CPU_THREADS."""
    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        assert devices.use_cpu_threads(None) == cores == torch.get_num_threads()
        assert devices.use_cpu_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("kind", "free_mb", "tokens"), [
    ("cpu", None, 4_096),             # CPU: small batches run fastest per token
    ("mps", None, 16_384),            # Apple GPU: the fixed default
    ("cuda", 2_048, 16_384),          # a small GPU: never below the default
    ("cuda", 20_000, 160_000),        # half of 20,000 MiB at 64 KiB a token
    ("cuda", 80_000, 262_144),        # a big GPU: capped
])
def test_batch_token_budget_is_sized_from_free_gpu_memory(
    monkeypatch: pytest.MonkeyPatch, kind: str, free_mb: float | None, tokens: int
) -> None:
    """No GPU here: the free-memory reading is patched (what torch.cuda.mem_get_info would say)."""
    monkeypatch.setattr(devices, "vram_mb", lambda device: (free_mb, free_mb))
    assert devices.batch_token_budget(torch.device(kind)) == tokens


def test_info_reports_the_batch_budget_in_use() -> None:
    from gpu_service.app import create_app

    with TestClient(create_app(Settings(warm_defaults=False, torch_device="cpu"))) as client:
        limits = client.get("/info").json()["limits"]
    assert limits["max_batch_tokens"] == 4_096 and limits["max_batch_size"] == 64
    assert limits["batch_overhead_tokens"] == 64


@pytest.mark.parametrize("variable", ["GPU_FP16", "GPU_WARM_DEFAULTS"])
@pytest.mark.parametrize(("raw", "parsed"), [
    ("1", True), ("true", True), ("True", True), ("yes", True), ("on", True), ("ON", True),
    ("0", False), ("false", False), ("False", False), ("no", False), ("off", False), ("Off", False),
])
def test_every_switch_reads_one_boolean_rule(monkeypatch: pytest.MonkeyPatch, variable: str, raw: str,
                                             parsed: bool) -> None:
    """GPU_FP16=off was off while GPU_WARM_DEFAULTS=off (or =False) left warm-up on: one rule for both now."""
    monkeypatch.setenv(variable, raw)
    settings = Settings.from_env()
    assert (settings.fp16 if variable == "GPU_FP16" else settings.warm_defaults) is parsed


@pytest.mark.parametrize("variable", ["GPU_FP16", "GPU_WARM_DEFAULTS"])
def test_a_switch_that_is_neither_on_nor_off_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "maybe")
    refusal = " is not a switch; use one of " if variable == "GPU_FP16" else ": maybe is no task here; use a switch \\("
    with pytest.raises(ValueError, match=rf"{variable}='maybe'{refusal}1, true, yes, on, 0"):
        Settings.from_env()


def test_warm_defaults_may_name_the_tasks_to_warm(monkeypatch: pytest.MonkeyPatch) -> None:
    """A speech host loads Whisper at start-up and leaves the embedding models to a first request."""
    variables = {"embed": "MODEL_EMBED", "bertscore": "MODEL_BERTSCORE", "transcribe": "MODEL_TRANSCRIBE"}
    monkeypatch.setenv("GPU_WARM_DEFAULTS", "Transcribe, bertscore")
    settings = Settings.from_env(model_variables=variables)
    assert settings.warm_defaults == ("transcribe", "bertscore")
    assert [settings.warms(k) for k in ("transcribe", "bertscore", "embed")] == [True, True, False]
    assert Settings().warms("embed") and not Settings(warm_defaults=False).warms("embed")
    monkeypatch.setenv("GPU_WARM_DEFAULTS", "transcribe,speach")
    with pytest.raises(ValueError, match=r"GPU_WARM_DEFAULTS='transcribe,speach': speach is no task here; use a "
                                         r"switch \(1, true.*\) or task names \(embed, bertscore, transcribe\)"):
        Settings.from_env(model_variables=variables)


@pytest.mark.parametrize(("raw", "message"), [
    ("lots", "GPU_MODEL_MEMORY_MB='lots' is not a number"), ("0", "GPU_MODEL_MEMORY_MB=0 must be > 0"),
    ("-5", "GPU_MODEL_MEMORY_MB=-5 must be > 0"),
])
def test_the_model_memory_budget_is_checked(monkeypatch: pytest.MonkeyPatch, raw: str, message: str) -> None:
    monkeypatch.setenv("GPU_MODEL_MEMORY_MB", raw)
    with pytest.raises(ValueError, match=message):
        Settings.from_env()
    monkeypatch.setenv("GPU_MODEL_MEMORY_MB", "1536.5")
    assert Settings.from_env().model_memory_mb == 1536.5


def test_batch_limits_are_resolved_once_per_device() -> None:
    measured: list[str] = []
    cpu = Settings().batch_limits("cpu", lambda: measured.append("cpu") or 4096)
    gpu = Settings().batch_limits("cuda", lambda: measured.append("cuda") or 65_536)
    assert (cpu.max_tokens, cpu.max_size, cpu.overhead_tokens) == (4096, 64, 64)
    assert (gpu.max_tokens, gpu.max_size, gpu.overhead_tokens) == (65_536, 256, 2048)
    fixed = Settings(max_batch_tokens=1000, max_batch_size=8, batch_overhead_tokens=5)
    assert fixed.batch_limits("cuda", lambda: measured.append("fixed") or 1) == type(cpu)(1000, 8, 5)
    assert measured == ["cpu", "cuda"], "a set GPU_MAX_BATCH_TOKENS is not measured"
