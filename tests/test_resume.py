"""Training resumes across a killed job although the workflow deletes the job's declared outputs.

The training rules pass ``--resume --resume-dir results/.resume/<rule>/<name>``: the per-epoch
checkpoints live there, outside the declared outputs (``best_model.pt``, ``latest.pt``) that
Snakemake removes when a job fails, and are copied into ``--output-dir`` when training ends.

* a training process SIGKILLed right after epoch 2 of 4, its declared outputs removed as
  Snakemake does, then the rule's command again: resumes at epoch 3 and ends with the same
  checkpoints as an uninterrupted run (weights bit for bit on CPU, history, best epoch); the
  multi-source command alike;
* a resume state of other settings, or one past ``--epochs``, is discarded with a log line under
  ``--resume-dir`` (the job does not fail on every retry), and refused by ``--resume`` alone (the
  guide's command by hand keeps its checks);
* a finished run leaves no resume state; ``--resume-dir`` equal to ``--output-dir`` is refused;
* every training rule of the workflow passes ``--resume --resume-dir`` with its own directory.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pipeline_utils import without

from vlarisk.core.cli import run
from vlarisk.core.io_utils import write_json
from vlarisk.data.dataset import load_dataset
from vlarisk.data.documents import read_checkpoint
from vlarisk.data.splits import plain_split

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4
KILLED_AFTER = 2
CHECKPOINTS = ("best_model.pt", "latest.pt")
VOLATILE = re.compile(r"(seconds|per_second)")

# Runs a training command that SIGKILLs itself right after epoch KILL_AFTER_EPOCH's checkpoints
# and history were written: deterministic, no timing involved.
KILLER = """
import os, signal, sys
import vlarisk.train.training as training
from vlarisk.core.cli import run

kill_after = int(os.environ["KILL_AFTER_EPOCH"])
record = training.Trainer._record

def record_then_die(self, epoch, *args, **kwargs):
    record(self, epoch, *args, **kwargs)
    if epoch == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)

training.Trainer._record = record_then_die
module = __import__(sys.argv[1], fromlist=["main"])
run(module.main, sys.argv[2:])
"""


stable = without(VOLATILE)


@pytest.fixture(scope="module")
def data(dataset_path, tmp_path_factory):
    """The tiny dataset, its split, and a data config of it for the multi-source command."""
    root = tmp_path_factory.mktemp("resume")
    dataset = load_dataset(dataset_path)
    split = root / "split.json"
    write_json(split, plain_split(dataset.metadata["rollouts"], 0.2, 0.2, seed=0))
    config = root / "data_config.json"
    write_json(config, {"datasets": [{"model_name": "m", "data_path": str(dataset_path), "split_path": str(split)}]})
    return {"single": ["--data", str(dataset_path), "--split", str(split)], "multi": ["--data-config", str(config)]}


COMMANDS = {"single": "vlarisk.commands.train", "multi": "vlarisk.commands.train_multi"}


def settings(epochs: int = EPOCHS, lr: str = "0.003") -> list[str]:
    common = ["--batch-size", "64", "--lr", lr, "--hidden-dims", "32", "16", "--dropout", "0.2", "--seed", "7"]
    return ["--epochs", str(epochs), *common, "--device", "cpu", "--threads", "1", "--model-name", "m", "--no-test"]


def rule_args(output: Path, state: Path) -> list[str]:
    """What the training rules add: resume from, and keep the epochs in, a directory of their own."""
    return ["--output-dir", str(output), "--resume", "--resume-dir", str(state)]


def train(kind: str, args: list[str], kill_after: int | None = None) -> subprocess.CompletedProcess:
    """The training command of ``kind``: in this process (saves a torch import), or, to be killed
    after epoch ``kill_after``, in a subprocess."""
    if kill_after is None:
        return train_in_process(kind, args)
    env = dict(os.environ, KILL_AFTER_EPOCH=str(kill_after))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-c", KILLER, COMMANDS[kind], *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def train_in_process(kind: str, args: list[str]) -> subprocess.CompletedProcess:
    module, threads = importlib.import_module(COMMANDS[kind]), torch.get_num_threads()
    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            run(module.main, args)
    except SystemExit as exc:
        code = exc.code
    finally:
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def remove_declared_outputs(output: Path) -> None:
    """What Snakemake does to a failed job's outputs."""
    for name in CHECKPOINTS:
        (output / name).unlink(missing_ok=True)


