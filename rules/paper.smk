# The paper: test predictions, tables, figures and the `paper` target (helpers:
# rules/paper_common.smk). Every rule here is cheap and runs where Snakemake runs (never
# submitted to a cluster); outputs under results/paper/ are marked for
# `snakemake paper --report results/report.html`.


localrules:
    predict_test_split,
    paper_table,
    ablation_table,
    roc_pr_figure,
    training_figure,
    ablation_figure,


rule predict_test_split:
    input:
        checkpoint="results/models/{source}/best_model.pt",
        data="results/datasets/{source}/dataset.vlarisk",
        split="results/splits/{source}.json",
        code=code_for("predict_test_split"),
    output:
        "results/models/{source}/test_predictions.npz",
    log:
        "results/logs/predict_test_split/{source}.log",
    conda:
        "../envs/vlarisk.yaml"
    params:
        positive_fraction=config["evaluation"]["positive_fraction_of_max"],
    shell:
        "python workflow_scripts/predict_test_split.py --checkpoint {input.checkpoint}"
        " --data {input.data} --split {input.split} --output {output}"
        " --positive-fraction {params.positive_fraction} --device cpu > {log} 2>&1"


rule paper_table:
    input:
        unpack(paper_table_input),
        code=code_for("make_tables"),
    output:
        multiext("results/paper/tables/{table}", ".md", ".tex", ".csv", ".json"),
        html=report(
            "results/paper/tables/{table}.html",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    log:
        "results/logs/paper_table/{table}.log",
    wildcard_constraints:
        table="|".join(PAPER_TABLES),
    conda:
        "../envs/vlarisk.yaml"
    params:
        command=paper_table_command,
        prefix=subpath(output.html, strip_suffix=".html"),
    shell:
        "python workflow_scripts/make_tables.py --output-prefix {params.prefix}"
        " {params.command} > {log} 2>&1"


rule ablation_table:
    input:
        runs=ablation_run_files,
        code=code_for("make_tables"),
    output:
        multiext(
            "results/paper/tables/ablation_{factor}", ".md", ".tex", ".csv", ".json"
        ),
        html=report(
            "results/paper/tables/ablation_{factor}.html",
            caption="../report/ablation_table.rst",
            category="Ablations",
            subcategory="{factor}",
            labels={"factor": "{factor}", "kind": "table"},
        ),
    log:
        "results/logs/ablation_table/{factor}.log",
    wildcard_constraints:
        factor=ABLATION_FACTOR_PATTERN,
    conda:
        "../envs/vlarisk.yaml"
    params:
        runs=ablation_run_args,
        prefix=subpath(output.html, strip_suffix=".html"),
    shell:
        "python workflow_scripts/make_tables.py --output-prefix {params.prefix}"
        " ablation --factor {wildcards.factor} {params.runs} > {log} 2>&1"


rule roc_pr_figure:
    input:
        predictions="results/models/{source}/test_predictions.npz",
        code=code_for("make_figures"),
    output:
        report(
            "results/paper/figures/roc_pr/{source}.png",
            caption="../report/roc_pr.rst",
            category="ROC and PR curves",
            labels={"source": "{source}"},
        ),
    log:
        "results/logs/roc_pr_figure/{source}.log",
    conda:
        "../envs/vlarisk.yaml"
    shell:
        "python workflow_scripts/make_figures.py --output {output} roc-pr"
        " --predictions {input.predictions} --title '{wildcards.source}: test split'"
        " > {log} 2>&1"


rule training_figure:
    input:
        results="results/models/{source}/results.json",
        code=code_for("make_figures"),
    output:
        report(
            "results/paper/figures/training/{source}.png",
            caption="../report/training.rst",
            category="Training curves",
            labels={"source": "{source}"},
        ),
    log:
        "results/logs/training_figure/{source}.log",
    conda:
        "../envs/vlarisk.yaml"
    shell:
        "python workflow_scripts/make_figures.py --output {output} training"
        " --results {input.results} --title '{wildcards.source}: training'"
        " > {log} 2>&1"


rule ablation_figure:
    input:
        runs=ablation_run_files,
        code=code_for("make_figures"),
    output:
        report(
            "results/paper/figures/ablation/{factor}.png",
            caption="../report/ablation_figure.rst",
            category="Ablations",
            subcategory="{factor}",
            labels={"factor": "{factor}", "kind": "bar chart"},
        ),
    log:
        "results/logs/ablation_figure/{factor}.log",
    wildcard_constraints:
        factor=ABLATION_FACTOR_PATTERN,
    conda:
        "../envs/vlarisk.yaml"
    params:
        runs=ablation_run_args,
    shell:
        "python workflow_scripts/make_figures.py --output {output}"
        " ablation --factor {wildcards.factor} {params.runs} > {log} 2>&1"


rule paper:
    input:
        single=paper_single_results().values(),
        multi=paper_multi_results().values(),
        ablations=ablation_results(),
        tables=paper_tables(),
        figures=paper_figures(),
