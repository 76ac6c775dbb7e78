"""The rules both sides share, in gpu_protocol, exercised in-process: the one texts check and the
one cancel-on-disconnect helper (the HTTP tests show them at work in the service)."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from gpu_protocol.cancel import Cancellation, WorkCancelled, cancel_on_disconnect
from gpu_protocol.routes import retry_after_headers
from gpu_protocol.validation import TextsRejected, check_texts


@pytest.mark.parametrize(
    "texts, limits, status, field, words",
    [
        (["ok", " \n"], {}, 422, "texts[1]", "texts[1] is blank"),
        (["a", "b", "c"], {"max_texts": 2}, 413, "texts", "texts has 3 items; this service accepts at most 2"),
        (["ok", "x" * 11], {"max_text_chars": 10}, 422, "texts[1]", "texts[1] has 11 characters; at most 10"),
    ],
)
def test_check_texts_names_the_field_and_the_limit(texts: list[str], limits: dict, status: int, field: str,
                                                    words: str) -> None:
    with pytest.raises(TextsRejected) as err:
        check_texts(texts, "texts", **limits)
    assert (err.value.status, err.value.field) == (status, field)
    assert words in err.value.message


def test_check_texts_says_whose_limit_and_which_setting() -> None:
    with pytest.raises(TextsRejected) as err:
        check_texts(["a", "b"], "input", max_texts=1, holder="this bridge",
                    settings=("limits.maxBatchSize", "limits.maxTextLength"))
    assert "this bridge accepts at most 1" in err.value.message and "(limits.maxBatchSize)" in err.value.message
    check_texts(["fine", "texts"], "input", max_texts=2, max_text_chars=5)  # within: no error


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert retry_after_headers(0.2) == {"Retry-After": "1"}
    assert retry_after_headers(2.6) == {"Retry-After": "3"}
    assert retry_after_headers(None) is None


class Client:
    """An ASGI `receive` whose client disconnects when told to."""

    def __init__(self) -> None:
        self.gone = anyio.Event()

    async def receive(self) -> dict[str, str]:
        await self.gone.wait()
        return {"type": "http.disconnect"}


@pytest.mark.anyio
async def test_the_work_answers_while_the_client_stays() -> None:
    async def work() -> int:
        await anyio.sleep(0)
        return 42

    assert await cancel_on_disconnect(Client().receive, work()) == 42


@pytest.mark.anyio
async def test_a_disconnect_cancels_the_work() -> None:
    client, stopped = Client(), anyio.Event()

    async def work() -> None:
        try:
            client.gone.set()
            await anyio.sleep_forever()
        finally:
            stopped.set()

    with pytest.raises(WorkCancelled):
        await cancel_on_disconnect(client.receive, work())
    assert stopped.is_set()


@pytest.mark.anyio
async def test_cancelling_the_handle_cancels_the_work_and_errors_pass_through() -> None:
    cancellation, stopped = Cancellation(), anyio.Event()

    async def cancelled_elsewhere() -> None:
        try:
            cancellation.cancel()
            await anyio.sleep_forever()
        finally:
            stopped.set()

    with pytest.raises(WorkCancelled):
        await cancel_on_disconnect(Client().receive, cancelled_elsewhere(), cancellation)
    assert stopped.is_set()

    cancelled_early, started = Cancellation(), False  # POST /cancel/{id} before the work ran

    async def never_runs() -> None:
        nonlocal started
        started = True

    cancelled_early.cancel()
    with pytest.raises(WorkCancelled):
        await cancel_on_disconnect(Client().receive, never_runs(), cancelled_early)
    assert not started

    async def fails() -> None:
        raise LookupError("the work's own error")

    with pytest.raises(LookupError, match="the work's own error"):
        await cancel_on_disconnect(Client().receive, fails())


@pytest.mark.anyio
async def test_a_shutdown_cancels_the_work_and_is_not_taken_for_a_client_leaving() -> None:
    stopped = anyio.Event()

    async def work() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

    handler = asyncio.ensure_future(cancel_on_disconnect(Client().receive, work()))
    await anyio.sleep(0.01)
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    assert stopped.is_set()


def test_the_bridges_tools_and_v1_refuse_texts_in_the_same_words() -> None:
    """The MCP tools and `/v1` hold texts to the bridge's limits with the one check: same words, the setting named."""
    from mcp.server.mcpserver.exceptions import ToolError

    from gpu_protocol.embed import EmbedRequest
    from gpu_protocol.rerank import RerankRequest
    from mcp_bridge.config import parse_config
    from mcp_bridge.http_api.errors import ApiError
    from mcp_bridge.http_api.requests import within_limits
    from mcp_bridge.mcp.errors import tool_request

    limits = parse_config({"limits": {"maxBatchSize": 2, "maxTextLength": 5}}, "test").limits
    for texts, status, words in [(["a", "b", "c"], 413, "texts has 3 items; this bridge accepts at most 2 per request "
                                                         "(limits.maxBatchSize)"),
                                 (["ok", "toolong"], 422, "texts[1] has 7 characters; at most 5 are allowed "
                                                          "(limits.maxTextLength)"),
                                 (["ok", " "], 422, "texts[1] is blank")]:
        with pytest.raises(ToolError) as tool:
            tool_request(EmbedRequest, limits, texts=texts)
        with pytest.raises(ApiError) as api:
            within_limits(limits, texts=texts)
        assert words in str(tool.value) and words in api.value.message and api.value.status == status
        assert api.value.param == "texts"
    with pytest.raises(ToolError, match="query has 6 characters"):
        tool_request(RerankRequest, limits, query="longer", documents=["ok"])
