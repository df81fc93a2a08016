# The comparison of runs: every results.json under results/ (the plain run's, each experiment's,
# multi-models and ablation cells) in one table with its settings and headline metrics
# (vlarisk.runs), like DVC's `exp show`. `snakemake compare` first builds the current config's
# `all`, so `snakemake compare --config experiment=<name>` runs an experiment and tables it beside
# the others. Runs the current config does not build are read as found: they are params, not
# inputs (Snakemake never rebuilds another experiment's run), and `stamp` changes whenever one is
# added, removed or rewritten, which makes the table again.

_runs = _load_standalone("runs")
_found_runs = PLAN.comparison_runs(_runs.find_results(_planning.RESULTS_BASE))


localrules:
    compare,
    compare_runs,


rule compare_runs:
    input:
        runs=PLAN.all_targets(),
        code=code_for("compare_runs"),
    output:
        csv=comparison_path("csv"),
        md=comparison_path("md"),
    log:
        log_path("compare_runs", "runs"),
    conda:
        "../envs/vlarisk.yaml"
    params:
        found=shlex.join(_found_runs),
        stamp=_runs.results_stamp(_found_runs),
    shell:
        "python {input.code[0]:q} {input.runs:q} {params.found}"
        " --csv {output.csv:q} --markdown {output.md:q} > {log:q} 2>&1"


rule compare:
    input:
        rules.compare_runs.output,
