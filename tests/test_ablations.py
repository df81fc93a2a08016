"""The ablation grid: each cell's seeds in one job, each seed with its own files; growing the grid
by a value runs only its cell."""

from __future__ import annotations

import json
import pickle
import shlex
from pathlib import Path

import pytest
import torch
import yaml
from pipeline_utils import copy_project, load_script, planned_jobs, planned_wildcards, snakemake

from vlarisk.commands.per_seed import run_per_seed
from vlarisk.commands.train import main as train_main
from vlarisk.core.cli import run
from vlarisk.core.errors import InputError
from vlarisk.core.settings import knob_names, training_flags
from vlarisk.data.dataset import load_dataset
from vlarisk.data.documents import read_checkpoint
from vlarisk.data.prepare import prepare_dataset

TABLES = ("results/paper/tables/ablation_loss_type.json", "results/paper/tables/ablation_labels.json")
GRID = {
    "sources": ["tiny_a"],
    "seeds": [0, 1],
    "training": {"epochs": 2},
    "factors": {"loss_type": ["bce", "mse"], "labels": ["provided", "heuristic"]},
}
CELLS = ("default", "loss_type-mse", "labels-heuristic")


def write_config(workdir: Path, name: str, **changes) -> tuple[str, str]:
    """The tiny config with the test grid (``changes`` replace its keys); ``--configfile`` args."""
    config = yaml.safe_load((workdir / "tests/data/tiny_config.yaml").read_text())
    config["ablations"] = {**GRID, **changes}
    (workdir / name).write_text(yaml.safe_dump(config))
    return "--configfile", name


def planned(workdir: Path, *args: str) -> set[tuple[str, str]]:
    """``(rule, wildcards)`` of every job a dry run of the tables would run."""
    return planned_wildcards(workdir, *TABLES, *args)


def cell_jobs(cell: str) -> set[tuple[str, str]]:
    return {(rule, f"source=tiny_a, cell={cell}") for rule in ("train_ablation", "evaluate_ablation")}


def table_jobs(*factors: str) -> set[tuple[str, str]]:
    return {("ablation_table", f"factor={factor}") for factor in factors}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The loss_type and labels tables of the two-seed grid, built for real."""
    workdir = copy_project(tmp_path_factory.mktemp("ablations"))
    result = snakemake(workdir, "--cores", "2", *TABLES, *write_config(workdir, "grid.yaml"))
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def test_unchanged_grid_has_nothing_to_do(built):
    assert planned_jobs(built, *TABLES, *write_config(built, "same.yaml")) == {}


def test_adding_a_seed_reruns_every_cell(built):
    """A new seed draws its own split (seeds vary the split as well as the weights); every cell's job runs all its seeds."""
    jobs = planned(built, *write_config(built, "seeds.yaml", seeds=[0, 1, 2]))
    new_seed = {("split_dataset_seeded", "source=tiny_a, seed=2"), ("score_baselines", "source=tiny_a, split=seed-2")}
    assert jobs == set().union(*(cell_jobs(cell) for cell in CELLS), table_jobs("loss_type", "labels"), new_seed)


def test_adding_a_value_schedules_only_its_cell(built):
    config = write_config(built, "values.yaml", factors={**GRID["factors"], "loss_type": ["bce", "mse", "mae"]})
    assert planned(built, *config) == cell_jobs("loss_type-mae") | table_jobs("loss_type")


def test_changing_a_value_reruns_only_its_cell(built):
    config = write_config(built, "changed.yaml", factors={**GRID["factors"], "loss_type": ["bce", "mae"]})
    assert planned(built, *config) == cell_jobs("loss_type-mae") | table_jobs("loss_type")


def test_each_cell_trains_with_its_own_settings(built):
    settings = {
        (cell, seed): read_checkpoint(built / f"results/ablations/tiny_a/{cell}/seed-{seed}/best_model.pt")["training_config"]
        for cell in CELLS
        for seed in GRID["seeds"]
    }
    losses = {cell: s["loss_type"] for (cell, _), s in settings.items()}
    assert losses == {"default": "bce", "loss_type-mse": "mse", "labels-heuristic": "bce"}
    assert all(s["epochs"] == 2 and s["seed"] == seed for (_, seed), s in settings.items())


