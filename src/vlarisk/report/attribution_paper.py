"""The paper's attribution table and figure: per collected source, how often each scorer's riskiest
dimension before ``t*`` is the injected perception-bias axis (``results.json["attribution"]``)."""

from __future__ import annotations

from matplotlib.figure import Figure

from vlarisk.data.documents import BASELINES, read_results
from vlarisk.report.tables import Row, Summary, Table

SCORERS = {"model": "model", "logistic": "logistic regression", "abs_action": "|action|", "blame_labels": "blame labels"}
COLUMNS = ("accuracy", "ci95_low", "ci95_high", "n_rollouts", "chance", "acc_x", "acc_y", "acc_z")


def attribution_blocks(results: dict) -> dict[str, dict]:
    """Each scorer's accuracy block from one results.json (the model's is the top level)."""
    attribution = results["attribution"]
    return {"model": attribution, **{name: attribution[BASELINES][name] for name in SCORERS if name in attribution[BASELINES]}}


def _cells(block: dict, chance: float) -> tuple[Summary, ...]:
    low, high = block.get("ci95") or (None, None)
    by_axis = block.get("by_axis", {})
    axes = tuple(Summary((by_axis.get(axis, {}).get("accuracy"),)) for axis in ("x", "y", "z"))
    return (Summary((block["accuracy"],)), Summary((low,)), Summary((high,)), Summary((float(block["n"]),)), Summary((chance,)), *axes)


def attribution_table(single: dict[str, str]) -> Table:
    """One row per collected source and scorer (sources without an attribution block are skipped)."""
    table = Table(
        "attribution",
        "Attribution on test failures with a single-axis perception bias: the riskiest dimension before t* is the biased axis (exact 95% interval)",
        ("source", "scorer"),
        COLUMNS,
    )
    for source, path in single.items():
        results = read_results(path)
        if "attribution" not in results:
            continue
        chance = results["attribution"]["chance"]
        for name, block in attribution_blocks(results).items():
            table.rows.append(Row((source, SCORERS[name]), _cells(block, chance), (path,)))
    return table


def attribution_figure(single: dict[str, str]) -> Figure:
    """Bars of accuracy with exact 95% intervals per source and scorer, chance as a dashed line."""
    figure = Figure(figsize=(7, 3.5), layout="constrained")
    axes = figure.subplots()
    position, ticks, labels = 0.0, [], []
    for source, path in single.items():
        results = read_results(path)
        if "attribution" not in results:
            continue
        for offset, (name, block) in enumerate(attribution_blocks(results).items()):
            accuracy = block["accuracy"]
            if accuracy is not None:
                low, high = block["ci95"]
                axes.bar(position + offset, accuracy, color=f"C{offset}", yerr=[[accuracy - low], [high - accuracy]], capsize=3)
            ticks.append(position + offset)
            labels.append(f"{source}\n{SCORERS[name]} (n={block['n']})")
        axes.axhline(results["attribution"]["chance"], color="grey", linestyle="--", linewidth=1)
        position += len(SCORERS) + 1
    axes.set_xticks(ticks, labels, rotation=60, ha="right", fontsize=7)
    axes.set_ylim(0, 1)
    axes.set_ylabel("riskiest dimension = biased axis")
    axes.set_title("Attribution on perception-bias failures (dashed: chance)")
    return figure
