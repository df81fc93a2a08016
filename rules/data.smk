# Rollouts -> prepared dataset -> split by rollout.


rule simulate_rollouts:
    input:
        code=code_for("simulate_rollouts"),
    output:
        success=rollout_path("{source}", "success"),
        failure=rollout_path("{source}", "failure"),
        planting=planting_path("{source}"),
    log:
        log_path("simulate_rollouts", "{source}"),
    benchmark:
        benchmark_path("simulate_rollouts", "{source}")
    conda:
        "../envs/vlarisk.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_for("simulate"),
        runtime=runtime_for("simulate"),
    params:
        spec=lambda wildcards: json.dumps(
            PLAN.source_config(wildcards.source)["simulate"], sort_keys=True
        ),
    shell:
        "python workflow_scripts/simulate_rollouts.py --success {output.success}"
        " --failure {output.failure} --planting {output.planting}"
        " --spec {params.spec:q} > {log} 2>&1"


rule prepare_dataset:
    input:
        unpack(lambda wildcards: PLAN.rollout_files(wildcards.source)),
        code=code_for("prepare_training_data"),
    output:
        dataset_path("{source}", "{variant}"),
    log:
        log_path("prepare_dataset", "{source}.{variant}"),
    benchmark:
        benchmark_path("prepare_dataset", "{source}.{variant}")
    conda:
        "../envs/vlarisk.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_for("prepare"),
        runtime=runtime_for("prepare"),
    params:
        labels=lambda wildcards: PLAN.labelling_flag(
            wildcards.source, wildcards.variant
        ),
    shell:
        "python workflow_scripts/prepare_training_data.py --success {input.success}"
        " --failure {input.failure} --output {output} {params.labels} > {log} 2>&1"


rule split_dataset:
    input:
        data=dataset_path("{source}"),
        code=code_for("split_dataset"),
    output:
        split_path("{source}"),
    log:
        log_path("split_dataset", "{source}"),
    conda:
        "../envs/vlarisk.yaml"
    params:
        val=config["split"]["val_fraction"],
        test=config["split"]["test_fraction"],
        seed=config["split"]["seed"],
        held_out=" ".join(map(str, config["split"]["held_out_tasks"])),
    shell:
        "python workflow_scripts/split_dataset.py --data {input.data} --output {output}"
        " --val-split {params.val} --test-split {params.test} --seed {params.seed}"
        " --held-out-tasks {params.held_out} > {log} 2>&1"
