"""Write one paper table (Markdown, LaTeX, CSV, HTML and a JSON sidecar) from results files."""

from vlarisk.core.cli import ArgumentParser, log


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


def build_table(args):
    """The table the parsed subcommand asks for, from its builder (:data:`vlarisk.report.tables.BUILDERS`)."""
    from vlarisk.report.tables import BUILDERS

    builder = BUILDERS[args.table]
    if args.table == "ablation":
        return builder(args.factor, [tuple(r) for r in args.run])
    if args.table == "failure-correlation":
        return builder(dict(args.predictions), args.bins)
    metric = (args.metric,) if args.table == "per-dimension" else ()
    return builder(*metric, dict(args.single), dict(args.multi))


def main(argv=None):
    args = parse_args(argv)
    # numpy and the table code load after parsing: --help and usage errors come at once
    from vlarisk.report.tables import write_table

    table = build_table(args)
    write_table(table, args.output_prefix)
    log(f"{args.output_prefix}.*: {table.title}, {len(table.rows)} rows")