def test_a_seed_trained_with_its_cell_equals_a_run_of_its_own(built, tmp_path):
    """The cell's job trains its seeds one after another in one process: each seed's weights are
    those of a separate training command with that seed and split."""
    cell = built / "results/ablations/tiny_a/loss_type-mse/seed-1"
    config = read_checkpoint(cell / "best_model.pt")["training_config"]
    flags = training_flags({name: config[name] for name in knob_names("training")}, evaluation=config)
    data, split = built / "results/datasets/tiny_a/dataset.vlarisk", built / "results/splits/tiny_a.seed-1.json"
    common = ["--data", str(data), "--split", str(split), "--model-name", "tiny_a", "--threads", "2", "--no-test"]
    run(train_main, [*common, "--output-dir", str(tmp_path), *shlex.split(flags)])
    alone, together = read_checkpoint(tmp_path / "best_model.pt"), read_checkpoint(cell / "best_model.pt")
    assert alone["training_config"] == config
    assert alone["epoch"] == together["epoch"]
    for name, weights in together["model_state_dict"].items():
        assert torch.equal(weights, alone["model_state_dict"][name]), name


def test_heuristic_cell_trains_on_heuristic_labels_and_is_scored_on_provided_ones(built):
    cell = built / "results/ablations/tiny_a/labels-heuristic/seed-0"
    heuristic = load_dataset(built / "results/datasets/tiny_a/heuristic.vlarisk")
    provided = load_dataset(built / "results/datasets/tiny_a/dataset.vlarisk")
    assert read_checkpoint(cell / "best_model.pt")["data_sha256"] == heuristic.content_hash
    results = json.loads((cell / "results.json").read_text())
    assert results["provenance"]["dataset_sha256"] == provided.content_hash


def test_table_cells_equal_the_results_they_name(built):
    table = json.loads((built / TABLES[0]).read_text())
    assert [row["labels"]["loss_type"] for row in table["rows"]] == ["bce (default)", "mse"]
    for row in table["rows"]:
        assert [path.split("/")[-2] for path in row["results"]] == [f"seed-{seed}" for seed in GRID["seeds"]]
        results = [json.loads((built / path).read_text())["test_metrics"] for path in row["results"]]
        assert row["cells"]["mean AUC"]["values"] == [run["mean_auc"] for run in results]
        assert row["cells"]["AUC x"]["values"] == [run["auc_x"] for run in results]


def test_labels_factor_skips_unlabelled_sources(built):
    config = write_config(built, "both.yaml", sources=["tiny_a", "tiny_b"])
    cells = {wildcards for rule, wildcards in planned(built, *config) if rule == "train_ablation"}
    assert cells == {f"source=tiny_b, cell={cell}" for cell in ("default", "loss_type-mse")}


def test_rollout_check_refuses_datasets_whose_ids_differ(rollout_files, dataset_path, tmp_path):
    check = load_script("check_same_rollouts")
    success, failure, _ = rollout_files
    prepare_dataset(success, failure, tmp_path / "heuristic.vlarisk", labelling="heuristic")
    check.main([str(dataset_path), str(tmp_path / "heuristic.vlarisk"), "--output", str(tmp_path / "ok.txt")])
    assert "the same" in (tmp_path / "ok.txt").read_text()
    payload = pickle.loads(Path(failure).read_bytes())
    payload["trajectories"] = payload["trajectories"][1:]
    (tmp_path / "fewer.pkl").write_bytes(pickle.dumps(payload))
    prepare_dataset(success, tmp_path / "fewer.pkl", tmp_path / "fewer.vlarisk", labelling="heuristic")
    with pytest.raises(InputError, match="differ"):
        check.main([str(dataset_path), str(tmp_path / "fewer.vlarisk"), "--output", str(tmp_path / "bad.txt")])


def test_each_seed_runs_the_command_with_its_own_arguments():
    calls = []
    run_per_seed(calls.append, ["--seeds", "0", "2", "--", "--seed", "{seed}", "--output-dir", "cell/seed-{seed}", "--epochs", "2"])
    assert calls == [["--seed", str(seed), "--output-dir", f"cell/seed-{seed}", "--epochs", "2"] for seed in (0, 2)]
    with pytest.raises(SystemExit):  # the seeds would overwrite each other's files
        run_per_seed(calls.append, ["--seeds", "0", "1", "--", "--output-dir", "cell"])
