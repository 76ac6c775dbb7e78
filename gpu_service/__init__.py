"""GPU service: a FastAPI app that embeds texts and computes BERTScore on the local GPU (or CPU).

Importing this package must not import torch: `gpu_service.schema` is shared with the
torch-free bridge. The app itself lives in `gpu_service.app`.
"""

__all__ = ["__version__"]
__version__ = "0.3.0"
