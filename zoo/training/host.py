"""Process-wide settings that make a training step on the host cost what the step's math costs."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import torch

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems; larger values are refused.
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_cpu_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of handing it back to the OS at once.

    PyTorch allocates CPU tensors with malloc. By default glibc serves each activation larger than a
    (moving) threshold with its own mmap and unmaps it when freed, so every step faults its
    activations' pages in again: about 1,200 page faults per LeNet-5 step at batch 64, a quarter of
    the step's time on a 2-core VM. With a fixed high mmap threshold and trimming only above 1 GiB,
    freed blocks are reused, as the CUDA caching allocator does on a GPU. The process's memory then
    stays near its peak until it exits. Returns whether the setting took (glibc on Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


def skip_nvml_probe_without_gpu() -> None:
    """Undo, on a machine without a GPU, the NVML-based CUDA check that importing Lightning turns on.

    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 so that asking whether CUDA is available never
    initialises CUDA before a fork. With no GPU there is nothing to protect, and torch does not cache
    a failed probe: Adam and AdamW ask on every step, and each step then pays a failed dlopen of the
    NVML library (0.1-0.5 ms measured on a 2-core CPU, where a LeNet-5 step takes 3-16 ms)."""
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and not torch.cuda.is_available():
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
