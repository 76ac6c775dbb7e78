"""Which device to run on, and what it looks like (ADR D1).

Auto selection: a CUDA/ROCm GPU, else an Apple GPU (MPS), else the CPU.
`torch.cuda.is_available()` is true for NVIDIA (CUDA) and AMD (ROCm) builds alike,
so one call covers both. `TORCH_DEVICE` overrides the choice (`cpu`, `cuda`, `cuda:1`,
`mps`), and everything reported about the device is about the selected one, not device 0.

Half precision: on by default on CUDA/ROCm GPUs; off by default on MPS (LayerNorm and
softmax in fp16 are less exact there and our parity tests cannot run on one), and
`GPU_FP16=1` turns it on; never on the CPU, where it is slow.

Nothing here is Linux-only: calls that exist on one platform or torch build only are
looked up and guarded. MPS is unit-tested with torch's availability functions patched
(no Apple GPU here), not tried on a Mac.
"""

from __future__ import annotations

import logging
import os
import platform

import torch

from gpu_service.settings import CPU_BATCH_TOKENS, DEFAULT_BATCH_TOKENS

log = logging.getLogger(__name__)

DEVICE_TYPES = ("cuda", "mps", "cpu")
"""What TORCH_DEVICE may name (ROCm GPUs are `cuda` in torch)."""


def mps_available() -> bool:
    """An Apple GPU usable by torch (macOS 12.3+ on Apple Silicon, a torch build with MPS)."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(override: str | None = None) -> torch.device:
    """The device to use: `override` if given (validated), else CUDA/ROCm, else MPS, else the CPU."""
    if override:
        try:
            device = torch.device(override)
        except RuntimeError as exc:
            raise ValueError(f"TORCH_DEVICE={override!r} is not a valid torch device: {exc}") from None
        if device.type not in DEVICE_TYPES:
            raise ValueError(f"TORCH_DEVICE={override!r}: this service runs on {', '.join(DEVICE_TYPES)}")
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"TORCH_DEVICE={override!r} but torch sees no CUDA/ROCm device")
            index = device.index or 0
            if index >= torch.cuda.device_count():
                raise ValueError(
                    f"TORCH_DEVICE={override!r} but only {torch.cuda.device_count()} GPU(s) are visible"
                )
            return torch.device("cuda", index)
        if device.type == "mps":
            if not mps_available():
                raise ValueError(
                    f"TORCH_DEVICE={override!r} but torch sees no Apple GPU (MPS needs macOS 12.3+ on "
                    "Apple Silicon and a torch build with MPS)"
                )
            return torch.device("mps")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", 0)
    if mps_available():
        log.info("no CUDA/ROCm GPU; running on the Apple GPU (MPS)")
        return torch.device("mps")
    log.warning("no CUDA/ROCm or Apple (MPS) GPU visible to torch: running on the CPU")
    return torch.device("cpu")


def use_half_precision(setting: bool | None, device: torch.device) -> bool:
    """Whether embedding models run in fp16: `setting` is GPU_FP16 (None when unset)."""
    if device.type == "cuda":
        return setting is not False
    if device.type == "mps":
        return setting is True
    return False


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return platform.processor() or platform.machine() or "cpu"


def vram_mb(device: torch.device) -> tuple[float | None, float | None]:
    """(total, free) memory of the selected GPU in MiB; (None, None) on the CPU or when unknown.

    On MPS the GPU shares the machine's memory: total is what Metal recommends this process
    use at most, free is that minus what the driver has allocated (torch 2.3+)."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return total / 2**20, free / 2**20
    if device.type == "mps":
        mps = getattr(torch, "mps", None)
        try:
            recommended = float(mps.recommended_max_memory())  # type: ignore[union-attr]
            allocated = float(mps.driver_allocated_memory())  # type: ignore[union-attr]
        except (AttributeError, RuntimeError):
            return None, None
        return recommended / 2**20, max(0.0, recommended - allocated) / 2**20
    return None, None


def runtime_versions() -> dict[str, str | None]:
    hip = getattr(torch.version, "hip", None)
    return {
        "torch_version": torch.__version__,
        "cuda_version": None if hip else torch.version.cuda,
        "rocm_version": hip,
    }


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA and ROCm raise the same class; MPS raises a
    RuntimeError "MPS backend out of memory")."""
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def release_cached_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        empty_cache = getattr(getattr(torch, "mps", None), "empty_cache", None)
        if empty_cache is not None:
            try:
                empty_cache()
            except RuntimeError:
                pass  # nothing cached to release


def use_cpu_threads(threads: int | None) -> int:
    """Give torch `threads` threads on a CPU device (GPU_CPU_THREADS), else one per core this
    process may use, and return the number.

    Measured on 2 vCPUs under 64 concurrent clients (bench/peers.py): all cores gave ~1.8x the
    texts/s of the older policy of leaving one core to the event loop and tokenizer, whose work
    is small next to the model's."""
    # sched_getaffinity (the cores this process may use) exists on Linux only.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = threads or cores
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return wanted


MAX_AUTO_BATCH_TOKENS = 262_144
ACTIVATION_BYTES_PER_TOKEN = 64 * 1024
"""A generous bound on one token's activations in one layer of an encoder up to ~1,024 wide in half
precision (inference frees each layer's activations before the next): hidden states, attention
projections and the 4x feed-forward. Out-of-memory still splits a batch if a model needs more."""


def batch_token_budget(device: torch.device) -> int:
    """Padded tokens per batch: on CUDA/ROCm, half of the free device memory at start-up over
    ACTIVATION_BYTES_PER_TOKEN (between 16,384 and 262,144), so a big GPU takes big batches;
    4,096 on a CPU (see CPU_BATCH_TOKENS), 16,384 on an Apple GPU."""
    if device.type == "cpu":
        return CPU_BATCH_TOKENS
    if device.type != "cuda":
        return DEFAULT_BATCH_TOKENS
    _total, free_mb = vram_mb(device)
    if not free_mb:
        return DEFAULT_BATCH_TOKENS
    fitting = int(free_mb * 2**20 * 0.5 // ACTIVATION_BYTES_PER_TOKEN)
    return max(DEFAULT_BATCH_TOKENS, min(MAX_AUTO_BATCH_TOKENS, fitting))
