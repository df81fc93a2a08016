# One predictor per source: train on the split's train/val rollouts, then score its test rollouts.


rule train_model:
    input:
        data=paths.dataset_path("{source}"),
        split=paths.split_path("{source}"),
        code=code_for("train_risk_predictor"),
    output:
        best=paths.best_model(paths.model_dir("{source}")),
        latest=paths.latest_model(paths.model_dir("{source}")),
    log:
        paths.log_path("train_model", "{source}"),
    benchmark:
        paths.benchmark_path("train_model", "{source}")
    conda:
        "../envs/vlarisk.yaml"
    threads: 2
    resources:
        mem_mb=PLAN.mem_mb("train", "train_model"),
        runtime=PLAN.runtime("train", "train_model", PLAN.source_epochs),
    params:
        flags=lambda wildcards: PLAN.train_command_flags(
            PLAN.training_settings(wildcards.source)
        ),
        output_dir=subpath(output.best, parent=True),
        resume_dir=paths.resume_dir("train_model", "{source}"),
    shell:
        "python {input.code[0]:q} --data {input.data:q}"
        " --split {input.split:q} --output-dir {params.output_dir:q}"
        " --model-name {wildcards.source:q} {params.flags} --threads {threads}"
        " --resume --resume-dir {params.resume_dir:q} --no-test --progress-fd 3 3>&2 > {log:q} 2>&1"


rule evaluate_model:
    input:
        unpack(lambda wildcards: PLAN.planting_file(wildcards.source)),
        checkpoint=rules.train_model.output.best,
        latest=rules.train_model.output.latest,
        data=paths.dataset_path("{source}"),
        split=paths.split_path("{source}"),
        task_splits=lambda wildcards: PLAN.task_split_results(wildcards.source),
        baselines=paths.baselines_path("{source}", PLAIN_SPLIT),
        code=code_for("evaluate_risk_predictor"),
    output:
        results=paths.results_json(paths.model_dir("{source}")),
        predictions=paths.predictions_path(paths.model_dir("{source}")),
    log:
        paths.log_path("evaluate_model", "{source}"),
    benchmark:
        paths.benchmark_path("evaluate_model", "{source}")
    conda:
        "../envs/vlarisk.yaml"
    # scoring gains nothing from a second thread: two scorings side by side finish sooner (docs/speed.md)
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("evaluate", "evaluate_model"),
        runtime=PLAN.runtime("evaluate", "evaluate_model"),
    params:
        planting=planting_flag,
        task_splits=task_splits_flag,
        baselines=baselines_flag,
        flags=PLAN.score_command_flags,
    shell:
        "python {input.code[0]:q} --checkpoint {input.checkpoint:q}"
        " --history {input.latest:q} --data {input.data:q} --split {input.split:q}"
        " --output {output.results:q} --predictions {output.predictions:q} {params.planting}"
        " {params.task_splits}"
        " {params.baselines} {params.flags}"
        " --threads {threads} > {log:q} 2>&1"


# The extra task splits (split.n_task_splits > 1): each trains and scores its own model under
# results/models/<source>/task-split-<k>/; the main evaluation above reads their results.json.
use rule train_model as train_task_split with:
    input:
        data=paths.dataset_path("{source}"),
        split=paths.split_path("{source}", task_split="{task_split}"),
        code=code_for("train_risk_predictor"),
    output:
        best=paths.best_model(paths.model_dir("{source}", "{task_split}")),
        latest=paths.latest_model(paths.model_dir("{source}", "{task_split}")),
    log:
        paths.log_path("train_model", "{source}/task-split-{task_split}"),
    benchmark:
        paths.benchmark_path("train_model", "{source}/task-split-{task_split}")
    wildcard_constraints:
        task_split=r"[1-9]\d*",
    params:
        flags=lambda wildcards: PLAN.train_command_flags(
            PLAN.training_settings(wildcards.source)
        ),
        output_dir=subpath(output.best, parent=True),
        resume_dir=paths.resume_dir("train_model", "{source}/task-split-{task_split}"),


use rule evaluate_model as evaluate_task_split with:
    input:
        unpack(lambda wildcards: PLAN.planting_file(wildcards.source)),
        checkpoint=rules.train_task_split.output.best,
        latest=rules.train_task_split.output.latest,
        data=paths.dataset_path("{source}"),
        split=paths.split_path("{source}", task_split="{task_split}"),
        code=code_for("evaluate_risk_predictor"),
    output:
        results=paths.results_json(paths.model_dir("{source}", "{task_split}")),
        predictions=paths.predictions_path(paths.model_dir("{source}", "{task_split}")),
    log:
        paths.log_path("evaluate_model", "{source}/task-split-{task_split}"),
    benchmark:
        paths.benchmark_path("evaluate_model", "{source}/task-split-{task_split}")
    wildcard_constraints:
        task_split=r"[1-9]\d*",
