#!/usr/bin/env python
"""Write one paper table (Markdown, LaTeX, CSV, HTML and a JSON sidecar) from results files."""

from vlarisk.core.cli import ArgumentParser, log, run
from vlarisk.report.tables import (
    ablation_table,
    detection_per_dimension_table,
    detection_table,
    failure_correlation_table,
    per_dimension_table,
    single_vs_multi_table,
    write_table,
)


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--output-prefix", required=True, help="path without extension; one file per format is written")
    tables = parser.add_subparsers(dest="table", required=True)
    for name, help_text in (
        ("per-dimension", "per-dimension AUC-ROC or AP of every model"),
        ("single-vs-multi", "single-source vs multi-source models"),
        ("detection", "rollout-level failure detection per test set, beside the baselines"),
        ("detection-per-dimension", "rollout AUC of each dimension's risk and attribution of alarms"),
    ):
        table = tables.add_parser(name, help=help_text)
        table.add_argument(
            "--single", nargs=2, action="append", default=[], metavar=("SOURCE", "RESULTS"), help="a single-source model's results.json"
        )
        table.add_argument(
            "--multi", nargs=2, action="append", default=[], metavar=("GROUP", "RESULTS"), help="a multi-model group's results.json"
        )
        if name == "per-dimension":
            table.add_argument("--metric", choices=("auc", "ap"), required=True)
    ablation = tables.add_parser("ablation", help="one ablation factor over its values and seeds")
    ablation.add_argument("--factor", required=True)
    ablation.add_argument(
        "--run", nargs=3, action="append", required=True, metavar=("SOURCE", "VALUE", "RESULTS"), help="one seed of one cell"
    )
    correlation = tables.add_parser("failure-correlation", help="predicted risk against observed failures")
    correlation.add_argument(
        "--predictions", nargs=2, action="append", required=True, metavar=("SOURCE", "NPZ"), help="a model's test predictions"
    )
    correlation.add_argument("--bins", type=int, default=5, help="equal-count bins of predicted risk")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.table == "per-dimension":
        table = per_dimension_table(args.metric, dict(args.single), dict(args.multi))
    elif args.table == "single-vs-multi":
        table = single_vs_multi_table(dict(args.single), dict(args.multi))
    elif args.table == "detection":
        table = detection_table(dict(args.single), dict(args.multi))
    elif args.table == "detection-per-dimension":
        table = detection_per_dimension_table(dict(args.single), dict(args.multi))
    elif args.table == "ablation":
        table = ablation_table(args.factor, [tuple(r) for r in args.run])
    else:
        table = failure_correlation_table(dict(args.predictions), args.bins)
    write_table(table, args.output_prefix)
    log(f"{args.output_prefix}.*: {table.title}, {len(table.rows)} rows")


if __name__ == "__main__":
    run(main)
