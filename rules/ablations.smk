# Ablations: one factor of the training recipe varied at a time around the default, per seed.
# Cells train and score exactly like the single models (train_model, evaluate_model), on the
# source's own split. The grid (cells, their settings and data, the targets): vlarisk.workflow.planning.Plan
# (ablation_*). A cell is `default` or `<factor>-<value slug>` (loss_type-bce, hidden_dims-linear,
# normalize-off, labels-heuristic, ...); each cell x seed is its own target
#   results/ablations/{source}/{cell}/seed-{seed}/results.json
# whose params hold only that cell's settings, so adding a value or a seed runs only the new
# cells. A value equal to the default setting is the `default` cell, trained once for all factors.


localrules:
    check_same_rollouts,


rule check_same_rollouts:
    input:
        reference=paths.dataset_path("{source}"),
        other=paths.dataset_path("{source}", "heuristic"),
        code=code_for("check_same_rollouts"),
    output:
        paths.same_rollouts_path("{source}"),
    log:
        paths.data_log_path("check_same_rollouts", "{source}"),
    conda:
        "../envs/vlarisk.yaml"
    shell:
        "python {input.code[0]:q} {input.reference:q} {input.other:q}"
        " --output {output:q} > {log:q} 2>&1"


use rule train_model as train_ablation with:
    input:
        unpack(
            lambda wildcards: PLAN.ablation_training_data(
                wildcards.source, wildcards.cell
            )
        ),
        split=paths.split_path("{source}", "{seed}"),
        code=code_for("train_risk_predictor"),
    output:
        best=paths.best_model(paths.ablation_dir("{source}", "{cell}", "{seed}")),
        latest=paths.latest_model(paths.ablation_dir("{source}", "{cell}", "{seed}")),
    log:
        paths.log_path("train_ablation", "{source}/{cell}/seed-{seed}"),
    benchmark:
        paths.benchmark_path("train_ablation", "{source}/{cell}/seed-{seed}")
    wildcard_constraints:
        cell=ABLATION_CELL_PATTERN,
        seed=r"\d+",
    resources:
        mem_mb=PLAN.mem_mb("train", "train_ablation"),
        runtime=PLAN.runtime("train", "train_ablation", PLAN.ablation_epochs),
    params:
        flags=lambda wildcards: training_flags(
            PLAN.ablation_settings(wildcards.source, wildcards.cell, wildcards.seed)
        ),
        detection=PLAN.detection_flags,
        output_dir=subpath(output.best, parent=True),
        resume_dir=paths.resume_dir("train_ablation", "{source}/{cell}/seed-{seed}"),


# Scored like every single model: on the source's own dataset (provided labels are the truth).
use rule evaluate_model as evaluate_ablation with:
    input:
        unpack(lambda wildcards: PLAN.planting_file(wildcards.source)),
        checkpoint=rules.train_ablation.output.best,
        latest=rules.train_ablation.output.latest,
        data=paths.dataset_path("{source}"),
        split=paths.split_path("{source}", "{seed}"),
        code=code_for("evaluate_risk_predictor"),
    output:
        results=paths.results_json(paths.ablation_dir("{source}", "{cell}", "{seed}")),
        predictions=paths.predictions_path(
            paths.ablation_dir("{source}", "{cell}", "{seed}")
        ),
    log:
        paths.log_path("evaluate_ablation", "{source}/{cell}/seed-{seed}"),
    benchmark:
        paths.benchmark_path("evaluate_ablation", "{source}/{cell}/seed-{seed}")
    wildcard_constraints:
        cell=ABLATION_CELL_PATTERN,
        seed=r"\d+",
    resources:
        mem_mb=PLAN.mem_mb("evaluate", "evaluate_ablation"),
        runtime=PLAN.runtime("evaluate", "evaluate_ablation"),
