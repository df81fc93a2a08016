"""Paper tables: every cell equals the results it names, n/a for undefined, stable bytes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pipeline_utils import load_script
from sklearn.metrics import roc_auc_score

from vlarisk.core.constants import ACTION_DIMENSIONS
from vlarisk.core.settings import TrainingConfig
from vlarisk.data.dataset import load_dataset
from vlarisk.data.splits import plain_split
from vlarisk.report.tables import Summary, ablation_table, per_dimension_table, single_vs_multi_table, to_latex, write_table
from vlarisk.score.evaluation import evaluate
from vlarisk.score.predictions import failure_relation, load_predictions
from vlarisk.train.sources import Source
from vlarisk.train.training import Trainer


def metrics(auc: float | None, ap: float | None = 0.2) -> dict:
    """Test metrics with every dimension at ``auc``/``ap`` but yaw undefined."""
    values = {}
    for name in ACTION_DIMENSIONS:
        values[f"auc_{name}"] = None if name == "yaw" else auc
        values[f"ap_{name}"] = None if name == "yaw" else ap
    values["mean_auc"], values["mean_ap"] = auc, ap
    return values


def write_results(path: Path, test_metrics: dict, **extra) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"test_metrics": test_metrics, **extra}))
    return str(path)


def with_baselines(model_auc: float | None, logistic_auc: float) -> dict:
    """A ``baselines`` block: the logistic scorer at ``logistic_auc`` and the model's margin over it."""
    margin = None if model_auc is None else model_auc - logistic_auc
    return {"logistic": metrics(logistic_auc, 0.3), "model_vs_logistic": {"logistic_mean_auc": logistic_auc, "margin": margin}}


def sidecar(prefix: Path) -> dict:
    return json.loads(Path(f"{prefix}.json").read_text())


