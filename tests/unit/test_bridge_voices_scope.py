"""`GET /v1/audio/voices` on the bridge counts as `gpu_speak` (a client without it gets 403), and lists the
voices of speaking hosts only (a host without `speak` in its /info, a 0.4.0 host, adds nothing)."""

from __future__ import annotations

from gpu_protocol.capabilities import TaskModels
from gpu_protocol.speech_synthesis import OPENAI_VOICES, VOICES
from gpu_protocol.status import InfoResponse
from mcp_bridge.access.scopes import ROUTE_TOOLS
from mcp_bridge.client.views import InfoRow
from mcp_bridge.config import HostConfig
from mcp_bridge.http_api.speech import voices_answer


def test_the_voices_route_counts_as_gpu_speak() -> None:
    assert ROUTE_TOOLS[VOICES] == "gpu_speak"


def _row(name: str, capabilities: dict[str, TaskModels] | None) -> InfoRow:
    info = InfoResponse.model_construct(capabilities=capabilities)
    return InfoRow(name=name, url=f"http://{name}", info=info)


def test_the_listing_merges_speaking_hosts_and_openai_hosts_that_speak() -> None:
    rows = [_row("a", {"speak": TaskModels(default="joe", loaded=["joe", "amy"])}),
            _row("b", {"speak": TaskModels(default="amy")}),
            _row("old", None), _row("embeds", {"embed": TaskModels(default="minilm")})]
    hosts = [HostConfig(name="kokoro", url="http://kokoro/v1", type="openai", speak=True),
             HostConfig(name="tei", url="http://tei", type="tei")]
    listing = voices_answer(rows, hosts)
    assert listing["voices"] == ["joe", "amy", *OPENAI_VOICES]
    assert listing["models"] == [{"model": "joe", "hosts": ["a"]}, {"model": "amy", "hosts": ["a", "b"]},
                                 {"model": "tts-1", "hosts": ["kokoro"]}]


def test_the_speakers_of_a_voice_model_with_several_are_listed() -> None:
    rows = [_row("a", {"speak": TaskModels(default="duo", loaded=["duo"], speakers={"duo": ["amy", "bob"]})}),
            _row("b", {"speak": TaskModels(default="joe", loaded=["joe"])})]
    listing = voices_answer(rows, [])
    assert listing["voices"] == ["duo", "amy", "bob", "joe", *OPENAI_VOICES]
    assert listing["models"] == [{"model": "duo", "hosts": ["a"]}, {"model": "joe", "hosts": ["b"]}]


def test_the_model_that_speaks_a_voice() -> None:
    """The rule the bridge routes a voice by (gpu_protocol.capabilities.TaskModels.voice_model)."""
    speak = TaskModels(default="duo", loaded=["duo", "joe"], speakers={"duo": ["amy", "bob"]},
                       names={"joe": ["/models/joe.onnx"]})
    assert [speak.voice_model(v) for v in ("bob", "duo", "joe", "/models/joe.onnx", "alloy", "carl")] == [
        "duo", "duo", "joe", "joe", None, None]
