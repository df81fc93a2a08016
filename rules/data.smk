# Rollouts -> prepared dataset -> split by rollout.


rule simulate_rollouts:
    input:
        code=code_for("simulate_rollouts"),
    output:
        success="results/rollouts/{source}/success_rollouts.pkl",
        failure="results/rollouts/{source}/failure_rollouts.pkl",
        planting="results/rollouts/{source}/planting.npz",
    log:
        "results/logs/simulate_rollouts/{source}.log",
    benchmark:
        "results/benchmarks/simulate_rollouts/{source}.tsv"
    conda:
        "../envs/vlarisk.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_for("simulate"),
        runtime=runtime_for("simulate"),
    params:
        spec=lambda wildcards: json.dumps(
            source_config(wildcards.source)["simulate"], sort_keys=True
        ),
    shell:
        "python workflow_scripts/simulate_rollouts.py --success {output.success}"
        " --failure {output.failure} --planting {output.planting}"
        " --spec {params.spec:q} > {log} 2>&1"


rule prepare_dataset:
    input:
        unpack(rollout_files),
        code=code_for("prepare_training_data"),
    output:
        "results/datasets/{source}/{variant}.vlarisk",
    log:
        "results/logs/prepare_dataset/{source}.{variant}.log",
    benchmark:
        "results/benchmarks/prepare_dataset/{source}.{variant}.tsv"
    conda:
        "../envs/vlarisk.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb_for("prepare"),
        runtime=runtime_for("prepare"),
    params:
        labels=labelling_flag,
    shell:
        "python workflow_scripts/prepare_training_data.py --success {input.success}"
        " --failure {input.failure} --output {output} {params.labels} > {log} 2>&1"


rule split_dataset:
    input:
        data="results/datasets/{source}/dataset.vlarisk",
        code=code_for("split_dataset"),
    output:
        "results/splits/{source}.json",
    log:
        "results/logs/split_dataset/{source}.log",
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
