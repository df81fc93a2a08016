"""Draw one paper figure as PNG: ROC/PR curves, training curves, failure detection or an ablation bar chart."""

from vlarisk.core.cli import ArgumentParser, log


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--output", required=True, help="PNG to write")
    figures = parser.add_subparsers(dest="figure", required=True)
    curves = figures.add_parser("roc-pr", help="ROC and precision-recall curves per dimension")
    curves.add_argument("--predictions", required=True, help="test predictions (.npz)")
    curves.add_argument("--title", required=True)
    training = figures.add_parser("training", help="loss and validation AUC per epoch")
    training.add_argument("--results", required=True, help="results.json with the training history")
    training.add_argument("--title", required=True)
    detection = figures.add_parser("detection", help="rollout ROC, lead times, risk over time and reliability")
    detection.add_argument("--predictions", required=True, help="test predictions (.npz)")
    detection.add_argument("--results", required=True, help="results.json with the detection blocks")
    detection.add_argument("--title", required=True)
    ablation = figures.add_parser("ablation", help="one ablation factor: mean ± std over seeds")
    ablation.add_argument("--factor", required=True)
    ablation.add_argument(
        "--run", nargs=3, action="append", required=True, metavar=("SOURCE", "VALUE", "RESULTS"), help="one seed of one cell"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # matplotlib loads after parsing: --help and usage errors come at once
    from vlarisk.report.figures import ablation_figure, detection_figure, roc_pr_figure, save_figure, training_figure

    if args.figure == "roc-pr":
        figure = roc_pr_figure(args.predictions, args.title)
    elif args.figure == "detection":
        figure = detection_figure(args.predictions, args.results, args.title)
    elif args.figure == "training":
        figure = training_figure(args.results, args.title)
    else:
        figure = ablation_figure(args.factor, [tuple(r) for r in args.run])
    save_figure(figure, args.output)
    log(f"wrote {args.output}")
