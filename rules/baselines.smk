# Baselines fitted once per source and split: logistic, shortcuts, kNN, Mahalanobis (and the planted
# direction on simulated data), their metrics and detection blocks. Every model scored on that
# split reads them (--baselines): the single model and each multi-model group on the plain split,
# every ablation cell of a seed on the seed's split.
#   results/baselines/{source}/plain.json        (scores in plain.npz beside it)
#   results/baselines/{source}/seed-{seed}.json


rule score_baselines:
    input:
        unpack(lambda wildcards: PLAN.planting_file(wildcards.source)),
        data=paths.dataset_path("{source}"),
        split=lambda wildcards: PLAN.baselines_split_file(
            wildcards.source, wildcards.split
        ),
        code=code_for("score_baselines"),
    output:
        baselines=paths.baselines_path("{source}", "{split}"),
        scores=paths.baselines_scores_path("{source}", "{split}"),
    log:
        paths.log_path("score_baselines", "{source}/{split}"),
    benchmark:
        paths.benchmark_path("score_baselines", "{source}/{split}")
    wildcard_constraints:
        split=BASELINES_SPLIT_PATTERN,
    conda:
        "../envs/vlarisk.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("evaluate", "score_baselines"),
        runtime=PLAN.runtime("evaluate", "score_baselines"),
    params:
        planting=planting_flag,
        flags=PLAN.score_command_flags,
    shell:
        "python {input.code[0]:q} --source {wildcards.source:q} --data {input.data:q}"
        " --split {input.split:q} --output {output.baselines:q} {params.planting}"
        " {params.flags} --threads {threads} > {log:q} 2>&1"
