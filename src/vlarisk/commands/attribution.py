"""The paper's attribution table (md/tex/csv/html/json) and figure (PNG) from collected sources' results.json."""

from vlarisk.core.cli import ArgumentParser, log


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument(
        "--single", nargs=2, action="append", required=True, metavar=("SOURCE", "RESULTS"), help="a collected source's results.json"
    )
    parser.add_argument("--table-prefix", required=True, help="table path without extension")
    parser.add_argument("--figure", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    # matplotlib and the table code load after parsing: --help and usage errors come at once
    from vlarisk.report.attribution_paper import attribution_figure, attribution_table
    from vlarisk.report.figures import save_figure
    from vlarisk.report.tables import write_table

    single = dict(args.single)
    paths = write_table(attribution_table(single), args.table_prefix)
    save_figure(attribution_figure(single), args.figure)
    log(f"wrote {', '.join(map(str, paths))} and {args.figure}")
