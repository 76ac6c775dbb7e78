"""What every tool shares: the guard that turns a failure into one sentence, the progress reporter,
the result (summary as text, data as structured content), and the parameter types bounded by the
bridge's limits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from mcp_bridge.access.gate import Access
from mcp_bridge.bridge import Bridge
from mcp_bridge.client.client import GpuClient
from mcp_bridge.config import redactor
from mcp_bridge.mcp.errors import explain

T = TypeVar("T")

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=True)
PROGRESS_MIN_SHARDS = 2

Model = Annotated[
    str | None,
    Field(default=None, max_length=200, description="Model name; the bridge's or host's default when omitted."),
]
HostName = Annotated[str | None, Field(max_length=64, description="Run on this host only (by name).")]


class Match(BaseModel):
    index: int
    score: float
    text: str


def result(summary: str, output: BaseModel) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=summary)],
        structured_content=output.model_dump(mode="json"),
    )


def progress_reporter(ctx: Context) -> Callable[[int, int], Awaitable[None]]:
    async def report(done: int, total: int) -> None:
        if total >= PROGRESS_MIN_SHARDS:
            await ctx.report_progress(done, total, f"{done}/{total} shards done")

    return report


class Tools:
    """One server's view of its bridge for the tools: the limits, the redactor, and the guard."""

    def __init__(self, bridge: Bridge, access: Access | None = None) -> None:
        self.bridge = bridge
        self.access = access
        """The HTTP bridge's clients (their usage shows in gpu_status); None without tokens or on stdio."""
        self.limits = bridge.config.limits
        self.limits_audio = bridge.config.audio
        self.redact = redactor(bridge.config)
        # The limits are stated in the tools' input schemas (maxItems, maxLength) and enforced once, by
        # `tool_request` (`LimitsConfig.check`): a refusal then names the setting, in /v1's words.
        self.text_limit = Field(json_schema_extra={"maxLength": self.limits.maxTextLength})
        """Each text: `Annotated[str, text_limit]`, in `Annotated[list[...], batch_limit]` for a list."""
        self.batch_limit = Field(
            min_length=1, json_schema_extra={"maxItems": self.limits.maxBatchSize},
            description=f"Texts, 1 to {self.limits.maxBatchSize}, each non-blank and up to "
            f"{self.limits.maxTextLength} characters.",
        )

    @property
    def gpu(self) -> GpuClient:
        return self.bridge.gpu

    async def guarded(self, work: Awaitable[T]) -> T:
        """`work`'s result; any failure as a ToolError whose message says what to do (secrets redacted)."""
        if self.bridge.not_configured:
            if asyncio.iscoroutine(work):
                work.close()
            raise ToolError(self.bridge.not_configured)
        try:
            return await work
        except ToolError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence; bugs are logged in explain()
            raise ToolError(self.redact(explain(exc))) from None
