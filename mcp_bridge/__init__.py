"""MCP bridge: GPU tools for an agent, spread over a pool of GPU hosts.

Installs without torch and without the GPU service: what it shares with its hosts is `gpu_protocol`.
"""

__all__ = ["__version__"]
__version__ = "0.4.0"
