# Rollouts -> prepared dataset -> split by rollout.


rule simulate_rollouts:
    input:
        code=code_for("simulate_rollouts"),
    output:
        success=paths.rollout_path("{source}", "success"),
        failure=paths.rollout_path("{source}", "failure"),
        planting=paths.planting_path("{source}"),
    log:
        paths.data_log_path("simulate_rollouts", "{source}"),
    benchmark:
        paths.data_benchmark_path("simulate_rollouts", "{source}")
    conda:
        "../envs/vlarisk.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("simulate", "simulate_rollouts"),
        runtime=PLAN.runtime("simulate", "simulate_rollouts"),
    params:
        spec=lambda wildcards: json.dumps(
            PLAN.source_config(wildcards.source)["simulate"], sort_keys=True
        ),
    shell:
        "python {input.code[0]:q} --success {output.success:q}"
        " --failure {output.failure:q} --planting {output.planting:q}"
        " --spec {params.spec:q} > {log:q} 2>&1"


rule prepare_dataset:
    input:
        unpack(lambda wildcards: PLAN.rollout_files(wildcards.source)),
        code=code_for("prepare_training_data"),
    output:
        directory(paths.dataset_path("{source}", "{variant}")),
    log:
        paths.data_log_path("prepare_dataset", "{source}.{variant}"),
    benchmark:
        paths.data_benchmark_path("prepare_dataset", "{source}.{variant}")
    conda:
        "../envs/vlarisk.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("prepare", "prepare_dataset"),
        runtime=PLAN.runtime("prepare", "prepare_dataset"),
    params:
        labels=lambda wildcards: PLAN.labelling_flag(
            wildcards.source, wildcards.variant
        ),
    shell:
        "python {input.code[0]:q} --success {input.success:q}"
        " --failure {input.failure:q} --output {output:q} {params.labels} > {log:q} 2>&1"


rule split_dataset:
    input:
        data=paths.dataset_path("{source}"),
        code=code_for("split_dataset"),
    output:
        paths.split_path("{source}"),
    log:
        paths.data_log_path("split_dataset", "{source}"),
    conda:
        "../envs/vlarisk.yaml"
    params:
        flags=PLAN.split_flags(),
    shell:
        "python {input.code[0]:q} --data {input.data:q} --output {output:q}"
        " {params.flags} > {log:q} 2>&1"


# The ablations' seeds vary the split as well as the initialisation: one split per seed.
use rule split_dataset as split_dataset_seeded with:
    output:
        paths.split_path("{source}", "{seed}"),
    log:
        paths.data_log_path("split_dataset", "{source}.seed-{seed}"),
    wildcard_constraints:
        seed=r"\d+",
    params:
        flags=lambda wildcards: PLAN.split_flags(wildcards.seed),


# Several task splits (split.n_task_splits): split k > 0 holds out other tasks, drawn with a seed
# derived from split.seed and k; each trains and scores its own model (rules/models.smk).
use rule split_dataset as split_dataset_task_split with:
    output:
        paths.split_path("{source}", task_split="{task_split}"),
    log:
        paths.data_log_path("split_dataset", "{source}.task-split-{task_split}"),
    wildcard_constraints:
        task_split=r"[1-9]\d*",
    params:
        flags=lambda wildcards: PLAN.split_flags(task_split=int(wildcards.task_split)),
