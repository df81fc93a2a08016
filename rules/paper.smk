# The paper: test predictions, tables, figures and the `paper` target. Every rule here is cheap
# and runs where Snakemake runs (never submitted to a cluster). Outputs under results/paper/ are
# marked for `snakemake paper --report results/report.html`.
import shlex

PAPER_TABLES = ("auc_per_dimension", "ap_per_dimension", "single_vs_multi", "failure_correlation")
PAPER_TABLE_FORMATS = ("md", "tex", "csv", "json", "html")


localrules:
    predict_test_split,
    paper_table,
    ablation_table,
    roc_pr_figure,
    training_figure,
    ablation_figure,


def paper_single_results():
    return {source: f"results/models/{source}/results.json" for source in SOURCES}


def paper_multi_results():
    """Group -> results.json of each configured multi-model group (none without `multi_model`)."""
    groups = config.get("multi_model", {}).get("groups", {})
    return {group: f"results/multi/{group}/results.json" for group in groups}


def paper_test_predictions():
    return {source: f"results/models/{source}/test_predictions.npz" for source in SOURCES}


def paper_cli_pairs(option, mapping):
    """`--option KEY PATH` for each entry, shell-quoted."""
    return " ".join(f"{option} {shlex.quote(k)} {shlex.quote(v)}" for k, v in mapping.items())


def paper_cli_runs(runs):
    return " ".join("--run " + " ".join(map(shlex.quote, run)) for run in runs)


def paper_table_input(wildcards):
    if wildcards.table == "failure_correlation":
        return {"predictions": list(paper_test_predictions().values())}
    return {"single": list(paper_single_results().values()), "multi": list(paper_multi_results().values())}


def paper_table_command(wildcards):
    """make_tables.py subcommand and inputs of one main table."""
    if wildcards.table == "failure_correlation":
        return "failure-correlation " + paper_cli_pairs("--predictions", paper_test_predictions())
    models = paper_cli_pairs("--single", paper_single_results()) + " " + paper_cli_pairs("--multi", paper_multi_results())
    if wildcards.table == "single_vs_multi":
        return "single-vs-multi " + models
    return f"per-dimension --metric {wildcards.table.split('_')[0]} {models}"


def paper_outputs():
    """Every table and figure of the paper."""
    tables = [f"results/paper/tables/{name}" for name in PAPER_TABLES] + [
        f"results/paper/tables/ablation_{factor}" for factor in ablation_factors()
    ]
    figures = (
        expand("results/paper/figures/roc_pr/{source}.png", source=SOURCES)
        + expand("results/paper/figures/training/{source}.png", source=SOURCES)
        + expand("results/paper/figures/ablation/{factor}.png", factor=ablation_factors())
    )
    return [f"{table}.{ext}" for table in tables for ext in PAPER_TABLE_FORMATS] + figures


rule predict_test_split:
    input:
        checkpoint="results/models/{source}/best_model.pt",
        data="results/datasets/{source}/dataset.vlarisk",
        split="results/splits/{source}.json",
        code=code_for("predict"),
    output:
        "results/models/{source}/test_predictions.npz",
    params:
        positive_fraction=config["evaluation"]["positive_fraction_of_max"],
    log:
        "results/logs/predict_test_split/{source}.log",
    shell:
        "python workflow_scripts/predict_test_split.py --checkpoint {input.checkpoint}"
        " --data {input.data} --split {input.split} --output {output}"
        " --positive-fraction {params.positive_fraction} > {log} 2>&1"


rule paper_table:
    input:
        unpack(paper_table_input),
        code=code_for("tables"),
    output:
        multiext("results/paper/tables/{table}", ".md", ".tex", ".csv", ".json"),
        html=report(
            "results/paper/tables/{table}.html",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    params:
        command=paper_table_command,
        prefix=subpath(output.html, strip_suffix=".html"),
    log:
        "results/logs/paper_table/{table}.log",
    wildcard_constraints:
        table="|".join(PAPER_TABLES),
    shell:
        "python workflow_scripts/make_tables.py --output-prefix {params.prefix}"
        " {params.command} > {log} 2>&1"


rule ablation_table:
    input:
        runs=lambda wildcards: [run[2] for run in ablation_runs(wildcards.factor)],
        code=code_for("tables"),
    output:
        multiext("results/paper/tables/ablation_{factor}", ".md", ".tex", ".csv", ".json"),
        html=report(
            "results/paper/tables/ablation_{factor}.html",
            caption="../report/ablation_table.rst",
            category="Ablations",
            subcategory="{factor}",
            labels={"factor": "{factor}", "kind": "table"},
        ),
    params:
        runs=lambda wildcards: paper_cli_runs(ablation_runs(wildcards.factor)),
        prefix=subpath(output.html, strip_suffix=".html"),
    log:
        "results/logs/ablation_table/{factor}.log",
    wildcard_constraints:
        factor="|".join(ABLATIONS["factors"]) or "none",
    shell:
        "python workflow_scripts/make_tables.py --output-prefix {params.prefix}"
        " ablation --factor {wildcards.factor} {params.runs} > {log} 2>&1"


rule roc_pr_figure:
    input:
        predictions="results/models/{source}/test_predictions.npz",
        code=code_for("figures"),
    output:
        report(
            "results/paper/figures/roc_pr/{source}.png",
            caption="../report/roc_pr.rst",
            category="ROC and PR curves",
            labels={"source": "{source}"},
        ),
    log:
        "results/logs/roc_pr_figure/{source}.log",
    shell:
        "python workflow_scripts/make_figures.py --output {output} roc-pr"
        " --predictions {input.predictions} --title '{wildcards.source}: test split'"
        " > {log} 2>&1"


rule training_figure:
    input:
        results="results/models/{source}/results.json",
        code=code_for("figures"),
    output:
        report(
            "results/paper/figures/training/{source}.png",
            caption="../report/training.rst",
            category="Training curves",
            labels={"source": "{source}"},
        ),
    log:
        "results/logs/training_figure/{source}.log",
    shell:
        "python workflow_scripts/make_figures.py --output {output} training"
        " --results {input.results} --title '{wildcards.source}: training'"
        " > {log} 2>&1"


rule ablation_figure:
    input:
        runs=lambda wildcards: [run[2] for run in ablation_runs(wildcards.factor)],
        code=code_for("figures"),
    output:
        report(
            "results/paper/figures/ablation/{factor}.png",
            caption="../report/ablation_figure.rst",
            category="Ablations",
            subcategory="{factor}",
            labels={"factor": "{factor}", "kind": "bar chart"},
        ),
    params:
        runs=lambda wildcards: paper_cli_runs(ablation_runs(wildcards.factor)),
    log:
        "results/logs/ablation_figure/{factor}.log",
    wildcard_constraints:
        factor="|".join(ABLATIONS["factors"]) or "none",
    shell:
        "python workflow_scripts/make_figures.py --output {output}"
        " ablation --factor {wildcards.factor} {params.runs} > {log} 2>&1"


rule paper:
    input:
        paper_single_results().values(),
        paper_multi_results().values(),
        ablation_results(),
        paper_outputs(),
