# Multi-model training: one predictor per group of sources, each source on its own split.
#
#   results/multi/{group}/data_config.json   the guide's {"datasets": [...]} with split/planting paths
#   results/multi/{group}/best_model.pt      trained on every member's train/val rollouts
#   results/multi/{group}/results.json       pooled and per-source test metrics (docs/multi_model.md)
#
# Groups, their members' files and settings: vlarisk.workflow.planning.Plan (multi_*).


wildcard_constraints:
    group=PLAN.group_pattern,


localrules:
    write_multi_config,


rule write_multi_config:
    output:
        paths.data_config_path("{group}"),
    log:
        paths.log_path("write_multi_config", "{group}"),
    params:
        datasets=lambda wildcards: PLAN.multi_data_config(wildcards.group),
    run:
        write_data_config(output[0], params.datasets, log[0])


rule train_multi_model:
    input:
        unpack(lambda wildcards: PLAN.multi_member_files(wildcards.group)),
        data_config=rules.write_multi_config.output[0],
        code=code_for("train_multi_model"),
    output:
        best=paths.best_model(paths.multi_dir("{group}")),
        latest=paths.latest_model(paths.multi_dir("{group}")),
    log:
        paths.log_path("train_multi_model", "{group}"),
    benchmark:
        paths.benchmark_path("train_multi_model", "{group}")
    conda:
        "../envs/vlarisk.yaml"
    threads: 2
    resources:
        mem_mb=PLAN.mem_mb("train", "train_multi_model"),
        runtime=PLAN.runtime("train", "train_multi_model", PLAN.multi_epochs),
    params:
        flags=PLAN.train_command_flags(PLAN.multi_training_settings()),
        output_dir=subpath(output.best, parent=True),
        resume_dir=paths.resume_dir("train_multi_model", "{group}"),
    shell:
        "python {input.code[0]:q} --data-config {input.data_config:q}"
        " --output-dir {params.output_dir:q} --model-name {wildcards.group:q}"
        " {params.flags} --threads {threads}"
        " --resume --resume-dir {params.resume_dir:q} --no-test --progress-fd 3 3>&2 > {log:q} 2>&1"


rule evaluate_multi_model:
    input:
        unpack(lambda wildcards: PLAN.multi_member_files(wildcards.group)),
        checkpoint=rules.train_multi_model.output.best,
        latest=rules.train_multi_model.output.latest,
        data_config=rules.write_multi_config.output[0],
        baselines=lambda wildcards: PLAN.multi_baselines(wildcards.group),
        code=code_for("evaluate_multi_model"),
    output:
        paths.results_json(paths.multi_dir("{group}")),
    log:
        paths.log_path("evaluate_multi_model", "{group}"),
    benchmark:
        paths.benchmark_path("evaluate_multi_model", "{group}")
    conda:
        "../envs/vlarisk.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("evaluate", "evaluate_multi_model"),
        runtime=PLAN.runtime("evaluate", "evaluate_multi_model"),
    params:
        baselines=baselines_flag,
        flags=PLAN.score_command_flags,
    shell:
        "python {input.code[0]:q} --checkpoint {input.checkpoint:q}"
        " --history {input.latest:q} --data-config {input.data_config:q} --output {output:q}"
        " {params.baselines} {params.flags}"
        " --threads {threads} > {log:q} 2>&1"
