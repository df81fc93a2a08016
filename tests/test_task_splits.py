"""Detection over several task splits: per-split values, mean and SD in the main results.json."""

from __future__ import annotations

import math

from vlarisk.data.task_splits import add_task_splits, fpr_within_alpha, scorer_summaries
from vlarisk.report.tables import detection_table


def _block(auc, balanced=None, logistic=None):
    block = {"rollout_auc": auc, "baselines": {"logistic": {"rollout_auc": logistic}}}
    if balanced is not None:
        block["deployed"] = {"balanced_accuracy": balanced}
    return block


def _plain_mean_sd(values):
    """Reference: mean and sample SD by plain loops."""
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def test_each_set_gains_per_split_values_with_mean_and_sd():
    detection = {"test_unseen": _block(0.70, 0.61, 0.65), "test_seen": _block(0.90, 0.80, 0.85)}
    others = [
        {"detection": {"test_unseen": _block(0.60, 0.55, 0.66), "test_seen": _block(0.88, 0.79, 0.80)}},
        {"detection": {"test_unseen": _block(0.80, 0.70, 0.50), "test_seen": _block(0.86, None, 0.81)}},
    ]
    add_task_splits(detection, others, ["r0.json", "r1.json", "r2.json"])
    unseen = detection["test_unseen"]["splits"]
    assert unseen["task_splits"] == [0, 1, 2] and unseen["results"] == ["r0.json", "r1.json", "r2.json"]
    assert unseen["rollout_auc"]["values"] == [0.70, 0.60, 0.80]
    mean, sd = _plain_mean_sd([0.70, 0.60, 0.80])
    assert math.isclose(unseen["rollout_auc"]["mean"], mean) and math.isclose(unseen["rollout_auc"]["sd"], sd)
    assert unseen["balanced_accuracy"]["values"] == [0.61, 0.55, 0.70]  # the deployed monitor's
    # a split without a deployed block: null, the summary over the two others
    seen = detection["test_seen"]["splits"]["balanced_accuracy"]
    assert seen["values"] == [0.80, 0.79, None] and seen["n"] == 2
    assert math.isclose(seen["mean"], 0.795)
    logistic = detection["test_unseen"]["baselines"]["logistic"]["splits"]["rollout_auc"]
    assert logistic["values"] == [0.65, 0.66, 0.50]


def test_a_set_missing_from_a_split_is_null_and_an_sd_needs_two():
    detection = {"test_unseen": _block(0.7)}
    add_task_splits(detection, [{"detection": {"test": _block(0.9)}}], ["a", "b"])
    summary = detection["test_unseen"]["splits"]["rollout_auc"]
    assert summary["values"] == [0.7, None] and summary["mean"] == 0.7 and summary["sd"] is None
    assert "undefined" in summary
    assert detection["test_unseen"]["splits"]["balanced_accuracy"]["mean"] is None


def test_the_detection_table_shows_mean_and_sd_over_splits(tmp_path):
    import json

    detection = {"test_unseen": _block(0.70, 0.61, 0.65)}
    add_task_splits(
        detection, [{"detection": {"test_unseen": _block(0.60)}}, {"detection": {"test_unseen": _block(0.80)}}], ["a", "b", "c"]
    )
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"detection": detection}))
    table = detection_table({"src": str(path)}, {})
    auc_column = table.value_columns.index("earliest-stop AUC (SAFE)")
    model, logistic = table.rows[0], table.rows[1]
    assert model.cells[auc_column].format() == f"0.700 ± {_plain_mean_sd([0.7, 0.6, 0.8])[1]:.3f}"
    assert logistic.cells[auc_column].format().startswith("0.650")  # one split defines it


def test_scorer_summaries_take_the_model_from_the_block_and_each_baseline_from_its_entry():
    def deployed(tpr, fpr):
        return {"rollout_auc": tpr - fpr, "deployed": {"tpr": tpr, "fpr": fpr}}

    blocks = [
        {**deployed(0.9, 0.1), "n_rollouts": {"success": 10, "failure": 20}, "baselines": {"knn": deployed(0.6, 0.2)}},
        {**deployed(0.7, 0.3), "n_rollouts": {"success": 12, "failure": 18}, "baselines": {}},
        None,
    ]
    metrics = {"rollout_auc": ("rollout_auc",), "tpr": ("deployed", "tpr")}
    summary = scorer_summaries(blocks, ["model", "knn"], metrics)
    model, knn = summary["scorers"]["model"], summary["scorers"]["knn"]
    assert model["tpr"]["values"] == [0.9, 0.7, None]
    mean, sd = _plain_mean_sd([0.9 - 0.1, 0.7 - 0.3])
    assert math.isclose(model["rollout_auc"]["mean"], mean) and math.isclose(model["rollout_auc"]["sd"], sd)
    # a split without the baseline, or without the set, gives null: no SD from one value
    assert knn["tpr"]["values"] == [0.6, None, None] and knn["tpr"]["sd"] is None and "undefined" in knn["tpr"]
    assert summary["n_rollouts"] == [{"success": 10, "failure": 20}, {"success": 12, "failure": 18}, None]


def test_a_false_alarm_rate_is_consistent_with_alpha_while_its_exact_interval_reaches_alpha():
    above_point = fpr_within_alpha({"fpr": 0.2, "ci95": {"fpr": [0.05, 0.45]}}, 0.1)
    assert (above_point["point_within"], above_point["consistent"]) == (False, True)
    assert fpr_within_alpha({"fpr": 0.3, "ci95": {"fpr": [0.12, 0.55]}}, 0.1)["consistent"] is False
    assert fpr_within_alpha({"fpr": 0.2, "ci95": {"fpr": [0.1, 0.45]}}, 0.1)["consistent"] is True  # alpha on the edge
    assert fpr_within_alpha({"fpr": 0.0, "ci95": {"fpr": [0.0, 0.21]}}, 0.1)["point_within"] is True
    undefined = fpr_within_alpha({"fpr": None, "ci95": {"fpr": None}}, 0.1)
    assert undefined["consistent"] is None and undefined["point_within"] is None


def test_a_generated_source_opens_on_the_task_split_and_unseen_share_asked(tmp_path):
    from generator_family import prepare_member, scaled_member

    from vlarisk.data.splits import split_rollouts, unseen_tasks
    from vlarisk.train.sources import open_source

    dataset, _ = prepare_member(scaled_member("embedded", 0.15), tmp_path)
    first, second = (open_source("m", str(dataset), unseen_task_fraction=0.3, task_split=k) for k in (0, 1))
    rollouts = first.dataset.metadata["rollouts"]
    held_out = [unseen_tasks(source.split, rollouts) for source in (first, second)]
    assert [len(tasks) for tasks in held_out] == [3, 3]  # 30% of 10 tasks
    assert held_out[0] != held_out[1]
    reference = split_rollouts(rollouts, 0.2, 0.1, 0, "auto", str(dataset), 0.15, 0.3, (), 1)
    assert second.split == reference