def csv_rows(prefix: Path) -> list[dict]:
    with open(f"{prefix}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def seeds(tmp_path):
    """Three seeds of two cells; ``bce`` has one seed with AUC undefined everywhere."""
    runs = []
    for value, aucs in (("mse (default)", (0.7, 0.8, 0.9)), ("bce", (0.6, None, 0.62))):
        for seed, auc in enumerate(aucs):
            spread = {name: 0.01 * (seed + 1) + dim for dim, name in enumerate(ACTION_DIMENSIONS)}
            test_metrics = metrics(auc, ap=None if auc is None else 0.3 + seed / 100)
            path = write_results(
                tmp_path / value.split()[0] / f"seed-{seed}" / "results.json",
                test_metrics,
                prediction_std=spread,
                baselines=with_baselines(auc, 0.75),
            )
            runs.append(("src", value, path))
    return runs


def test_ablation_cells_are_mean_and_sample_std_of_their_seeds(seeds, tmp_path):
    prefix = tmp_path / "tables" / "ablation_loss_type"
    write_table(ablation_table("loss_type", seeds), prefix)
    rows = {row["labels"]["loss_type"]: row for row in sidecar(prefix)["rows"]}
    default = rows["mse (default)"]["cells"]["mean AUC"]
    assert default["mean"] == pytest.approx(0.8) and default["std"] == pytest.approx(np.std([0.7, 0.8, 0.9], ddof=1))
    assert default["values"] == [0.7, 0.8, 0.9]
    assert rows["mse (default)"]["results"] == sorted(path for _, value, path in seeds if value == "mse (default)")
    table = {row["loss_type"]: row for row in csv_rows(prefix)}
    assert table["mse (default)"]["mean AUC"] == "0.800 ± 0.100"
    assert table["mse (default)"]["runs"] == "3"
    assert table["bce"]["mean AUC"] == "0.610 ± 0.014 (2/3)"
    assert table["bce"]["AUC yaw"] == "n/a"
    assert table["bce"]["results"].split(";") == rows["bce"]["results"]
    assert rows["bce"]["cells"]["min pred std"]["values"] == pytest.approx([0.01, 0.02, 0.03])


def test_ablation_cells_show_the_logistic_baseline_and_the_margin_over_it(seeds, tmp_path):
    prefix = tmp_path / "ablation_loss_type"
    write_table(ablation_table("loss_type", seeds), prefix)
    table = {row["loss_type"]: row for row in csv_rows(prefix)}
    assert table["mse (default)"]["logistic AUC"] == "0.750 ± 0.000"
    assert table["mse (default)"]["Δ vs logistic"] == "+0.050 ± 0.100"
    assert table["bce"]["Δ vs logistic"] == "-0.140 ± 0.014 (2/3)"


def test_collapsed_runs_are_marked_in_every_table(tmp_path):
    runs = [
        ("src", "mae", write_results(tmp_path / f"seed-{seed}" / "results.json", metrics(0.5), collapsed=seed < 2)) for seed in range(3)
    ]
    prefix = tmp_path / "ablation_loss_type"
    write_table(ablation_table("loss_type", runs), prefix)
    assert csv_rows(prefix)[0]["collapsed"] == "2/3"
    single = write_results(tmp_path / "a" / "results.json", metrics(0.5), collapsed=True)
    healthy = write_results(tmp_path / "b" / "results.json", metrics(0.8), collapsed=False)
    labels = [row.labels for row in per_dimension_table("auc", {"a": single, "b": healthy}, {}).rows]
    assert labels == [("a", "single (collapsed)"), ("b", "single")]


def test_an_undefined_metric_is_na_never_half():
    assert Summary((None, None)).format() == "n/a"
    assert Summary((0.5,)).format() == "0.500"
    assert Summary((None,)).as_dict() == {"mean": None, "std": None, "n": 0, "values": [None]}


def test_per_dimension_rows_hold_the_numbers_of_their_files(tmp_path):
    scorers = {"step_index": metrics(0.6), "abs_action": metrics(0.55), "planted_direction": metrics(0.9, 0.4)}
    single = write_results(tmp_path / "a" / "results.json", metrics(0.81, 0.25), baselines={**with_baselines(0.81, 0.7), **scorers})
    per_source = {"a": {"test_metrics": metrics(0.77, 0.22)}, "other": {"test_metrics": metrics(0.5)}}
    multi = write_results(tmp_path / "multi" / "results.json", metrics(0.6), per_source=per_source)
    table = per_dimension_table("auc", {"a": single}, {"pair": multi})
    models = ["single", "multi (pair)", "logistic baseline", "step index", "|action|", "planted direction"]
    assert [row.labels for row in table.rows] == [("a", model) for model in models]
    expected = {
        "single": (0.81, single),
        "multi (pair)": (0.77, multi),
        "logistic baseline": (0.7, single),
        "step index": (0.6, single),
        "|action|": (0.55, single),
        "planted direction": (0.9, single),
    }
    for row in table.rows:
        value, path = expected[row.labels[1]]
        assert row.sources == (path,)
        cells = dict(zip(table.value_columns, row.cells, strict=True))
        assert cells["x"].mean == value and cells["mean"].mean == value
        assert cells["yaw"].format() == "n/a"


def test_baseline_labels_cannot_break_markdown_or_latex(tmp_path):
    single = write_results(tmp_path / "a" / "results.json", metrics(0.81), baselines={"abs_action": metrics(0.55)})
    prefix = tmp_path / "auc_per_dimension"
    write_table(per_dimension_table("auc", {"a": single}, {}), prefix)
    (line,) = [line for line in Path(f"{prefix}.md").read_text().splitlines() if "action\\|" in line]
    assert line.startswith(r"| a | \|action\| | 0.550 |") and line.count(" | ") == 9
    assert r"\textbar{}action\textbar{}" in Path(f"{prefix}.tex").read_text()


def test_single_vs_multi_without_groups_or_baselines_shows_na(tmp_path):
    single = write_results(tmp_path / "a" / "results.json", metrics(0.81, 0.25))
    (row,) = single_vs_multi_table({"a": single}, {}).rows
    assert [cell.format() for cell in row.cells] == ["0.810", "n/a", "n/a", "n/a", "0.250", "n/a", "n/a"]


def test_single_vs_multi_difference_is_multi_minus_single(tmp_path):
    single = write_results(tmp_path / "a" / "results.json", metrics(0.80, 0.25), baselines=with_baselines(0.80, 0.72))
    multi = write_results(tmp_path / "m" / "results.json", metrics(0.7), per_source={"a": {"test_metrics": metrics(0.75, 0.3)}})
    table = single_vs_multi_table({"a": single}, {"g": multi})
    (row,) = table.rows
    assert table.value_columns[3] == "logistic AUC"
    assert [cell.format() for cell in row.cells] == ["0.800", "0.750", "-0.050", "0.720", "0.250", "0.300", "+0.050"]
    assert row.sources == (single, multi)


def test_latex_is_booktabs_with_escaped_text(seeds):
    latex = to_latex(ablation_table("loss_type", seeds))
    assert r"\toprule" in latex and r"\midrule" in latex and r"\bottomrule" in latex
    assert r"loss\_type" in latex and r"0.800 $\pm$ 0.100" in latex


def test_two_runs_give_byte_identical_files(seeds, tmp_path):
    make_tables = load_script("make_tables")
    argv = ["ablation", "--factor", "loss_type"] + [part for run in seeds for part in ("--run", *run)]
    for name in ("first", "second"):
        make_tables.main(["--output-prefix", str(tmp_path / name / "table"), *argv])
    for extension in ("md", "tex", "csv", "html", "json"):
        first, second = (tmp_path / name / f"table.{extension}" for name in ("first", "second"))
        assert first.read_bytes() == second.read_bytes(), extension


def test_failure_relation_bins_and_correlations():
    risk = np.linspace(0, 1, 100)
    fail = (risk > 0.8).astype(np.uint8)
    relation = failure_relation(risk, risk, fail, bins=5)
    assert relation["fail_rate_by_bin"] == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert relation["spearman_fail"] > 0.6 and relation["pearson_label"] == pytest.approx(1.0)
    constant = failure_relation(np.zeros(100), risk, fail, bins=5)
    assert constant["spearman_fail"] is None and constant["pearson_label"] is None


@pytest.fixture(scope="module")
def trained_model(dataset_path, tmp_path_factory):
    """A tiny model trained on the shared dataset: ``(checkpoint, split file, evaluate() report of the trained model)``."""
    output_dir = tmp_path_factory.mktemp("model")
    dataset = load_dataset(dataset_path)
    split = plain_split(dataset.metadata["rollouts"], 0.2, 0.2, seed=0)
    (output_dir / "split.json").write_text(json.dumps(split))
    config = TrainingConfig(epochs=2, batch_size=128, hidden_dims=[16], device="cpu")
    source = Source("tiny", dataset, split)
    outcome = Trainer([source], config, output_dir, "tiny", log=lambda _: None).fit()
    report = evaluate(outcome.model, source, outcome.label_cutoffs["tiny"], torch.device("cpu"))
    return output_dir / "best_model.pt", output_dir / "split.json", report


def test_predictions_reproduce_the_evaluation(trained_model, dataset_path, tmp_path):
    """The evaluation command writes results.json and the test predictions together; both agree with scoring the trained model."""
    checkpoint, split, report = trained_model
    args = [
        "--checkpoint",
        checkpoint,
        "--data",
        dataset_path,
        "--split",
        split,
        "--output",
        tmp_path / "results.json",
        "--predictions",
        tmp_path / "p.npz",
        "--device",
        "cpu",
    ]
    load_script("evaluate_risk_predictor").main([str(a) for a in args])
    assert json.loads((tmp_path / "results.json").read_text())["test_metrics"] == report["test_metrics"]
    data = load_predictions(tmp_path / "p.npz")
    assert data["provenance"]["checkpoint"] == str(checkpoint)
    assert len(data["prediction"]) == report["num_samples"]
    for dim, name in enumerate(ACTION_DIMENSIONS):
        positive = data["positive"][:, dim]
        assert positive.sum() == report["positives"][name]
        expected = report["test_metrics"][f"auc_{name}"]
        if expected is not None:
            assert roc_auc_score(positive, data["prediction"][:, dim]) == pytest.approx(expected, abs=1e-6)
