# Multi-model training: one predictor per group of sources, each source on its own split.
#
#   results/multi/{group}/data_config.json   the guide's {"datasets": [...]} with split/planting paths
#   results/multi/{group}/best_model.pt      trained on every member's train/val rollouts
#   results/multi/{group}/results.json       pooled and per-source test metrics (docs/multi_model.md)


wildcard_constraints:
    group="|".join(MULTI_GROUPS) or "none",


localrules:
    write_multi_config,


rule write_multi_config:
    output:
        "results/multi/{group}/data_config.json",
    log:
        "results/logs/write_multi_config/{group}.log",
    params:
        datasets=lambda wildcards: multi_data_config(wildcards.group),
    run:
        write_data_config(output[0], params.datasets, log[0])


rule train_multi_model:
    input:
        unpack(multi_member_files),
        data_config="results/multi/{group}/data_config.json",
        code=code_for("train_multi_model"),
    output:
        best="results/multi/{group}/best_model.pt",
        latest="results/multi/{group}/latest.pt",
    log:
        "results/logs/train_multi_model/{group}.log",
    benchmark:
        "results/benchmarks/train_multi_model/{group}.tsv"
    conda:
        "../envs/vlarisk.yaml"
    threads: 2
    resources:
        mem_mb=mem_mb_for("train"),
        runtime=runtime_for("train"),
    params:
        flags=training_flags(multi_training_settings()),
        output_dir=subpath(output.best, parent=True),
    shell:
        "python workflow_scripts/train_multi_model.py --data-config {input.data_config}"
        " --output-dir {params.output_dir} --model-name {wildcards.group}"
        " {params.flags} --threads {threads} --no-test > {log} 2>&1"


rule evaluate_multi_model:
    input:
        unpack(multi_member_files),
        checkpoint="results/multi/{group}/best_model.pt",
        latest="results/multi/{group}/latest.pt",
        data_config="results/multi/{group}/data_config.json",
        code=code_for("evaluate_multi_model"),
    output:
        "results/multi/{group}/results.json",
    log:
        "results/logs/evaluate_multi_model/{group}.log",
    benchmark:
        "results/benchmarks/evaluate_multi_model/{group}.tsv"
    conda:
        "../envs/vlarisk.yaml"
    threads: 2
    resources:
        mem_mb=mem_mb_for("evaluate"),
        runtime=runtime_for("evaluate"),
    params:
        positive_fraction=config["evaluation"]["positive_fraction_of_max"],
    shell:
        "python workflow_scripts/evaluate_multi_model.py --checkpoint {input.checkpoint}"
        " --history {input.latest} --data-config {input.data_config} --output {output}"
        " --positive-fraction {params.positive_fraction} --threads {threads} > {log} 2>&1"
