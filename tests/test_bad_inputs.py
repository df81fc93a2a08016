"""Bad inputs: each ends in one clear error naming the file (rollout, step, field) or in a counted skip.

Never a traceback from deep inside numpy or torch, never a silently wrong number. Most cases run the
command-line entry points in-process (fast); a few run them as real subprocesses to check the exit
status and that stderr holds exactly one ``error: <file>: ...`` line. docs/robustness.md lists the
messages asserted here.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import runpy
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from pipeline_utils import copy_project

from vlarisk.core.settings import TrainingConfig
from vlarisk.data.dataset import load_dataset, write_legacy_pickle
from vlarisk.data.prepare import prepare_dataset
from vlarisk.data.splits import plain_split
from vlarisk.data.synthetic import RolloutSimulator, SimulationSpec
from vlarisk.score.evaluation import evaluate
from vlarisk.score.metrics import test_metrics
from vlarisk.train.sources import Source
from vlarisk.train.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow_scripts"
SMALL = dict(num_success=6, num_failure=8, success_steps=(12, 16), failure_steps=20, num_tasks=2)


# --------------------------------------------------------------------------------- helpers
def rollouts(hidden_dim=16, seed=0, **spec):
    """Fresh (success, failure) rollout lists of a small synthetic source."""
    spec = {**SMALL, **spec}
    simulator = RolloutSimulator(SimulationSpec(hidden_dim=hidden_dim, seed=seed, **spec))
    return [simulator.rollout(True) for _ in range(spec["num_success"])], [simulator.rollout(False) for _ in range(spec["num_failure"])]


def write_pickle(path: Path, payload) -> Path:
    path.write_bytes(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def write_source(tmp_path: Path, success=None, failure=None, **spec) -> tuple[Path, Path]:
    """Write a source's two pickles; ``success``/``failure`` replace the generated lists."""
    good_success, good_failure = rollouts(**spec)
    s = write_pickle(tmp_path / "success_rollouts.pkl", good_success if success is None else success)
    f = write_pickle(tmp_path / "failure_rollouts.pkl", {"trajectories": good_failure if failure is None else failure, "metadata": {}})
    return s, f


