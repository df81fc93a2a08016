# Ablations: one factor of the training recipe varied at a time around the default, per seed.
#
# A cell is `default` or `<factor>-<value slug>`; each cell x seed is its own target
#   results/ablations/{source}/{cell}/seed-{seed}/results.json
# with only that cell's settings in its params, so adding a value or a seed runs only the new
# cells. A value equal to the default setting is the `default` cell (trained once, not per factor).

ABLATIONS = config.get("ablations", {"factors": {}, "seeds": []})
ABLATION_SOURCES = ABLATIONS.get("sources", SOURCES)
TRAINING_FACTORS = ("loss_type", "hidden_dims", "dropout", "normalize")
ABLATION_CELL_PATTERN = r"default|[a-z_]+-[A-Za-z0-9_.]+"

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
        (value, "default" if value == default else f"{factor}-{ablation_value_slug(factor, value)}")
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
    """Every results.json of the grid (empty without an `ablations` block)."""
    return [
        ablation_result(source, cell, seed)
        for source in ABLATION_SOURCES
        for cell in ablation_cells(source)
        for seed in ABLATIONS["seeds"]
    ]


def ablation_runs(factor):
    """(source, value label, results.json) for every seed of every cell of one factor."""
    return [
        (
            source,
            ablation_value_slug(factor, value) + (" (default)" if cell == "default" else ""),
            ablation_result(source, cell, seed),
        )
        for source in ABLATION_SOURCES
        for value, cell in ablation_factor_cells(source, factor)
        for seed in ABLATIONS["seeds"]
    ]


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
    """Heuristic-labelled dataset for the labels-heuristic cell, the source's own otherwise."""
    cell = ablation_cells(wildcards.source)[wildcards.cell]
    variant = "heuristic" if cell == ("labels", "heuristic") else "dataset"
    return f"results/datasets/{wildcards.source}/{variant}.vlarisk"


use rule train_model as train_ablation with:
    input:
        data=ablation_training_data,
        split="results/splits/{source}.json",
        code=code_for("train"),
    output:
        best="results/ablations/{source}/{cell}/seed-{seed}/best_model.pt",
        latest="results/ablations/{source}/{cell}/seed-{seed}/latest.pt",
    params:
        flags=lambda wildcards: training_flags(ablation_settings(wildcards)),
        output_dir=subpath(output.best, parent=True),
    log:
        "results/logs/train_ablation/{source}/{cell}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/train_ablation/{source}/{cell}/seed-{seed}.tsv"
    wildcard_constraints:
        cell=ABLATION_CELL_PATTERN,
        seed=r"\d+",


# Scored like every single model: on the source's own dataset (provided labels are the truth).
use rule evaluate_model as evaluate_ablation with:
    input:
        unpack(planting_file),
        checkpoint="results/ablations/{source}/{cell}/seed-{seed}/best_model.pt",
        latest="results/ablations/{source}/{cell}/seed-{seed}/latest.pt",
        data="results/datasets/{source}/dataset.vlarisk",
        split="results/splits/{source}.json",
        code=code_for("evaluate"),
    output:
        "results/ablations/{source}/{cell}/seed-{seed}/results.json",
    log:
        "results/logs/evaluate_ablation/{source}/{cell}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_ablation/{source}/{cell}/seed-{seed}.tsv"
    wildcard_constraints:
        cell=ABLATION_CELL_PATTERN,
        seed=r"\d+",