def assert_same_run(a: Path, b: Path) -> None:
    for name in CHECKPOINTS:
        x, y = read_checkpoint(a / name), read_checkpoint(b / name)
        assert x["epoch"] == y["epoch"], name
        assert stable(x["history"]) == stable(y["history"]), name
        assert x["best"] == y["best"], name
        assert x["model_state_dict"].keys() == y["model_state_dict"].keys()
        for key, tensor in x["model_state_dict"].items():
            assert torch.equal(tensor, y["model_state_dict"][key]), f"{name}: {key}"


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    """Each command's checkpoints after an uninterrupted run of EPOCHS epochs."""
    runs = {}
    for kind in COMMANDS:
        output = tmp_path_factory.mktemp(f"straight-{kind}")
        done = train(kind, [*data[kind], *settings(), "--output-dir", str(output)])
        assert done.returncode == 0, done.stderr
        runs[kind] = output
    return runs


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_killed_training_then_the_rules_command_resumes_and_equals_an_uninterrupted_run(kind, data, uninterrupted, tmp_path):
    output, state = tmp_path / "model", tmp_path / ".resume" / "model"
    killed = train(kind, [*data[kind], *settings(), *rule_args(output, state)], kill_after=KILLED_AFTER)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # the epochs so far are outside the declared outputs, which the workflow deletes
    assert read_checkpoint(state / "latest.pt")["epoch"] == KILLED_AFTER
    remove_declared_outputs(output)

    retry = train(kind, [*data[kind], *settings(), *rule_args(output, state)])
    assert retry.returncode == 0, retry.stderr
    assert f"resumed from {state / 'latest.pt'} at epoch {KILLED_AFTER + 1}" in retry.stdout
    assert not re.search(r"epoch +[12]/", retry.stdout), "a finished epoch was trained again"
    latest = read_checkpoint(output / "latest.pt")
    assert latest["epoch"] == EPOCHS and len(latest["history"]["train_loss"]) == EPOCHS
    assert_same_run(output, uninterrupted[kind])
    assert not state.exists(), "a finished run left its resume state"


def test_a_resume_state_of_other_settings_is_discarded_under_resume_dir_and_refused_by_hand(data, uninterrupted, tmp_path):
    output, state = tmp_path / "model", tmp_path / ".resume" / "model"
    killed = train("single", [*data["single"], *settings(lr="0.001"), *rule_args(output, state)], kill_after=KILLED_AFTER)
    assert killed.returncode == -signal.SIGKILL

    # the guide's --resume by hand, on the same files: refused, nothing changed
    by_hand = train("single", [*data["single"], *settings(), "--output-dir", str(state), "--resume"])
    assert by_hand.returncode != 0
    assert f"{state / 'latest.pt'}: cannot resume with different training settings (lr 0.001 -> 0.003)" in by_hand.stderr
    assert read_checkpoint(state / "latest.pt")["epoch"] == KILLED_AFTER

    # the rule's command: the stale state goes, with the reason, and training starts afresh
    retry = train("single", [*data["single"], *settings(), *rule_args(output, state)])
    assert retry.returncode == 0, retry.stderr
    assert "--resume-dir: discarding a resume state this run cannot continue" in retry.stdout
    assert "lr 0.001 -> 0.003" in retry.stdout
    assert "resumed from" not in retry.stdout
    assert_same_run(output, uninterrupted["single"])
    assert not state.exists()


