"""Interruptions never leave a file that passes for good, and re-running gives the uninterrupted result.

* :func:`vlarisk.core.io_utils.atomic_path`: an output is complete or absent; SIGTERM (through
  :func:`vlarisk.core.cli.run`) removes the temporary file; a SIGKILLed writer's temporary file is
  removed by the next write of the same target;
* a training process killed mid-epoch (SIGTERM, SIGKILL) after its first checkpoint leaves only
  complete checkpoints and no results.json; a fresh re-run, or ``--resume``, reproduces the
  uninterrupted run's results exactly (CPU);
* training 2 epochs then resuming to 4 equals 4 straight (history, weights, test metrics);
* the pipeline: SIGTERM to Snakemake and its running ``train_model`` job, re-run, same results.json.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import runpy
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pipeline_utils import copy_project, without

from vlarisk.core.cli import run
from vlarisk.core.io_utils import FOREIGN_PARTIAL_MAX_AGE_S, atomic_path, write_json
from vlarisk.core.settings import TrainingConfig
from vlarisk.data.dataset import load_dataset
from vlarisk.data.documents import read_checkpoint
from vlarisk.data.prepare import prepare_dataset
from vlarisk.data.splits import plain_split
from vlarisk.data.synthetic import SimulationSpec, write_synthetic_source
from vlarisk.score.evaluation import evaluate
from vlarisk.train.sources import Source
from vlarisk.train.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "workflow_scripts" / "train_risk_predictor.py"
VOLATILE = re.compile(r"(seconds|per_second|elapsed|duration|timestamp|date|host|device|threads|dataset$|^provenance$)")


def partials(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".partial"))


stable = without(VOLATILE)  # a results/history document without what measures the run rather than the model


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# ------------------------------------------------------------------------- atomic writes
def test_an_exception_keeps_the_old_output_and_removes_the_temporary(tmp_path):
    target = tmp_path / "results.json"
    write_json(target, {"run": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"run": 2, "trunc')
            raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"run": 1}
    assert partials(tmp_path) == []


def test_outputs_get_a_normal_file_mode(tmp_path):
    write_json(tmp_path / "r.json", {})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_sigterm_during_a_write_removes_the_temporary_file(tmp_path, capsys):
    target = tmp_path / "latest.pt"
    handler = signal.getsignal(signal.SIGTERM)

    def main(argv):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a checkpoint")
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler raises at the next bytecode
                time.sleep(0.01)
            tmp.write_bytes(b"never reached")

    with pytest.raises(SystemExit) as caught:
        run(main, [])
    assert caught.value.code == 128 + signal.SIGTERM
    assert not target.exists() and partials(tmp_path) == []
    assert capsys.readouterr().err.strip() == (
        "interrupted by SIGTERM: no partial output was kept; run the same command again "
        "(train_risk_predictor.py --resume continues from latest.pt)"
    )
    assert signal.getsignal(signal.SIGTERM) == handler  # restored


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())
    dead = tmp_path / f".latest.pt.{dead_pid()}@{host}.k1ll3d00.partial"
    alive = tmp_path / f".latest.pt.{os.getppid()}@{host}.w0rk1ng0.partial"  # a live process's write
    other = tmp_path / f".best_model.pt.{dead_pid()}@{host}.0th3r000.partial"  # another target
    old_foreign = tmp_path / ".latest.pt.12345@node-7.cluster.abcdefgh.partial"
    new_foreign = tmp_path / ".latest.pt.12345@node-8.cluster.ijklmnop.partial"
    for path in (dead, alive, other, old_foreign, new_foreign):
        path.write_bytes(b"partial")
    stale = time.time() - FOREIGN_PARTIAL_MAX_AGE_S - 60
    os.utime(old_foreign, (stale, stale))
    write_json(tmp_path / "latest.pt", {})
    assert partials(tmp_path) == sorted([alive, other, new_foreign])


# ------------------------------------------------------------------------- killing a training run
EPOCHS = 5


@pytest.fixture(scope="module")
def interrupt_data(tmp_path_factory):
    """A dataset on which one epoch takes about a second, its split, and the uninterrupted results."""
    root = tmp_path_factory.mktemp("interrupt")
    spec = SimulationSpec(hidden_dim=64, num_success=60, num_failure=90, success_steps=(60, 90), failure_steps=100, num_tasks=4, seed=5)
    write_synthetic_source(spec, root / "s.pkl", root / "f.pkl", root / "planting.npz")
    prepare_dataset(root / "s.pkl", root / "f.pkl", root / "data.vlarisk")
    dataset = load_dataset(root / "data.vlarisk")
    write_json(root / "split.json", plain_split(dataset.metadata["rollouts"], 0.2, 0.2, seed=0))
    args = [
        "--data",
        root / "data.vlarisk",
        "--split",
        root / "split.json",
        "--epochs",
        EPOCHS,
        "--batch-size",
        "64",
        "--hidden-dims",
        "256",
        "256",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--seed",
        "3",
        "--model-name",
        "m",
    ]
    baseline = root / "baseline"
    assert train_in_process(*args, "--output-dir", baseline) == 0
    return {"args": [str(a) for a in args], "baseline": json.loads((baseline / "results.json").read_text())}


def train_in_process(*args) -> int:
    """train_risk_predictor.py's __main__ in this process (saves a torch import per run)."""
    argv, threads = sys.argv, torch.get_num_threads()
    sys.argv = [str(TRAIN), *map(str, args)]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(TRAIN), run_name="__main__")
        return 0
    except SystemExit as exc:
        return exc.code
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)


