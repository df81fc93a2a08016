"""Compare runs: one row per results.json, with its experiment, settings and headline test metrics.

Each argument is a results.json or a folder searched for them (results/ holds the plain run's and,
under results/experiments/<name>/, each experiment's). Writes CSV and/or a Markdown table; prints
the Markdown table when neither is asked for.

    vlarisk-compare results --sort rollout_auc
    vlarisk-compare results --history          # every earlier version of each run too

Each row's run_id is a hash of its results.json; the plain run's rows are named (plain).
"""

from pathlib import Path

from vlarisk.core.cli import ArgumentParser, log, run
from vlarisk.core.errors import InputError
from vlarisk.core.io_utils import atomic_path
from vlarisk.workflow.runs import COLUMNS, collect_rows, csv_text, find_history, find_results, markdown_text, sort_rows


def results_files(paths: list[str]) -> list[str]:
    """Each results.json given, and those found under each folder given; a missing path is an error."""
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise InputError(f"{missing[0]}: no such file or folder (give results.json files or folders holding them, e.g. results)")
    return [found for path in paths for found in (find_results(path) if Path(path).is_dir() else [path])]


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="+", help="results.json files, or folders searched for them")
    parser.add_argument("--root", default="results", help="the results folder that experiment names are read under")
    parser.add_argument(
        "--history", action="store_true", help="add the earlier versions of each run kept under <root>/history (by `all`'s summary step)"
    )
    parser.add_argument("--csv", help="write the table as CSV here")
    parser.add_argument("--markdown", help="write the table as Markdown here")
    parser.add_argument(
        "--sort", choices=COLUMNS, metavar="COLUMN", help=f"order rows by this column (metrics best first): {', '.join(COLUMNS)}"
    )
    args = parser.parse_args(argv)
    paths = results_files(args.paths) + (find_history(args.root) if args.history else [])
    rows = collect_rows(paths, args.root, log)
    if args.sort:
        rows = sort_rows(rows, args.sort)
    tables = {args.csv: csv_text(rows), args.markdown: markdown_text(rows)}
    for output, text in tables.items():
        if output:
            with atomic_path(output) as tmp:
                tmp.write_text(text, encoding="utf-8")
    if not (args.csv or args.markdown):
        print(markdown_text(rows), end="")
    log(f"{len(rows)} runs compared")


def cli() -> None:
    """Console entry point ``vlarisk-compare``: :func:`main` with plain error reporting (:func:`vlarisk.core.cli.run`)."""
    run(main)
