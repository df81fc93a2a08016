# Rollouts -> prepared dataset -> split by rollout.


rule simulate_rollouts:
    input:
        code=code_for("simulate"),
    output:
        success="results/rollouts/{source}/success_rollouts.pkl",
        failure="results/rollouts/{source}/failure_rollouts.pkl",
        planting="results/rollouts/{source}/planting.npz",
    params:
        spec=lambda wildcards: json.dumps(
            source_config(wildcards.source)["simulate"], sort_keys=True
        ),
    log:
        "results/logs/simulate_rollouts/{source}.log",
    benchmark:
        "results/benchmarks/simulate_rollouts/{source}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb_for("simulate"),
        runtime=runtime_for("simulate"),
    shell:
        "python workflow_scripts/simulate_rollouts.py --success {output.success}"
        " --failure {output.failure} --planting {output.planting}"
        " --spec {params.spec:q} > {log} 2>&1"


rule prepare_dataset:
    input:
        unpack(rollout_files),
        code=code_for("prepare"),
    output:
        "results/datasets/{source}/{variant}.vlarisk",
    params:
        labels=labelling_flag,
    log:
        "results/logs/prepare_dataset/{source}.{variant}.log",
    benchmark:
        "results/benchmarks/prepare_dataset/{source}.{variant}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb_for("prepare"),
        runtime=runtime_for("prepare"),
    shell:
        "python workflow_scripts/prepare_training_data.py --success {input.success}"
        " --failure {input.failure} --output {output} {params.labels} > {log} 2>&1"


rule split_dataset:
    input:
        data="results/datasets/{source}/dataset.vlarisk",
        code=code_for("split"),
    output:
        "results/splits/{source}.json",
    params:
        val=config["split"]["val_fraction"],
        test=config["split"]["test_fraction"],
        seed=config["split"]["seed"],
        held_out=" ".join(map(str, config["split"]["held_out_tasks"])),
    log:
        "results/logs/split_dataset/{source}.log",
    shell:
        "python workflow_scripts/split_dataset.py --data {input.data} --output {output}"
        " --val-split {params.val} --test-split {params.test} --seed {params.seed}"
        " --held-out-tasks {params.held_out} > {log} 2>&1"