def cli(script: str, *args) -> tuple[int, str, str]:
    """Run a workflow script's ``__main__`` in this process; (exit status, stdout, stderr)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = [str(SCRIPTS / script), *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(SCRIPTS / script), run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def error_of(script: str, *args) -> str:
    """The one error line of a failing entry point (asserting exit status 2 and no traceback)."""
    code, _, err = cli(script, *args)
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def prepare_error(success, failure, tmp_path) -> str:
    return error_of("prepare_training_data.py", "--success", success, "--failure", failure, "--output", tmp_path / "dataset.vlarisk")


def prepare_ok(success, failure, tmp_path) -> dict:
    output = tmp_path / "dataset.vlarisk"
    code, out, err = cli("prepare_training_data.py", "--success", success, "--failure", failure, "--output", output)
    assert code == 0, err
    return load_dataset(output).metadata


# ------------------------------------------------------------------------- rollout files
def test_missing_file(tmp_path):
    _, f = write_source(tmp_path)
    missing = tmp_path / "nope.pkl"
    assert prepare_error(missing, f, tmp_path) == f"error: {missing}: file not found"


def test_empty_file(tmp_path):
    _, f = write_source(tmp_path)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    assert prepare_error(empty, f, tmp_path) == f"error: {empty}: file is empty"


def test_truncated_pickle(tmp_path):
    s, f = write_source(tmp_path)
    data = s.read_bytes()
    s.write_bytes(data[: len(data) // 2])
    assert (
        prepare_error(s, f, tmp_path)
        == f"error: {s}: not a readable pickle (truncated or corrupt?): UnpicklingError: pickle data was truncated"
    )


def test_not_a_pickle(tmp_path):
    _, f = write_source(tmp_path)
    text = tmp_path / "notes.pkl"
    text.write_text("success rollouts are on the cluster\n")
    message = prepare_error(text, f, tmp_path)
    assert message.startswith(f"error: {text}: not a pickle file (it starts with b'success '")


def test_a_directory_instead_of_a_file(tmp_path):
    _, f = write_source(tmp_path)
    assert prepare_error(tmp_path, f, tmp_path) == f"error: {tmp_path}: is a directory, expected a pickle file"


def test_dict_without_trajectories(tmp_path):
    s, _ = write_source(tmp_path)
    f = write_pickle(tmp_path / "f.pkl", {"rollouts": [], "metadata": {}})
    assert (
        prepare_error(s, f, tmp_path)
        == f"error: {f}: expected a list of rollouts or a dict with 'trajectories'; got a dict with keys ['metadata', 'rollouts']"
    )


def test_list_of_non_dicts(tmp_path):
    s, _ = write_source(tmp_path)
    f = write_pickle(tmp_path / "f.pkl", [[0.1] * 7, [0.2] * 7])
    assert prepare_error(s, f, tmp_path) == f"error: {f}: rollout 0: expected a dict, got list"


def test_neither_list_nor_dict(tmp_path):
    s, _ = write_source(tmp_path)
    f = write_pickle(tmp_path / "f.pkl", np.zeros(3))
    assert prepare_error(s, f, tmp_path) == f"error: {f}: expected a list of rollouts, got ndarray"


def test_rollout_without_steps_or_features_is_skipped_and_counted(tmp_path):
    success, failure = rollouts()
    for rollout in success[:2]:
        rollout.update(steps=[], actions=[], features=[])
    metadata = prepare_ok(*write_source(tmp_path, success, failure), tmp_path)
    assert metadata["skipped_empty_rollouts"] == 2
    assert metadata["num_success_rollouts"] == len(success) - 2


def test_failed_hook_zeros1_hidden_state_is_skipped_and_counted(tmp_path):
    success, failure = rollouts()
    failure[0]["steps"][3]["hidden_state"] = np.zeros(1, dtype=np.float32)  # the real-world quirk
    failure[1]["steps"][0]["hidden_state"] = np.zeros(1, dtype=np.float32)  # even as a rollout's first step
    failure[2]["steps"][4]["hidden_state"] = None
    metadata = prepare_ok(*write_source(tmp_path, success, failure), tmp_path)
    assert metadata["skipped_wrong_hidden_length"] == 3
    assert metadata["other_hidden_lengths"] == {"0": 1, "1": 2}
    kept = {r["index"]: r["num_kept"] for r in metadata["rollouts"] if not r["success"]}
    assert kept[0] == kept[1] == kept[2] == len(failure[0]["steps"]) - 1
    assert load_dataset(tmp_path / "dataset.vlarisk").hidden_dim == 16


def test_features_list_layout_with_zeros1_and_numpy_arrays(tmp_path):
    """Rollouts with empty ``steps`` pair actions with features; arrays instead of lists are fine."""
    success, failure = rollouts()
    for rollout in success + failure:
        rollout["steps"] = []
        rollout["actions"] = np.stack(rollout["actions"])
    failure[0]["features"] = list(failure[0]["features"])
    failure[0]["features"][2] = np.zeros(1, dtype=np.float32)
    metadata = prepare_ok(*write_source(tmp_path, success, failure), tmp_path)
    assert metadata["skipped_wrong_hidden_length"] == 1


def test_hidden_state_of_another_length_is_an_error(tmp_path):
    success, failure = rollouts()
    failure[3]["steps"][7]["hidden_state"] = np.zeros(4096, dtype=np.float32)
    s, f = write_source(tmp_path, success, failure)
    assert prepare_error(s, f, tmp_path) == (
        f"error: {f}: rollout 3, step 7: field 'hidden_state' has 4096 values but earlier steps of this source have 16 "
        "(only a failed hook's zeros(1) is skipped; other lengths mean rollouts of different models were mixed)"
    )


def test_hidden_state_that_is_not_numeric(tmp_path):
    success, failure = rollouts()
    failure[1]["steps"][2]["hidden_state"] = "n/a"
    s, f = write_source(tmp_path, success, failure)
    assert prepare_error(s, f, tmp_path) == f"error: {f}: rollout 1, step 2: field 'hidden_state' is not numeric (got str)"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_hidden_states_are_skipped_and_counted(tmp_path, bad):
    success, failure = rollouts()
    for rollout, step in ((failure[0], 5), (success[1], 0)):
        state = np.array(rollout["steps"][step]["hidden_state"])  # chunk steps share one array: copy
        state[3] = bad
        rollout["steps"][step]["hidden_state"] = state
    metadata = prepare_ok(*write_source(tmp_path, success, failure), tmp_path)
    assert metadata["skipped_nonfinite_hidden"] == 2
    assert np.isfinite(np.asarray(load_dataset(tmp_path / "dataset.vlarisk").hidden)).all()


@pytest.mark.parametrize(
    "label, message",
    [
        ([np.nan] + [0.0] * 6, "field 'per_dim_risk' contains NaN or Inf"),
        ([0.0] * 6 + [np.inf], "field 'per_dim_risk' contains NaN or Inf"),
        ([1.5] + [0.0] * 6, "field 'per_dim_risk' has values outside [0, 1]: [1.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]"),
        ([-0.25] + [0.0] * 6, "field 'per_dim_risk' has values outside [0, 1]: [-0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]"),
        ([0.1] * 6, "field 'per_dim_risk' has 6 values, expected 7"),
        ([0.1] * 8, "field 'per_dim_risk' has 8 values, expected 7"),
        ("high", "field 'per_dim_risk' is not numeric"),
    ],
    ids=["nan", "inf", "above-1", "below-0", "6-values", "8-values", "text"],
)
def test_bad_labels_are_errors(tmp_path, label, message):
    success, failure = rollouts()
    failure[2]["steps"][9]["labels"]["per_dim_risk"] = label
    s, f = write_source(tmp_path, success, failure)
    assert prepare_error(s, f, tmp_path) == f"error: {f}: rollout 2, step 9: {message}"


def test_top_level_step_label_is_checked_too(tmp_path):
    success, failure = rollouts(with_labels=False)
    failure[0]["steps"][1]["per_dim_risk"] = [2.0] * 7
    s, f = write_source(tmp_path, success, failure, with_labels=False)
    assert prepare_error(s, f, tmp_path).startswith(f"error: {f}: rollout 0, step 1: field 'per_dim_risk' has values outside [0, 1]")


@pytest.mark.parametrize(
    "action, message",
    [
        ([0.0] * 6 + [np.nan], "field 'action' contains NaN or Inf"),
        ([0.0] * 6, "field 'action' must have 7 values, got shape (6,)"),
        ("open", "field 'action' is not numeric (got str)"),
    ],
    ids=["nan", "6-values", "text"],
)
def test_bad_actions_are_errors(tmp_path, action, message):
    success, failure = rollouts()
    failure[4]["steps"][6]["action"] = action
    s, f = write_source(tmp_path, success, failure)
    assert prepare_error(s, f, tmp_path) == f"error: {f}: rollout 4, step 6: {message}"


def test_actions_and_features_of_different_lengths(tmp_path):
    success, failure = rollouts()
    failure[0]["steps"] = []
    failure[0]["features"] = failure[0]["features"][:-1]
    s, f = write_source(tmp_path, success, failure)
    assert prepare_error(s, f, tmp_path) == f"error: {f}: rollout 0: 'actions' has 20 entries but 'features' has 19"


def test_source_without_failures(tmp_path):
    s, f = write_source(tmp_path, failure=[])
    assert prepare_error(s, f, tmp_path) == f"error: {f}: no usable failed rollouts (0 in the file; skipped: nothing)"


def test_source_whose_successes_are_all_unusable(tmp_path):
    success, failure = rollouts()
    for rollout in success:
        rollout.update(steps=[], actions=[], features=[])
    s, f = write_source(tmp_path, success, failure)
    assert prepare_error(s, f, tmp_path) == f"error: {s}: no usable successful rollouts (6 in the file; skipped: 6 empty rollouts)"


def test_failed_preparation_leaves_no_output(tmp_path):
    success, failure = rollouts()
    failure[-1]["steps"][0]["labels"]["per_dim_risk"] = [9.0] * 7  # the error comes after data was written
    s, f = write_source(tmp_path, success, failure)
    prepare_error(s, f, tmp_path)
    assert not (tmp_path / "dataset.vlarisk").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


# ------------------------------------------------------------------------- prepared datasets
@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small")
    s, f = write_source(root)
    prepare_dataset(s, f, root / "dataset.vlarisk")
    return root / "dataset.vlarisk"


def train_error(data, tmp_path, *extra) -> str:
    return error_of(
        "train_risk_predictor.py",
        "--data",
        data,
        "--output-dir",
        tmp_path / "model",
        "--epochs",
        "1",
        "--hidden-dims",
        "8",
        "--device",
        "cpu",
        *extra,
    )


def test_truncated_dataset(small_dataset, tmp_path):
    broken = tmp_path / "dataset.vlarisk"
    shutil.copytree(small_dataset, broken)
    data = (broken / "states.npy").read_bytes()
    (broken / "states.npy").write_bytes(data[: len(data) - 100])
    assert train_error(broken, tmp_path).startswith(f"error: {broken / 'states.npy'}: not a readable .npy array (")


def test_dataset_with_a_corrupt_footer(small_dataset, tmp_path):
    broken = tmp_path / "dataset.vlarisk"
    shutil.copytree(small_dataset, broken)
    (broken / "metadata.json").write_text((broken / "metadata.json").read_text().replace('"format"', 'X"format"', 1))
    assert train_error(broken, tmp_path).startswith(f"error: {broken / 'metadata.json'}: dataset metadata is corrupt (JSONDecodeError: ")


def test_rollout_pickle_given_as_the_dataset(tmp_path):
    s, _ = write_source(tmp_path)
    assert train_error(s, tmp_path) == f"error: {s}: holds rollouts, not a prepared dataset; run prepare_training_data.py on it first"


def test_dataset_that_is_not_one(tmp_path):
    other = tmp_path / "dataset.vlarisk"
    other.write_text("hello")
    assert train_error(other, tmp_path).startswith(f"error: {other}: a file, but a prepared dataset is a directory")


def test_missing_dataset(tmp_path):
    assert train_error(tmp_path / "none.vlarisk", tmp_path) == f"error: {tmp_path / 'none.vlarisk'}: dataset file not found"


def test_guide_style_dataset_without_rollout_ids(small_dataset, tmp_path):
    legacy = tmp_path / "dataset.pkl"
    write_legacy_pickle(load_dataset(small_dataset), legacy)
    payload = pickle.loads(legacy.read_bytes())
    for sample in payload["dataset"]:
        del sample["rollout_id"]
    write_pickle(legacy, payload)
    assert train_error(legacy, tmp_path) == (
        f"error: {legacy}: samples carry no 'rollout_id', so the data cannot be split by rollout without leaking; "
        "re-run prepare_training_data.py on the rollout pickles"
    )


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("hidden_state", np.full(16, np.nan, np.float32), "sample 3: field 'hidden_state' contains NaN or Inf"),
        ("hidden_state", np.zeros(1, np.float32), "sample 3: field 'hidden_state' has shape (1,), but sample 0 has (16,)"),
        ("risk_label", np.full(7, np.inf, np.float32), "sample 3: field 'risk_label' contains NaN or Inf"),
        (
            "risk_label",
            np.full(7, 1.25, np.float32),
            "sample 3: field 'risk_label' has values outside [0, 1]: [1.25, 1.25, 1.25, 1.25, 1.25, 1.25, 1.25]",
        ),
    ],
    ids=["nan-hidden", "zeros1-hidden", "inf-label", "label-above-1"],
)
def test_guide_style_dataset_with_bad_values(small_dataset, tmp_path, field, value, message):
    legacy = tmp_path / "dataset.pkl"
    write_legacy_pickle(load_dataset(small_dataset), legacy)
    payload = pickle.loads(legacy.read_bytes())
    payload["dataset"][3][field] = value
    write_pickle(legacy, payload)
    assert train_error(legacy, tmp_path).startswith(f"error: {legacy}: {message}")


# ------------------------------------------------------------------------- splits
def test_split_too_small_for_the_fractions(tmp_path):
    s, f = write_source(tmp_path, num_success=2, num_failure=3)
    prepare_dataset(s, f, tmp_path / "d.vlarisk")
    message = error_of(
        "split_dataset.py",
        "--data",
        tmp_path / "d.vlarisk",
        "--output",
        tmp_path / "split.json",
        "--val-split",
        "0.2",
        "--test-split",
        "0.1",
    )
    assert message == (
        f"error: {tmp_path / 'd.vlarisk'}: the val split has only failures (1 rollout); too few rollouts for the requested fractions "
        "(2 successes, 3 failures in total)"
    )
    assert not (tmp_path / "split.json").exists()


def test_split_fractions_out_of_range(small_dataset, tmp_path):
    message = error_of(
        "split_dataset.py", "--data", small_dataset, "--output", tmp_path / "split.json", "--val-split", "0.6", "--test-split", "0.5"
    )
    assert message == f"error: {small_dataset}: split fractions val=0.6, test=0.5, calibration=0.15 must be in [0, 1) and sum below 1"


def test_unknown_held_out_task(small_dataset, tmp_path):
    message = error_of("split_dataset.py", "--data", small_dataset, "--output", tmp_path / "split.json", "--held-out-tasks", "7")
    assert message == f"error: {small_dataset}: held-out tasks ['7'] do not occur in the dataset (tasks: ['0', '1'])"


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        ("[1, 2]", "expected a JSON object with 'train', 'val' and 'test' lists, got list"),
        ('{"train": [0], "val": [1]}', "field(s) ['test'] missing or not lists of rollout ids"),
        ('{"train": [0, 1], "val": [1], "test": [2]}', "rollout ids [1] appear in more than one split"),
        ('{"train": [0], "val": [1], "test": [999]}', "split 'test' names rollout ids [999] that the dataset does not have"),
        ('{"train": ["a"], "val": [1], "test": [2]}', "split 'train' holds ['a'], which are not rollout ids (integers)"),
    ],
    ids=["not-json", "a-list", "missing-test", "overlap", "unknown-id", "not-ids"],
)
def test_bad_split_files(small_dataset, tmp_path, content, message):
    split = tmp_path / "split.json"
    split.write_text(content)
    assert train_error(small_dataset, tmp_path, "--split", split) == f"error: {split}: {message}"


def test_a_dimension_without_positives_reports_null_with_the_reason(tmp_path):
    """Labels of gripper are 0 everywhere: its AUC/AP are null, not 0.5/0, and the reason is given."""
    success, failure = rollouts(num_success=10, num_failure=12)
    for rollout in failure:
        for step in rollout["steps"]:
            step["labels"]["per_dim_risk"][6] = 0.0
    prepare_dataset(*write_source(tmp_path, success, failure), tmp_path / "d.vlarisk")
    dataset = load_dataset(tmp_path / "d.vlarisk")
    split = plain_split(dataset.metadata["rollouts"], 0.25, 0.25, seed=0)
    source = Source("m", dataset, split)
    outcome = Trainer([source], TrainingConfig(epochs=1, hidden_dims=[8], device="cpu"), tmp_path / "m", "m", log=lambda _: None).fit()
    report = evaluate(outcome.model, source, outcome.label_cutoffs["m"], outcome.device)
    assert report["test_metrics"]["auc_gripper"] is None and report["test_metrics"]["ap_gripper"] is None
    assert report["undefined"]["gripper"] == "no positive labels in the training split, so no label cut-off exists"
    assert report["label_cutoffs"]["gripper"] is None
    assert report["test_metrics"]["mean_auc"] == pytest.approx(
        np.mean(
            [
                report["test_metrics"][f"auc_{d}"]
                for d in ("x", "y", "z", "roll", "pitch", "yaw")
                if report["test_metrics"][f"auc_{d}"] is not None
            ]
        )
    )


def test_no_positives_in_the_scored_split_only():
    target = np.zeros((20, 7), dtype=np.float32)
    target[:10, 1:] = np.linspace(0.0, 1.0, 10)[:, None]
    report = test_metrics(np.random.default_rng(0).random((20, 7)), target, np.full(7, 0.5))
    assert report["test_metrics"]["auc_x"] is None and report["undefined"]["x"] == "no positives in the scored split"
    assert json.loads(json.dumps(report["test_metrics"]))["auc_x"] is None  # null in results.json


# ------------------------------------------------------------------------- training and evaluation settings
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "epochs must be >= 1, got 0"),
        (["--lr", "0"], "lr must be > 0, got 0.0"),
        (
            ["--activation", "sigmoidal"],
            "argument --activation: invalid choice: 'sigmoidal' (choose from 'relu', 'gelu', 'tanh', 'silu', 'leaky_relu')",
        ),
        (["--device", "tpu"], "device must be one of auto, cpu, cuda, mps or cuda:N, got 'tpu'"),
    ],
    ids=["epochs-0", "lr-0", "activation", "device"],
)
def test_bad_training_flags_are_usage_errors(small_dataset, tmp_path, flags, message):
    code, _, err = cli("train_risk_predictor.py", "--data", small_dataset, "--output-dir", tmp_path, *flags)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"train_risk_predictor.py: error: {message}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_cuda_requested_without_a_gpu(small_dataset, tmp_path):
    code, _, err = cli("train_risk_predictor.py", "--data", small_dataset, "--output-dir", tmp_path, "--device", "cuda")
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("train_risk_predictor.py: error: device cuda was requested but torch sees no CUDA GPU")


def test_resume_with_other_settings_data_or_split_is_refused(small_dataset, tmp_path):
    args = ["--data", small_dataset, "--output-dir", tmp_path, "--epochs", "1", "--hidden-dims", "8", "--device", "cpu", "--no-test"]
    assert cli("train_risk_predictor.py", *args)[0] == 0
    latest = tmp_path / "latest.pt"
    (tmp_path / "results.json").write_text("{}")  # a refused run must not delete earlier work
    assert error_of("train_risk_predictor.py", *args, "--resume", "--lr", "0.01") == (
        f"error: {latest}: cannot resume with different training settings (lr 0.001 -> 0.01); use the same settings or train without --resume"
    )
    assert (
        error_of("train_risk_predictor.py", *args, "--resume", "--val-split", "0.3")
        == f"error: {latest}: cannot resume: it was trained with a different split"
    )
    assert (
        error_of("train_risk_predictor.py", *args, "--resume", "--hidden-dims", "4")
        == f"error: {latest}: cannot resume: it was trained on other data or another architecture"
    )
    assert (tmp_path / "results.json").read_text() == "{}"


@pytest.fixture(scope="module")
def trained_16d(small_dataset, tmp_path_factory):
    """A checkpoint of the 16-D dataset, its split, and a 24-D dataset of another 'model'."""
    root = tmp_path_factory.mktemp("trained")
    code, _, err = cli(
        "train_risk_predictor.py",
        "--data",
        small_dataset,
        "--output-dir",
        root / "model",
        "--epochs",
        "1",
        "--hidden-dims",
        "8",
        "--device",
        "cpu",
        "--no-test",
        "--val-split",
        "0.25",
        "--test-split",
        "0.25",
    )
    assert code == 0, err
    split = root / "split.json"
    assert cli("split_dataset.py", "--data", small_dataset, "--output", split, "--val-split", "0.25", "--test-split", "0.25")[0] == 0
    other = root / "other"
    other.mkdir()
    s, f = write_source(other, hidden_dim=24)
    prepare_dataset(s, f, other / "dataset.vlarisk")
    split_other = root / "split_other.json"
    assert (
        cli(
            "split_dataset.py", "--data", other / "dataset.vlarisk", "--output", split_other, "--val-split", "0.25", "--test-split", "0.25"
        )[0]
        == 0
    )
    return {"checkpoint": root / "model" / "best_model.pt", "split": split, "other": other / "dataset.vlarisk", "split_other": split_other}


def test_checkpoint_of_another_hidden_size(trained_16d, tmp_path):
    t = trained_16d
    message = error_of(
        "evaluate_risk_predictor.py",
        "--checkpoint",
        t["checkpoint"],
        "--data",
        t["other"],
        "--split",
        t["split_other"],
        "--output",
        tmp_path / "r.json",
        "--device",
        "cpu",
    )
    assert (
        message
        == f"error: {t['checkpoint']}: the model takes 16-D hidden states but {t['other']} has 24-D ones (a checkpoint of another model's data?)"
    )
    assert not (tmp_path / "r.json").exists()


def test_checkpoint_that_is_corrupt_or_missing(trained_16d, tmp_path, small_dataset):
    broken = tmp_path / "best_model.pt"
    broken.write_bytes(trained_16d["checkpoint"].read_bytes()[:200])
    args = ["--data", small_dataset, "--split", trained_16d["split"], "--output", tmp_path / "r.json", "--device", "cpu"]
    assert error_of("evaluate_risk_predictor.py", "--checkpoint", broken, *args) == (
        f"error: {broken}: not a loadable checkpoint (RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central directory.)"
    )
    missing = tmp_path / "none.pt"
    assert error_of("evaluate_risk_predictor.py", "--checkpoint", missing, *args) == f"error: {missing}: checkpoint not found"


def test_multi_model_checkpoint_given_to_the_single_model_evaluation(trained_16d, small_dataset, tmp_path):
    checkpoint = tmp_path / "best_model.pt"
    torch.save({"epoch": 1, "sources": {"a": {}, "b": {}}, "model_state_dict": {}}, checkpoint)
    message = error_of(
        "evaluate_risk_predictor.py",
        "--checkpoint",
        checkpoint,
        "--data",
        small_dataset,
        "--split",
        trained_16d["split"],
        "--output",
        tmp_path / "r.json",
        "--device",
        "cpu",
    )
    assert message == f"error: {checkpoint}: is a multi-model checkpoint; score it with evaluate_multi_model.py"


def test_guide_style_checkpoint_is_scored(trained_16d, small_dataset, tmp_path):
    """The reference's checkpoint has no history/training_config and numpy floats in val_metrics."""
    checkpoint = torch.load(trained_16d["checkpoint"], weights_only=True)
    guide = {
        key: checkpoint[key] for key in ("epoch", "model_state_dict", "optimizer_state_dict", "val_loss", "model_config", "normalization")
    }
    guide["val_metrics"] = {"auc_x": np.float64(0.5)}
    torch.save(guide, tmp_path / "best_model.pt")
    code, _, err = cli(
        "evaluate_risk_predictor.py",
        "--checkpoint",
        tmp_path / "best_model.pt",
        "--data",
        small_dataset,
        "--split",
        trained_16d["split"],
        "--output",
        tmp_path / "r.json",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["history"] == {}


# ------------------------------------------------------------------------- multi-model configs
@pytest.mark.skipif(not (SCRIPTS / "train_multi_model.py").exists(), reason="train_multi_model.py not written yet")
def test_multi_model_config_naming_a_missing_dataset(small_dataset, tmp_path):
    config = tmp_path / "multi.json"
    config.write_text(
        json.dumps(
            {
                "datasets": [
                    {"model_name": "a", "data_path": str(small_dataset)},
                    {"model_name": "b", "data_path": str(tmp_path / "missing.vlarisk")},
                ]
            }
        )
    )
    message = error_of("train_multi_model.py", "--data-config", config, "--output-dir", tmp_path / "m", "--epochs", "1", "--device", "cpu")
    assert message == f"error: {config}: datasets[1].data_path: {str(tmp_path / 'missing.vlarisk')!r} is not an existing file"


@pytest.mark.skipif(not (SCRIPTS / "train_multi_model.py").exists(), reason="train_multi_model.py not written yet")
def test_multi_model_config_with_a_duplicate_name(small_dataset, tmp_path):
    config = tmp_path / "multi.json"
    config.write_text(json.dumps({"datasets": [{"model_name": "a", "data_path": str(small_dataset)}] * 2}))
    message = error_of("train_multi_model.py", "--data-config", config, "--output-dir", tmp_path / "m", "--epochs", "1", "--device", "cpu")
    assert message == f"error: {config}: datasets[1].model_name 'a' is already used by datasets[0]; names must be unique"


# ------------------------------------------------------------------------- pipeline configs
TINY = (ROOT / "tests" / "data" / "tiny_config.yaml").read_text()
DUPLICATE_SOURCE = """sources:
  tiny_a:
    simulate: {hidden_dim: 16, seed: 0}
  tiny_a:
    simulate: {hidden_dim: 24, seed: 1}
""" + "\n".join(line for line in TINY.splitlines() if line.startswith(("split", "training", "evaluation")))


def dry_run(project: Path, config_text: str) -> subprocess.CompletedProcess:
    (project / "bad.yaml").write_text(config_text)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", "bad.yaml", "--replace-workflow-config"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("workflow"))


@pytest.mark.slow
def test_duplicate_source_names_in_the_config(workflow_copy):
    result = dry_run(workflow_copy, DUPLICATE_SOURCE)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert (
        f"{workflow_copy / 'bad.yaml'}:4: key 'tiny_a' under 'sources' appears again (first on line 2); "
        "YAML would silently keep only the last one"
    ) in output, output


@pytest.mark.slow
def test_config_failing_the_schema_names_key_and_expectation(workflow_copy):
    result = dry_run(workflow_copy, re.sub(r"epochs: \d+", "epochs: 0", TINY, count=1))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"error: {workflow_copy / 'bad.yaml'}: training.epochs: 0 is less than the minimum of 1\n" in output, output
    assert "Traceback" not in output and "Failed validating" not in output


# ------------------------------------------------------------------------- real subprocesses
@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory, trained_16d):
    """A few entry points run as real processes, two at a time: (exit status, stderr)."""
    root = tmp_path_factory.mktemp("subprocesses")
    s, f = write_source(root)
    t = trained_16d
    commands = {
        "prepare-missing": ["prepare_training_data.py", "--success", root / "nope.pkl", "--failure", f, "--output", root / "d.vlarisk"],
        "evaluate-hidden-size": [
            "evaluate_risk_predictor.py",
            "--checkpoint",
            t["checkpoint"],
            "--data",
            t["other"],
            "--split",
            t["split_other"],
            "--output",
            root / "r.json",
            "--device",
            "cpu",
        ],
        "split-too-small": [
            "split_dataset.py",
            "--data",
            t["other"],
            "--output",
            root / "s.json",
            "--val-split",
            "0.45",
            "--test-split",
            "0.45",
        ],
        "train-not-a-dataset": ["train_risk_predictor.py", "--data", s, "--output-dir", root / "m", "--device", "cpu"],
    }

    def launch(command):
        result = subprocess.run(
            [sys.executable, str(SCRIPTS / command[0]), *map(str, command[1:])], capture_output=True, text=True, timeout=300
        )
        return result.returncode, result.stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(launch, command) for name, command in commands.items()}
    return {name: future.result() for name, future in futures.items()}, root


@pytest.mark.parametrize("name", ["prepare-missing", "evaluate-hidden-size", "split-too-small", "train-not-a-dataset"])
def test_entry_points_exit_2_with_one_error_line(subprocess_results, name):
    results, root = subprocess_results
    code, stderr = results[name]
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: /"), stderr
