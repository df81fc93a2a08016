"""Choosing the compute device and precision for training and scoring."""

from __future__ import annotations

import contextlib

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(choice: str = "auto") -> torch.device:
    """``auto`` takes the first visible GPU (``CUDA_VISIBLE_DEVICES`` is honoured) or the CPU."""
    if choice not in DEVICE_CHOICES and not choice.startswith("cuda:"):
        raise ValueError(f"device must be one of {DEVICE_CHOICES} or 'cuda:N', got {choice!r}")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but no CUDA device is visible (check CUDA_VISIBLE_DEVICES)")
    return torch.device(choice)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for (matmuls in bf16, reductions in fp32), else a no-op."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def describe(device: torch.device) -> str:
    """Human-readable device name for provenance records."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


@contextlib.contextmanager
def flush_denormals():
    """Treat denormal floats as zero on the CPU inside the block, as the CPU does by default outside.

    A saturated model's tiny gradients and activations are denormals, which make every CPU step
    several times slower; flushing them keeps speed independent of the model's state. The setting
    is process-wide, so it is switched off again on the way out.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
