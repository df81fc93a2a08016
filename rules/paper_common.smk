# Helpers of the ablation grid (rules/ablations.smk) and the paper (rules/paper.smk).
#
# An ablation cell is `default` or `<factor>-<value slug>` (loss_type-bce, hidden_dims-linear,
# normalize-off, labels-heuristic, ...); each cell x seed is its own target
#   results/ablations/{source}/{cell}/seed-{seed}/results.json
# whose params hold only that cell's settings, so adding a value or a seed runs only the new
# cells. A value equal to the default setting is the `default` cell, trained once for all factors.
import shlex

ABLATIONS = config.get("ablations", {"factors": {}, "seeds": []})
ABLATION_SOURCES = ABLATIONS.get("sources", SOURCES)
TRAINING_FACTORS = ("loss_type", "hidden_dims", "dropout", "normalize")
ABLATION_CELL_PATTERN = r"default|[a-z_]+-[A-Za-z0-9_.]+"
ABLATION_FACTOR_PATTERN = "|".join(ABLATIONS["factors"]) or "none"

_unknown = sorted(set(ABLATION_SOURCES) - set(SOURCES))
if _unknown:
    raise ValueError(f"ablations.sources names unconfigured sources: {_unknown}")


def has_provided_labels(source):
    """Whether every step of the source carries per_dim_risk (the labels factor needs it)."""
    if is_simulated(source):
        return source_config(source)["simulate"].get("with_labels", True)
    return source_config(source).get("require_labels", False)


def ablation_value_slug(factor, value):
    """Readable path component of a factor's value: 512x256, linear, on/off, bce, 0.1."""
    if factor == "hidden_dims":
        return "x".join(str(width) for width in value) or "linear"
    if factor == "normalize":
        return "on" if value else "off"
    return str(value)


def ablation_baseline(source):
    """Training settings every cell of the source starts from."""
    return training_settings(source, **ABLATIONS.get("training", {}))


def ablation_baseline_value(source, factor):
    """The value a factor takes in the default cell."""
    return "provided" if factor == "labels" else ablation_baseline(source)[factor]


def ablation_factor_cells(source, factor):
    """(value, cell) pairs of a factor in config order, the default value included.

    Empty for the labels factor on a source whose steps do not all carry provided labels.
    """
    if factor == "labels" and not has_provided_labels(source):
        return []
    default = ablation_baseline_value(source, factor)
    values = ABLATIONS["factors"][factor]
    return [
        (
            value,
            (
                "default"
                if value == default
                else f"{factor}-{ablation_value_slug(factor, value)}"
            ),
        )
        for value in (values if default in values else [default, *values])
    ]


def ablation_cells(source):
    """Cell name -> (factor, value) of the source's grid; `default` -> (None, None)."""
    cells = {"default": (None, None)}
    for factor in ABLATIONS["factors"]:
        cells.update(
            (cell, (factor, value))
            for value, cell in ablation_factor_cells(source, factor)
            if cell != "default"
        )
    return cells


def ablation_result(source, cell, seed):
    return f"results/ablations/{source}/{cell}/seed-{seed}/results.json"


def ablation_results():
    """Every results.json of the grid, each once (none without ablated factors)."""
    paths = [run[2] for factor in ablation_factors() for run in ablation_runs(factor)]
    return list(dict.fromkeys(paths))


def ablation_runs(factor):
    """(source, value label, results.json) for every seed of every cell of one factor."""
    return [
        (
            source,
            f"{ablation_value_slug(factor, value)}{' (default)' if cell == 'default' else ''}",
            ablation_result(source, cell, seed),
        )
        for source in ABLATION_SOURCES
        for value, cell in ablation_factor_cells(source, factor)
        for seed in ABLATIONS["seeds"]
    ]


def ablation_run_files(wildcards):
    """results.json files of one factor's cells (the input of its table and chart)."""
    return [path for _, _, path in ablation_runs(wildcards.factor)]


