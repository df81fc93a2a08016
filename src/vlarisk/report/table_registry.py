"""The paper's main tables, each named once: the make_tables.py subcommand that writes it, its fixed
flags, the builder in :mod:`vlarisk.report.tables` and which files it reads.

The standard library only: the workflow plans from it on every parse without loading numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

RESULTS_INPUTS = "results"  # --single/--multi results.json files
PREDICTIONS_INPUTS = "predictions"  # --predictions test predictions (.npz)


@dataclass(frozen=True)
class PaperTable:
    """A main table: subcommand, fixed flags, the name of its builder in ``vlarisk.report.tables``,
    and which files it reads."""

    subcommand: str
    builder: str
    flags: tuple[str, ...] = ()
    inputs: str = RESULTS_INPUTS


# Table name (its files' stem under results/paper/tables) -> how it is made; the workflow plans from it.
PAPER_TABLES = {
    "auc_per_dimension": PaperTable("per-dimension", "per_dimension_table", ("--metric", "auc")),
    "ap_per_dimension": PaperTable("per-dimension", "per_dimension_table", ("--metric", "ap")),
    "single_vs_multi": PaperTable("single-vs-multi", "single_vs_multi_table"),
    "failure_correlation": PaperTable("failure-correlation", "failure_correlation_table", inputs=PREDICTIONS_INPUTS),
    "detection": PaperTable("detection", "detection_table"),
    "detection_per_dimension": PaperTable("detection-per-dimension", "detection_per_dimension_table"),
}
