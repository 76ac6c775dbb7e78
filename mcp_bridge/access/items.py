"""What one call counts against a client's `itemsPerMinute`, the one rule for both front ends: an item is a
piece of work the pool runs, a text to embed (for gpu_similarity every text it embeds, the query too), a document
to rerank, a pair to score with BERTScore, an audio file to transcribe, a text to speak. The diagnostics count
none (they still count as requests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ITEM_ARGUMENTS = {
    "gpu_embed": ("texts",),
    "gpu_similarity": ("texts", "texts_b", "query"),
    "gpu_rerank": ("documents",),
    "gpu_bertscore": ("candidates",),
}
"""The arguments of an MCP tool call whose texts are its items (a list: one each; a single text: one)."""
ONE_ITEM_TOOLS = frozenset({"gpu_transcribe", "gpu_speak"})
"""One audio file, one text to speak: one item per call."""


def tool_items(tool: str, arguments: Mapping[str, Any]) -> int:
    """The items of an MCP tool call, read from its arguments before they are validated (a malformed one counts
    none: the call is refused by validation, not by the quota)."""
    if tool in ONE_ITEM_TOOLS:
        return 1
    count = 0
    for name in ITEM_ARGUMENTS.get(tool, ()):
        value = arguments.get(name)
        count += len(value) if isinstance(value, list) else int(isinstance(value, str))
    return count