def test_a_resume_state_past_the_epochs_is_not_continued(data, uninterrupted, tmp_path):
    output, state = tmp_path / "model", tmp_path / ".resume" / "model"
    killed = train("single", [*data["single"], *settings(epochs=EPOCHS + 2), *rule_args(output, state)], kill_after=EPOCHS + 1)
    assert killed.returncode == -signal.SIGKILL
    by_hand = train("single", [*data["single"], *settings(), "--output-dir", str(state), "--resume"])
    assert by_hand.returncode != 0
    assert f"{state / 'latest.pt'}: cannot resume: its epoch {EPOCHS + 1} is past epochs {EPOCHS}" in by_hand.stderr

    retry = train("single", [*data["single"], *settings(), *rule_args(output, state)])
    assert retry.returncode == 0, retry.stderr
    assert "--resume-dir: discarding a resume state" in retry.stdout
    assert_same_run(output, uninterrupted["single"])


def test_the_guides_resume_by_hand_still_continues_in_the_output_dir(data, uninterrupted, tmp_path):
    output = tmp_path / "model"
    killed = train("single", [*data["single"], *settings(), "--output-dir", str(output)], kill_after=KILLED_AFTER)
    assert killed.returncode == -signal.SIGKILL
    resumed = train("single", [*data["single"], *settings(), "--output-dir", str(output), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {output / 'latest.pt'} at epoch {KILLED_AFTER + 1}" in resumed.stdout
    assert_same_run(output, uninterrupted["single"])


def test_a_fresh_run_of_the_rules_command_says_nothing_about_resuming(data, uninterrupted, tmp_path):
    """Every first run of a training rule has an empty resume directory: no 'not found' line opens
    its log; the guide's --resume by hand on an empty output directory still says so."""
    fresh = train("single", [*data["single"], *settings(), *rule_args(tmp_path / "model", tmp_path / "state")])
    assert fresh.returncode == 0, fresh.stderr
    assert "--resume" not in fresh.stdout + fresh.stderr
    assert_same_run(tmp_path / "model", uninterrupted["single"])
    by_hand = train("single", [*data["single"], *settings(), "--output-dir", str(tmp_path / "by_hand"), "--resume"])
    assert f"--resume: {tmp_path / 'by_hand' / 'latest.pt'} not found, starting from epoch 1" in by_hand.stdout


def test_resume_dir_must_differ_from_the_output_dir(data, tmp_path):
    done = train("single", [*data["single"], *settings(), "--output-dir", str(tmp_path), "--resume-dir", str(tmp_path / ".")])
    assert done.returncode == 2
    assert "--resume-dir" in done.stderr and "must differ from --output-dir" in done.stderr


@pytest.mark.slow
def test_every_training_rule_resumes_from_a_directory_of_its_own(tmp_path):
    import yaml

    config = yaml.safe_load((ROOT / "tests" / "data" / "tiny_config.yaml").read_text())
    sources = list(config["sources"])
    config["multi_model"] = {"groups": {"both": sources}}
    config["ablations"] = {"sources": sources[:1], "seeds": [0], "factors": {"dropout": [0.25]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    ablation_targets = [f"results/ablations/tiny_a/{cell}/seed-0/results.json" for cell in ("default", "dropout-0.25")]
    plan = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path)]
        + ["-n", "-p", "all", *ablation_targets, "--configfile", str(tmp_path / "config.yaml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plan.returncode == 0, plan.stdout + plan.stderr
    commands = [line for line in plan.stdout.splitlines() if "--output-dir" in line]
    expected = {
        "results/.resume/train_model/tiny_a",
        "results/.resume/train_model/tiny_b",
        "results/.resume/train_multi_model/both",
        "results/.resume/train_ablation/tiny_a/default/seed-{seed}",  # a cell's job: each seed its own
        "results/.resume/train_ablation/tiny_a/dropout-0.25/seed-{seed}",
    }
    found = set()
    for command in commands:
        match = re.search(r" --resume-dir (\S+) ", command)
        assert match and " --resume " in command, f"a training command that does not resume: {command}"
        found.add(match.group(1).strip("'"))
    assert found == expected