def start_and_kill(args: list[str], output_dir: Path, signum: int) -> tuple[subprocess.CompletedProcess, int]:
    """Start training, send ``signum`` once the first checkpoint exists (i.e. during epoch 2)."""
    process = subprocess.Popen(
        [sys.executable, str(TRAIN), *args, "--output-dir", str(output_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 600
    while not (output_dir / "latest.pt").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint after 10 minutes"
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), process.pid


def assert_nothing_passes_for_good(output_dir: Path) -> int:
    """Only complete checkpoints of an unfinished run; no results.json. Returns latest.pt's epoch."""
    assert not (output_dir / "results.json").exists()
    latest, best = read_checkpoint(output_dir / "latest.pt"), read_checkpoint(output_dir / "best_model.pt")
    assert 1 <= latest["epoch"] < EPOCHS and len(latest["history"]["val_loss"]) == latest["epoch"]
    assert best["epoch"] <= latest["epoch"] + 1
    return latest["epoch"]


def test_sigterm_mid_epoch_then_rerun_gives_the_uninterrupted_results(interrupt_data, tmp_path):
    output = tmp_path / "model"
    output.mkdir()
    (output / "results.json").write_text('{"test_metrics": "of an older run"}')  # must not survive
    result, _ = start_and_kill(interrupt_data["args"], output, signal.SIGTERM)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("interrupted by SIGTERM: no partial output was kept")
    assert "Traceback" not in result.stderr
    assert partials(output) == []
    assert_nothing_passes_for_good(output)
    assert train_in_process(*interrupt_data["args"], "--output-dir", output) == 0  # a plain re-run
    rerun = json.loads((output / "results.json").read_text())
    assert stable(rerun) == stable(interrupt_data["baseline"])


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_results(interrupt_data, tmp_path):
    output = tmp_path / "model"
    result, pid = start_and_kill(interrupt_data["args"], output, signal.SIGKILL)
    assert result.returncode == -signal.SIGKILL
    epoch = assert_nothing_passes_for_good(output)
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())
    (output / f".latest.pt.{pid}@{host}.s1gk1ll0.partial").write_bytes(b"torn")  # as if killed mid-write
    assert train_in_process(*interrupt_data["args"], "--output-dir", output, "--resume") == 0
    resumed = json.loads((output / "results.json").read_text())
    assert stable(resumed) == stable(interrupt_data["baseline"])
    assert len(resumed["history"]["val_loss"]) == EPOCHS and epoch < EPOCHS
    assert partials(output) == []


# ------------------------------------------------------------------------- resume keeps history
def test_two_epochs_then_resume_to_four_equals_four_straight(dataset_path, tmp_path):
    dataset = load_dataset(dataset_path)
    split = plain_split(dataset.metadata["rollouts"], 0.2, 0.2, seed=1)
    quiet = lambda _message: None  # noqa: E731

    def config(epochs):
        return TrainingConfig(epochs=epochs, batch_size=64, hidden_dims=[32, 16], dropout=0.2, seed=7, device="cpu")

    source = Source("m", dataset, split)
    straight = Trainer([source], config(4), tmp_path / "straight", "m", log=quiet).fit()
    Trainer([source], config(2), tmp_path / "resumed", "m", log=quiet).fit()
    assert read_checkpoint(tmp_path / "resumed" / "latest.pt")["epoch"] == 2
    trainer = Trainer([source], config(4), tmp_path / "resumed", "m", log=quiet)
    trainer.resume()
    assert trainer.start_epoch == 3
    resumed = trainer.fit()

    assert stable(resumed.history) == stable(straight.history)
    assert len(resumed.history["train_loss"]) == 4
    assert resumed.best_epoch == straight.best_epoch
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    for path in ("latest.pt", "best_model.pt"):
        a, b = read_checkpoint(tmp_path / "straight" / path), read_checkpoint(tmp_path / "resumed" / path)
        assert a["epoch"] == b["epoch"] and stable(a["history"]) == stable(b["history"])
    device = torch.device("cpu")
    metrics = [evaluate(o.model, source, o.label_cutoffs["m"], device)["test_metrics"] for o in (straight, resumed)]
    assert metrics[0] == metrics[1]


# ------------------------------------------------------------------------- the pipeline
PIPELINE_CONFIG = """\
sources:
  kill_a:
    simulate: {hidden_dim: 16, num_success: 30, num_failure: 40, success_steps: [20, 30], failure_steps: 40, num_tasks: 4, with_labels: true, layout: dict, seed: 0}
split: {val_fraction: 0.2, test_fraction: 0.2, seed: 0, held_out_tasks: []}
training: {epochs: 10, batch_size: 32, lr: 0.002, weight_decay: 0.0, hidden_dims: [64], dropout: 0.1, activation: relu, loss_type: mse, normalize: true, seed: 0, device: cpu, bf16: false}
evaluation: {positive_fraction_of_max: 0.5}
"""
TARGET = "results/models/kill_a/results.json"


def pipeline_copy(destination: Path) -> Path:
    copy_project(destination)
    (destination / "kill.yaml").write_text(PIPELINE_CONFIG)
    return destination


def snakemake_process(project: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "kill.yaml", "--replace-workflow-config", TARGET]
    return subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


@pytest.mark.slow
def test_sigterm_to_snakemake_during_training_then_rerun(tmp_path):
    """SIGTERM to Snakemake's process group (a scheduler's cancel, a closed terminal) while
    ``train_model`` runs: the job stops, Snakemake discards its outputs and exits; the same command
    again finishes the pipeline with results identical to an uninterrupted run."""
    plain = pipeline_copy(tmp_path / "plain")
    killed = pipeline_copy(tmp_path / "killed")
    reference = snakemake_process(plain)  # runs alongside: the machine's two cores are shared anyway
    victim = snakemake_process(killed, start_new_session=True)
    log = killed / "results" / "logs" / "train_model" / "kill_a.log"
    deadline = time.monotonic() + 900
    while not (log.exists() and "epoch   2/" in log.read_text()):
        assert victim.poll() is None, victim.communicate()[0]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGTERM)
    output = victim.communicate(timeout=300)[0]
    assert victim.returncode != 0
    assert "interrupted by SIGTERM" in log.read_text()
    models = killed / "results" / "models" / "kill_a"
    assert not (models / "results.json").exists()
    assert not (models / "best_model.pt").exists(), output  # Snakemake removed the failed job's outputs
    assert not list((killed / "results").rglob("*.partial"))

    rerun = snakemake_process(killed)
    rerun_output = rerun.communicate(timeout=900)[0]
    assert rerun.returncode == 0, rerun_output
    assert "simulate_rollouts" not in rerun_output  # finished steps are kept
    reference_output = reference.communicate(timeout=900)[0]
    assert reference.returncode == 0, reference_output
    a = json.loads((plain / TARGET).read_text())
    b = json.loads((killed / TARGET).read_text())
    assert a["test_metrics"] == b["test_metrics"]
    assert stable(a) == stable(b)
