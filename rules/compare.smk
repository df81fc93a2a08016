# The comparison of runs: every results.json under results/ (the plain run's, each experiment's,
# multi-models and ablation cells) in one table with its settings and headline metrics
# (vlarisk.workflow.runs), like DVC's `exp show`. `snakemake compare` first builds the current config's
# `all`, so `snakemake compare --config experiment=<name>` runs an experiment and tables it beside
# the others. Runs the current config does not build are read as found: they are params, not
# inputs (Snakemake never rebuilds another experiment's run), and `stamp` changes whenever one is
# added, removed or rewritten, which makes the table again.


localrules:
    compare,
    compare_runs,


rule compare_runs:
    input:
        runs=PLAN.all_targets(),
        code=code_for("compare_runs"),
    output:
        csv=paths.comparison_path("csv"),
        md=paths.comparison_path("md"),
    log:
        paths.log_path("compare_runs", "runs"),
    conda:
        "../envs/vlarisk.yaml"
    params:
        found=lambda wildcards: shlex.join(runs_found_elsewhere()),
        stamp=lambda wildcards: runs.results_stamp(runs_found_elsewhere()),
    shell:
        "python {input.code[0]:q} {input.runs:q} {params.found}"
        " --csv {output.csv:q} --markdown {output.md:q} > {log:q} 2>&1"


rule compare:
    input:
        rules.compare_runs.output,
