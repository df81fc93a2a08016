"""Device choice: ``auto`` never trains on the CPU behind the back of a job that was given GPUs.

torch's view of the machine (CUDA, MPS, its build's CUDA version) and the job's variables are
monkeypatched, so every case runs on any machine.
"""

import warnings

import pytest
import torch

from vlarisk.commands.cli_args import add_scoring_arguments, parse_scoring_args
from vlarisk.core import device as device_module
from vlarisk.core.cli import ArgumentParser
from vlarisk.core.device import assigned_gpus, resolve_device
from vlarisk.core.errors import DeviceError, InputError

GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")


@pytest.fixture
def machine(monkeypatch):
    """A machine without GPU variables whose torch sees neither CUDA nor MPS; tests switch parts on."""
    for name in GPU_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    state = {"cuda": False, "mps": False, "warning": None}

    def cuda_is_available():
        if state["warning"]:
            warnings.warn(state["warning"], UserWarning, stacklevel=2)
        return state["cuda"]

    monkeypatch.setattr(torch.cuda, "is_available", cuda_is_available)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: state["mps"])
    monkeypatch.setattr(torch.version, "cuda", None)
    return state


def test_auto_without_gpus_is_the_cpu(machine):
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_takes_a_visible_cuda_gpu(machine, monkeypatch):
    machine["cuda"] = True
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CUDA_VISIBLE_DEVICES", "0"),
        ("CUDA_VISIBLE_DEVICES", "GPU-4a1c"),
        ("SLURM_JOB_GPUS", "2"),
        ("SLURM_STEP_GPUS", "0,1"),
        ("SLURM_GPUS_ON_NODE", "1"),
    ],
)
def test_auto_refuses_a_job_given_gpus_that_a_cpu_build_cannot_use(machine, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(DeviceError) as caught:
        resolve_device("auto")
    message = str(caught.value)
    assert f"{variable}={value}" in message
    assert "CPU-only build" in message and "torch.version.cuda is None" in message
    assert "device cpu" in message  # the way out is named


def test_auto_with_a_cuda_build_gives_torch_s_own_reason(machine, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    machine["warning"] = "CUDA initialization: The NVIDIA driver on your system is too old (found version 12020)."
    monkeypatch.setenv("SLURM_JOB_GPUS", "0")
    with pytest.raises(DeviceError, match=r"built for CUDA 13\.0.*driver on your system is too old"):
        resolve_device("auto")


@pytest.mark.parametrize("value", ["", "-1", "NoDevFiles"])
def test_hidden_gpus_are_not_given_gpus(machine, monkeypatch, value):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "0")
    assert assigned_gpus() == {}
    assert resolve_device("auto") == torch.device("cpu")


def test_an_explicit_cpu_is_always_allowed(machine, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("SLURM_JOB_GPUS", "0")
    assert resolve_device("cpu") == torch.device("cpu")


def test_explicit_cuda_without_cuda_names_the_job_s_gpus(machine, monkeypatch):
    monkeypatch.setenv("SLURM_STEP_GPUS", "3")
    with pytest.raises(DeviceError, match=r"device cuda:0 was requested.*SLURM_STEP_GPUS=3.*CPU-only build"):
        resolve_device("cuda:0")


def test_auto_uses_mps_where_available_and_mps_is_a_choice(machine):
    machine["mps"] = True
    assert resolve_device("auto") == torch.device("mps")
    assert resolve_device("mps") == torch.device("mps")
    machine["mps"] = False
    with pytest.raises(DeviceError, match="mps"):
        resolve_device("mps")


@pytest.mark.parametrize("choice", ["gpu", "cuda:", "cuda:x", "MPS"])
def test_unknown_choices_are_input_errors(machine, choice):
    with pytest.raises(InputError, match="device must be one of"):
        resolve_device(choice)


def test_the_command_line_ends_with_the_reason_not_a_traceback(machine, monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    parser = add_scoring_arguments(ArgumentParser(prog="score"), output_help="out")
    with pytest.raises(SystemExit) as exited:
        parse_scoring_args(parser, ["--checkpoint", "c.pt", "--output", "o.json"])
    assert exited.value.code == 2
    assert "CUDA_VISIBLE_DEVICES=0" in capsys.readouterr().err


def test_the_module_lists_mps_among_the_choices():
    assert "mps" in device_module.DEVICE_CHOICES


THREAD_PROBE = """
import json, os, sys
from vlarisk.core.device import THREAD_VARIABLES, limit_threads
limit_threads(int(sys.argv[1]))
import sklearn.metrics  # an OpenMP library loaded after the limit
import torch
from threadpoolctl import threadpool_info
print(json.dumps({
    "torch": torch.get_num_threads(),
    "interop": torch.get_num_interop_threads(),
    "pools": [pool["num_threads"] for pool in threadpool_info()],
    "variables": [os.environ[name] for name in THREAD_VARIABLES],
}))
"""


def test_limit_threads_holds_torch_openmp_and_blas_to_the_count():
    """One thread means one in every pool, also in libraries loaded after the limit and in child processes' variables."""
    import json
    import os
    import subprocess
    import sys

    from vlarisk.core.device import THREAD_VARIABLES

    environ = {name: value for name, value in os.environ.items() if name not in THREAD_VARIABLES}
    probe = subprocess.run([sys.executable, "-c", THREAD_PROBE, "1"], env=environ, capture_output=True, text=True, check=True)
    seen = json.loads(probe.stdout)
    assert seen["torch"] == seen["interop"] == 1
    assert seen["pools"] and set(seen["pools"]) == {1}
    assert set(seen["variables"]) == {"1"}
