# The paper: tables, figures and the `paper` target (which tables and figures,
# from which results: vlarisk.workflow.planning.Plan). Every rule here is cheap and runs where Snakemake
# runs (never submitted to a cluster); outputs under results/paper/ are marked for
# `snakemake paper --report results/report.html`.


localrules:
    paper_table,
    ablation_table,
    roc_pr_figure,
    training_figure,
    detection_figure,
    ablation_figure,


rule paper_table:
    input:
        unpack(lambda wildcards: PLAN.table_input(wildcards.table)),
        code=code_for("make_tables"),
    output:
        multiext(paths.table_prefix("{table}"), ".md", ".tex", ".csv", ".json"),
        html=report(
            paths.table_path("{table}", "html"),
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    log:
        paths.log_path("paper_table", "{table}"),
    wildcard_constraints:
        table="|".join(PAPER_TABLES),
    conda:
        "../envs/vlarisk.yaml"
    params:
        command=lambda wildcards: PLAN.table_command(wildcards.table),
        prefix=subpath(output.html, strip_suffix=".html"),
    shell:
        "python {input.code[0]:q} --output-prefix {params.prefix:q}"
        " {params.command} > {log:q} 2>&1"


rule ablation_table:
    input:
        runs=lambda wildcards: PLAN.ablation_run_files(wildcards.factor),
        code=code_for("make_tables"),
    output:
        multiext(
            paths.table_prefix("ablation_{factor}"), ".md", ".tex", ".csv", ".json"
        ),
        html=report(
            paths.table_path("ablation_{factor}", "html"),
            caption="../report/ablation_table.rst",
            category="Ablations",
            subcategory="{factor}",
            labels={"factor": "{factor}", "kind": "table"},
        ),
    log:
        paths.log_path("ablation_table", "{factor}"),
    wildcard_constraints:
        factor=PLAN.factor_pattern,
    conda:
        "../envs/vlarisk.yaml"
    params:
        runs=lambda wildcards: PLAN.ablation_run_args(wildcards.factor),
        prefix=subpath(output.html, strip_suffix=".html"),
    shell:
        "python {input.code[0]:q} --output-prefix {params.prefix:q}"
        " ablation --factor {wildcards.factor} {params.runs} > {log:q} 2>&1"


rule roc_pr_figure:
    input:
        predictions=rules.evaluate_model.output.predictions,
        code=code_for("make_figures"),
    output:
        report(
            paths.figure_path("roc_pr", "{source}"),
            caption="../report/roc_pr.rst",
            category="ROC and PR curves",
            labels={"source": "{source}"},
        ),
    log:
        paths.log_path("roc_pr_figure", "{source}"),
    conda:
        "../envs/vlarisk.yaml"
    shell:
        "python {input.code[0]:q} --output {output:q} roc-pr"
        " --predictions {input.predictions:q} --title '{wildcards.source}: test split'"
        " > {log:q} 2>&1"


rule training_figure:
    input:
        results=rules.evaluate_model.output.results,
        code=code_for("make_figures"),
    output:
        report(
            paths.figure_path("training", "{source}"),
            caption="../report/training.rst",
            category="Training curves",
            labels={"source": "{source}"},
        ),
    log:
        paths.log_path("training_figure", "{source}"),
    conda:
        "../envs/vlarisk.yaml"
    shell:
        "python {input.code[0]:q} --output {output:q} training"
        " --results {input.results:q} --title '{wildcards.source}: training'"
        " > {log:q} 2>&1"


rule detection_figure:
    input:
        predictions=rules.evaluate_model.output.predictions,
        results=rules.evaluate_model.output.results,
        code=code_for("make_figures"),
    output:
        report(
            paths.figure_path("detection", "{source}"),
            caption="../report/detection.rst",
            category="Failure detection",
            labels={"source": "{source}"},
        ),
    log:
        paths.log_path("detection_figure", "{source}"),
    conda:
        "../envs/vlarisk.yaml"
    shell:
        "python {input.code[0]:q} --output {output:q} detection"
        " --predictions {input.predictions:q} --results {input.results:q}"
        " --title '{wildcards.source}: failure detection' > {log:q} 2>&1"


rule ablation_figure:
    input:
        runs=lambda wildcards: PLAN.ablation_run_files(wildcards.factor),
        code=code_for("make_figures"),
    output:
        report(
            paths.figure_path("ablation", "{factor}"),
            caption="../report/ablation_figure.rst",
            category="Ablations",
            subcategory="{factor}",
            labels={"factor": "{factor}", "kind": "bar chart"},
        ),
    log:
        paths.log_path("ablation_figure", "{factor}"),
    wildcard_constraints:
        factor=PLAN.factor_pattern,
    conda:
        "../envs/vlarisk.yaml"
    params:
        runs=lambda wildcards: PLAN.ablation_run_args(wildcards.factor),
    shell:
        "python {input.code[0]:q} --output {output:q}"
        " ablation --factor {wildcards.factor} {params.runs} > {log:q} 2>&1"


rule paper:
    input:
        **PLAN.paper_targets(),
        summary=SUMMARY,
