# Physics sources (a `collect` block): a behaviour-cloned policy, then its rollouts in MetaWorld
# with injected faults and counterfactual labels (docs/physics-source.md).


localrules:
    paper_attribution,


rule train_policy:
    input:
        code=code_for("collect_rollouts"),
    output:
        policy=paths.collected_path("{source}", "policy.pt"),
    log:
        paths.data_log_path("train_policy", "{source}"),
    benchmark:
        paths.data_benchmark_path("train_policy", "{source}")
    conda:
        "../envs/physics.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("collect", "train_policy"),
        runtime=PLAN.runtime("collect", "train_policy"),
    params:
        flags=lambda wildcards: PLAN.policy_flags(wildcards.source),
        out=subpath(output.policy, parent=True),
    shell:
        "python {input.code[0]:q} {params.flags} --out {params.out:q} --train-only > {log:q} 2>&1"


rule collect_rollouts:
    input:
        policy=rules.train_policy.output.policy,
        code=code_for("collect_rollouts"),
    output:
        success=paths.collected_path("{source}", "success_rollouts.pkl"),
        failure=paths.collected_path("{source}", "failure_rollouts.pkl"),
        collection=paths.collected_path("{source}", "collection.json"),
    log:
        paths.data_log_path("collect_rollouts", "{source}"),
    benchmark:
        paths.data_benchmark_path("collect_rollouts", "{source}")
    conda:
        "../envs/physics.yaml"
    threads: 2
    resources:
        mem_mb=PLAN.mem_mb("collect", "collect_rollouts"),
        runtime=PLAN.runtime("collect", "collect_rollouts"),
    params:
        flags=lambda wildcards: PLAN.collect_flags(wildcards.source),
        out=subpath(output.collection, parent=True),
    shell:
        "python {input.code[0]:q} {params.flags} --workers {threads}"
        " --policy {input.policy:q} --out {params.out:q} > {log:q} 2>&1"


# The paper's attribution table and figure over the collected sources (`paper`).
rule paper_attribution:
    input:
        results=lambda wildcards: [
            paths.results_json(paths.model_dir(source))
            for source in PLAN.collected_sources()
        ],
        code=code_for("make_attribution"),
    output:
        multiext(paths.table_prefix("attribution"), ".md", ".tex", ".csv", ".json"),
        html=paths.table_path("attribution", "html"),
        figure=paths.figure_path("attribution", "attribution"),
    log:
        paths.log_path("paper_attribution", "attribution"),
    conda:
        "../envs/vlarisk.yaml"
    params:
        single=lambda wildcards: " ".join(
            f"--single {shlex.quote(source)} {shlex.quote(paths.results_json(paths.model_dir(source)))}"
            for source in PLAN.collected_sources()
        ),
        prefix=subpath(output.html, strip_suffix=".html"),
    shell:
        "python {input.code[0]:q} {params.single} --table-prefix {params.prefix:q}"
        " --figure {output.figure:q} > {log:q} 2>&1"
