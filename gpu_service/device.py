"""Which device to run on, and what it looks like (ADR D1).

`torch.cuda.is_available()` is true for NVIDIA (CUDA) and AMD (ROCm) builds alike,
so one call covers both. `TORCH_DEVICE` overrides the choice (`cpu`, `cuda`, `cuda:1`),
and everything reported about the device is about the selected one, not device 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger("gpu_service.device")


def select_device(override: str | None = None) -> torch.device:
    """The device to use: `override` if given (validated), else the first GPU, else the CPU."""
    if override:
        try:
            device = torch.device(override)
        except RuntimeError as exc:
            raise ValueError(f"TORCH_DEVICE={override!r} is not a valid torch device: {exc}") from None
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"TORCH_DEVICE={override!r} but torch sees no CUDA/ROCm device")
            index = device.index or 0
            if index >= torch.cuda.device_count():
                raise ValueError(
                    f"TORCH_DEVICE={override!r} but only {torch.cuda.device_count()} GPU(s) are visible"
                )
            return torch.device("cuda", index)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", 0)
    log.warning("no CUDA/ROCm GPU visible to torch: running on the CPU")
    return torch.device("cpu")



def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine() or "cpu"


def vram_mb(device: torch.device) -> tuple[float | None, float | None]:
    """(total, free) memory of the selected GPU in MiB; (None, None) on the CPU."""
    if device.type != "cuda":
        return None, None
    free, total = torch.cuda.mem_get_info(device)
    return total / 2**20, free / 2**20


def runtime_versions() -> dict[str, str | None]:
    hip = getattr(torch.version, "hip", None)
    return {
        "torch_version": torch.__version__,
        "cuda_version": None if hip else torch.version.cuda,
        "rocm_version": hip,
    }


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA and ROCm raise the same class)."""
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def release_cached_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()



def cpu_thread_policy(threads: int | None) -> Callable[[bool], None]:
    """How many torch threads a CPU batch gets: `threads` if set; otherwise every core while a
    single request has the machine, and all cores but one under concurrent load.

    With as many torch threads as cores, any other busy thread (the event loop parsing
    requests, the tokenizer) stalls torch's parallel regions - every op waits for its
    slowest thread - which under load costs far more than the one core given up. A lone
    big request has no such neighbours and gets every core."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = threads or max(1, cores - 1)
    alone = threads or cores

    def apply(solo: bool) -> None:
        wanted = alone if solo else busy
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)

    return apply
