"""GPU service: a FastAPI app that embeds texts, computes BERTScore and reranks on the local GPU (or CPU).

The app lives in `gpu_service.app`; the wire protocol it speaks (models, routes, limits, the
vector codec, the key check) is `gpu_protocol`, shared with the bridge. The service ships as
its own distribution (`openclaw-gpu-service`, see `service/pyproject.toml`).
"""

__all__ = ["__version__"]
__version__ = "0.4.0"
