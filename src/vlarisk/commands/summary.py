"""Write the run's verdict, one row per model (per source of a multi-model), as Markdown, and print it.

Each row: per-step mean test AUC beside the logistic baseline's, whether it beats it, the rollout
AUC with its 95% interval (unseen tasks, else seen ones), the alarm's FPR / TPR at alpha, and
whether predictions collapsed; a n/a cell has a footnote with the reason (vlarisk.report.summary).

    python workflow_scripts/write_summary.py results/models/*/results.json --output results/summary.md
"""

from vlarisk.core.cli import ArgumentParser
from vlarisk.core.io_utils import atomic_path
from vlarisk.data.documents import read_results
from vlarisk.report.summary import summary_html, summary_markdown, summary_rows
from vlarisk.score.verdict import summary_of
from vlarisk.workflow.runs import PLAIN_RUN, archive_run, locate


def run_name(path: str, root: str) -> str:
    """``model synthetic_a``, ``multi all_sources``, prefixed by the experiment's name for an experiment's run."""
    where = locate(path, root)
    name = where["name"] if where["kind"] in ("", where["name"]) else f"{where['kind']} {where['name']}"
    return name if where["experiment"] == PLAIN_RUN else f"{where['experiment']}: {name}"


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("results", nargs="+", help="results.json files")
    parser.add_argument("--root", default="results", help="the results folder that run names are read under")
    parser.add_argument("--output", help="write the Markdown here (it is printed either way)")
    parser.add_argument("--html", help="write it as an HTML page here too (the copy shown in snakemake --report)")
    parser.add_argument(
        "--archive", action="store_true", help="keep a copy of each results.json under <root>/history, so that a re-run overwrites none"
    )
    args = parser.parse_args(argv)
    if args.archive:
        for path in args.results:
            archive_run(path, args.root)
    rows = [row for path in args.results for row in summary_rows(run_name(path, args.root), summary_of(read_results(path)))]
    text = summary_markdown(rows)
    for output, content in ((args.output, text), (args.html, summary_html(text) if args.html else "")):
        if output:
            with atomic_path(output) as tmp:
                tmp.write_text(content, encoding="utf-8")
    print(text, end="")
