# One predictor per source: train on the split's train/val rollouts, then score its test rollouts.


rule train_model:
    input:
        data="results/datasets/{source}/dataset.vlarisk",
        split="results/splits/{source}.json",
        code=code_for("train_risk_predictor"),
    output:
        best="results/models/{source}/best_model.pt",
        latest="results/models/{source}/latest.pt",
    log:
        "results/logs/train_model/{source}.log",
    benchmark:
        "results/benchmarks/train_model/{source}.tsv"
    conda:
        "../envs/vlarisk.yaml"
    threads: 2
    resources:
        mem_mb=mem_mb_for("train"),
        runtime=runtime_for("train"),
    params:
        flags=lambda wildcards: training_flags(training_settings(wildcards.source)),
        output_dir=subpath(output.best, parent=True),
    shell:
        "python workflow_scripts/train_risk_predictor.py --data {input.data}"
        " --split {input.split} --output-dir {params.output_dir}"
        " --model-name {wildcards.source} {params.flags} --threads {threads}"
        " --no-test > {log} 2>&1"


rule evaluate_model:
    input:
        unpack(planting_file),
        checkpoint="results/models/{source}/best_model.pt",
        latest="results/models/{source}/latest.pt",
        data="results/datasets/{source}/dataset.vlarisk",
        split="results/splits/{source}.json",
        code=code_for("evaluate_risk_predictor"),
    output:
        "results/models/{source}/results.json",
    log:
        "results/logs/evaluate_model/{source}.log",
    benchmark:
        "results/benchmarks/evaluate_model/{source}.tsv"
    conda:
        "../envs/vlarisk.yaml"
    threads: 2
    resources:
        mem_mb=mem_mb_for("evaluate"),
        runtime=runtime_for("evaluate"),
    params:
        planting=planting_flag,
        positive_fraction=config["evaluation"]["positive_fraction_of_max"],
    shell:
        "python workflow_scripts/evaluate_risk_predictor.py --checkpoint {input.checkpoint}"
        " --history {input.latest} --data {input.data} --split {input.split}"
        " --output {output} {params.planting} --positive-fraction {params.positive_fraction}"
        " --threads {threads} > {log} 2>&1"
