"""Host types: one `HostProtocol` per kind of server the pool can use, by the `type` a host is configured with.

    gpu-service  our service: every tool (mcp_bridge/protocols/gpu_service.py)
    openai       an OpenAI-compatible /v1/embeddings: embeddings only, plus reranking with `rerank: true`
                 and speech to text with `transcribe: true` (openai.py)
    tei          text-embeddings-inference's native API: embeddings only, plus reranking with `rerank: true` (tei.py)

Each host type serves its tasks through one typed exchange per operation (exchange.py); speech to text shares
its request and answer check in speech.py.

A new host type is one subclass of `HostProtocol` added to `HOST_TYPES`, and its test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp_bridge.protocols.base import HealthVerdict, HostProtocol, HttpCall, Task, Unsupported
from mcp_bridge.protocols.gpu_service import GpuServiceProtocol
from mcp_bridge.protocols.openai import OpenAIProtocol
from mcp_bridge.protocols.tei import TEIProtocol

if TYPE_CHECKING:
    from mcp_bridge.config import HostConfig

HOST_TYPES: dict[str, type[HostProtocol]] = {p.type: p for p in (GpuServiceProtocol, OpenAIProtocol, TEIProtocol)}


def protocol_for(config: HostConfig) -> HostProtocol:
    return HOST_TYPES[config.type](config)


__all__ = ["HOST_TYPES", "HealthVerdict", "HostProtocol", "HttpCall", "Task", "Unsupported", "protocol_for"]
