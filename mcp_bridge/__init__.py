"""MCP bridge: GPU tools for an agent, spread over a pool of GPU hosts.

Installs without torch. The GPU service's wire schema is shared from `gpu_service.schema`.
"""

__all__ = ["__version__"]
__version__ = "0.3.0"