def ablation_run_args(wildcards):
    """The same runs as `--run SOURCE VALUE PATH` arguments of make_tables/make_figures.py."""
    return paper_cli_runs(ablation_runs(wildcards.factor))


def ablation_factors():
    """Factors with at least one cell (labels is dropped when no ablated source has labels)."""
    return [factor for factor in ABLATIONS["factors"] if ablation_runs(factor)]


def ablation_settings(wildcards):
    """The cell's training settings: baseline, the varied factor, the seed."""
    factor, value = ablation_cells(wildcards.source)[wildcards.cell]
    varied = {factor: value} if factor in TRAINING_FACTORS else {}
    overrides = {**ABLATIONS.get("training", {}), **varied, "seed": int(wildcards.seed)}
    return training_settings(wildcards.source, **overrides)


def ablation_training_data(wildcards):
    """The source's dataset, or for labels-heuristic its heuristic-labelled twin (checked)."""
    cell = ablation_cells(wildcards.source)[wildcards.cell]
    if cell != ("labels", "heuristic"):
        return {"data": f"results/datasets/{wildcards.source}/dataset.vlarisk"}
    return {
        "data": f"results/datasets/{wildcards.source}/heuristic.vlarisk",
        "same_rollouts": f"results/datasets/{wildcards.source}/heuristic.same_rollouts.txt",
    }


PAPER_TABLES = (
    "auc_per_dimension",
    "ap_per_dimension",
    "single_vs_multi",
    "failure_correlation",
)
PAPER_TABLE_FORMATS = ("md", "tex", "csv", "json", "html")


def paper_single_results():
    return {source: f"results/models/{source}/results.json" for source in SOURCES}


def paper_multi_results():
    """Group -> results.json of each configured multi-model group (none without `multi_model`)."""
    groups = config.get("multi_model", {}).get("groups", {})
    return {group: f"results/multi/{group}/results.json" for group in groups}


def paper_test_predictions():
    return {
        source: f"results/models/{source}/test_predictions.npz" for source in SOURCES
    }


def paper_cli_pairs(option, mapping):
    """`--option KEY PATH` for each entry, shell-quoted."""
    return " ".join(
        f"{option} {shlex.quote(k)} {shlex.quote(v)}" for k, v in mapping.items()
    )


def paper_cli_runs(runs):
    """`--run SOURCE VALUE PATH` for each ablation run, shell-quoted."""
    return " ".join(f"--run {shlex.join(run)}" for run in runs)


def paper_table_input(wildcards):
    if wildcards.table == "failure_correlation":
        return {"predictions": list(paper_test_predictions().values())}
    return {
        "single": list(paper_single_results().values()),
        "multi": list(paper_multi_results().values()),
    }


def paper_table_command(wildcards):
    """make_tables.py subcommand and inputs of one main table."""
    if wildcards.table == "failure_correlation":
        predictions = paper_cli_pairs("--predictions", paper_test_predictions())
        return f"failure-correlation {predictions}"
    single = paper_cli_pairs("--single", paper_single_results())
    multi = paper_cli_pairs("--multi", paper_multi_results())
    if wildcards.table == "single_vs_multi":
        return f"single-vs-multi {single} {multi}"
    return f"per-dimension --metric {wildcards.table.split('_')[0]} {single} {multi}"


def paper_tables():
    """Every table file: the main tables and one per ablated factor, in each format."""
    names = [*PAPER_TABLES, *(f"ablation_{factor}" for factor in ablation_factors())]
    return expand(
        "results/paper/tables/{name}.{ext}", name=names, ext=PAPER_TABLE_FORMATS
    )


def paper_figures():
    """Every figure: curves of each single model, a bar chart per ablated factor."""
    return expand(
        "results/paper/figures/{kind}/{source}.png",
        kind=["roc_pr", "training"],
        source=SOURCES,
    ) + expand("results/paper/figures/ablation/{factor}.png", factor=ablation_factors())
