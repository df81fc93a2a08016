"""Choosing the compute device and precision for training and scoring.

``auto`` takes a visible CUDA GPU, else Apple's MPS, else the CPU, with one exception: a job that
was given GPUs (``CUDA_VISIBLE_DEVICES`` naming devices, or SLURM's GPU variables) but in which
torch sees none stops with the reason, instead of training on the CPU for hours unnoticed. The
usual causes are a CPU-only torch build and a driver older than the build's CUDA. ``cpu`` is
always allowed, so a deliberate CPU run on a GPU node stays possible.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping

import torch

from vlarisk.core.errors import DeviceError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
# The thread-count variables of OpenMP and the BLAS libraries (the ones Snakemake sets for a job's threads).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
# Variables that say the job was handed GPUs: CUDA_VISIBLE_DEVICES (set by SLURM for --gres/--gpus,
# and by other schedulers), and SLURM's own records of the allocation.
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")
# Values meaning "no GPU": an empty list, CUDA's "hide every device", SLURM's marker for a job
# without GPU files.
_NO_GPU_VALUES = {"", "-1", "none", "nodevfiles"}


def assigned_gpus(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of :data:`GPU_VARIABLES` that hand this process GPUs, with their values.

    ``CUDA_VISIBLE_DEVICES=""`` or ``-1`` hides every GPU on purpose and counts as none, as does a
    count of ``0`` in ``SLURM_GPUS_ON_NODE``. ``CUDA_VISIBLE_DEVICES=0`` names GPU 0 (not a count).
    """
    environ = os.environ if environ is None else environ
    given = {}
    for name in GPU_VARIABLES:
        value = environ.get(name)
        if value is None:
            continue
        value = value.strip()
        if value.lower() in _NO_GPU_VALUES or (name == "SLURM_GPUS_ON_NODE" and value == "0"):
            continue
        given[name] = value
    return given


def cuda_available() -> tuple[bool, str]:
    """Whether torch can use a CUDA GPU, and torch's own warning when it cannot (driver too old, ...)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    notes = [" ".join(str(w.message).split()) for w in caught if "cuda" in str(w.message).lower()]
    return available, "; ".join(notes)


def mps_available() -> bool:
    """Whether Apple's Metal (MPS) backend can be used."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def cuda_unavailable_reason(torch_warning: str = "") -> str:
    """Why torch sees no CUDA GPU, as far as torch can tell: its build, and its warning if any."""
    if torch.version.cuda is None:
        reason = f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None)"
    else:
        reason = (
            f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but torch.cuda.is_available() is False "
            "(a driver older than that CUDA, or no device visible; `nvidia-smi` shows the driver's CUDA version)"
        )
    if torch_warning:
        reason += f"; torch says: {torch_warning}"
    return reason


def resolve_device(choice: str = "auto", environ: Mapping[str, str] | None = None) -> torch.device:
    """The torch device for a ``device`` setting: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    ``auto`` is CUDA when torch sees a GPU, else MPS where available, else the CPU, except that it
    raises :class:`~vlarisk.core.errors.DeviceError` when the job was given GPUs (see
    :func:`assigned_gpus`) that torch cannot use. An explicit ``cuda`` or ``mps`` that is not
    usable raises too; ``cpu`` never does.
    """
    if choice not in DEVICE_CHOICES and not (choice.startswith("cuda:") and choice[5:].isdigit()):
        raise DeviceError(f"device must be one of {', '.join(DEVICE_CHOICES)} or cuda:N, got {choice!r}")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "mps":
        if not mps_available():
            raise DeviceError(
                "device mps was requested but torch.backends.mps.is_available() is False (Apple silicon and macOS 12.3+ only)"
            )
        return torch.device("mps")
    available, torch_warning = cuda_available()
    if available:
        return torch.device("cuda" if choice == "auto" else choice)
    given = assigned_gpus(environ)
    how = ", ".join(f"{name}={value}" for name, value in given.items())
    if choice == "auto":
        if given:
            raise DeviceError(
                f"device auto: this job was given GPUs ({how}) but torch cannot use them: {cuda_unavailable_reason(torch_warning)}. "
                "Install a CUDA build of torch (docs/cluster.md), or set device cpu to run on the CPU deliberately"
            )
        return torch.device("mps" if mps_available() else "cpu")
    given_note = f" although the job was given GPUs ({how})" if given else " (no GPU is visible: check CUDA_VISIBLE_DEVICES)"
    raise DeviceError(f"device {choice} was requested but torch sees no CUDA GPU{given_note}: {cuda_unavailable_reason(torch_warning)}")


def limit_threads(threads: int | None) -> None:
    """Hold this process (and any it starts) to ``threads`` CPU threads; ``None`` or 0 leaves the defaults.

    torch's intra-op and inter-op pools, and every OpenMP and BLAS pool (numpy, scikit-learn),
    through their variables for libraries loaded later and child processes, and threadpoolctl for
    those already loaded. More threads than a job's share of the cores spin against each other: a
    small training step on a busy 2-core machine took 7x longer with 2 torch threads than with 1.
    """
    if not threads:
        return
    from threadpoolctl import threadpool_limits

    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # settable once, before any inter-op work: a second call keeps the first
        torch.set_num_interop_threads(threads)
    threadpool_limits(threads)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for (matmuls in bf16, reductions in fp32), else a no-op."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def describe(device: torch.device) -> str:
    """Human-readable device name for provenance records."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple Metal)"
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
