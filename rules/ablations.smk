# Ablations: one factor of the training recipe varied at a time around the default, per seed.
# Each seed trains and is scored on its own split of the source (seeds vary the split too). The
# grid (cells, their settings and data, the targets): vlarisk.workflow.planning.Plan (ablation_*). A cell
# is `default` or `<factor>-<value slug>` (loss_type-bce, hidden_dims-linear, normalize-off,
# labels-heuristic, ...); each seed of a cell has its own files
#   results/ablations/{source}/{cell}/seed-{seed}/results.json
# and one job per cell trains (then scores) all its seeds. Its params hold only that cell's
# settings and the seeds, so adding a value runs only the new cell, a changed cell reruns alone,
# and adding a seed reruns every cell. A value equal to the default setting is the `default`
# cell, trained once for all factors.


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


# A cell's seeds run in one job, one after another in one process (train_ablation_cell.py and
# evaluate_ablation_cell.py run the single-model commands once per seed), so the commands'
# start-up is paid once per cell; each seed keeps its own files under seed-<seed>/. Cells train
# and score exactly like the single models (train_model, evaluate_model), with the same flags.
rule train_ablation:
    input:
        unpack(
            lambda wildcards: PLAN.ablation_training_data(
                wildcards.source, wildcards.cell
            )
        ),
        splits=expand(
            paths.split_path("{source}", "{seed}"),
            seed=PLAN.ablation_seeds,
            allow_missing=True,
        ),
        code=code_for("train_ablation_cell"),
    output:
        best=expand(
            paths.best_model(paths.ablation_dir("{source}", "{cell}", "{seed}")),
            seed=PLAN.ablation_seeds,
            allow_missing=True,
        ),
        latest=expand(
            paths.latest_model(paths.ablation_dir("{source}", "{cell}", "{seed}")),
            seed=PLAN.ablation_seeds,
            allow_missing=True,
        ),
    log:
        paths.log_path("train_ablation", "{source}/{cell}"),
    benchmark:
        paths.benchmark_path("train_ablation", "{source}/{cell}")
    wildcard_constraints:
        cell=ABLATION_CELL_PATTERN,
    conda:
        "../envs/vlarisk.yaml"
    threads: 2
    resources:
        mem_mb=PLAN.mem_mb("train", "train_ablation"),
        runtime=PLAN.runtime(
            "train", "train_ablation", PLAN.ablation_epochs, len(PLAN.ablation_seeds)
        ),
    params:
        seeds=PLAN.ablation_seeds,
        per_seed=lambda wildcards: PLAN.ablation_seed_flags(
            wildcards.source, wildcards.cell, "train"
        ),
        flags=lambda wildcards: PLAN.train_command_flags(
            PLAN.ablation_cell_settings(wildcards.source, wildcards.cell)
        ),
    shell:
        "python {input.code[0]:q} --seeds {params.seeds} -- --data {input.data:q}"
        " {params.per_seed} --model-name {wildcards.source:q} {params.flags}"
        " --threads {threads} --resume --no-test --progress-fd 3 3>&2"
        " > {log:q} 2>&1"


# Scored like every single model: on the source's own dataset (provided labels are the truth).
rule evaluate_ablation:
    input:
        unpack(lambda wildcards: PLAN.planting_file(wildcards.source)),
        checkpoints=rules.train_ablation.output.best,
        latest=rules.train_ablation.output.latest,
        data=paths.dataset_path("{source}"),
        splits=rules.train_ablation.input.splits,
        baselines=expand(
            paths.baselines_path("{source}", f"{SEED_SPLIT_PREFIX}{{seed}}"),
            seed=PLAN.ablation_seeds,
            allow_missing=True,
        ),
        code=code_for("evaluate_ablation_cell"),
    output:
        results=expand(
            paths.results_json(paths.ablation_dir("{source}", "{cell}", "{seed}")),
            seed=PLAN.ablation_seeds,
            allow_missing=True,
        ),
        predictions=expand(
            paths.predictions_path(paths.ablation_dir("{source}", "{cell}", "{seed}")),
            seed=PLAN.ablation_seeds,
            allow_missing=True,
        ),
    log:
        paths.log_path("evaluate_ablation", "{source}/{cell}"),
    benchmark:
        paths.benchmark_path("evaluate_ablation", "{source}/{cell}")
    wildcard_constraints:
        cell=ABLATION_CELL_PATTERN,
    conda:
        "../envs/vlarisk.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("evaluate", "evaluate_ablation"),
        runtime=PLAN.runtime(
            "evaluate", "evaluate_ablation", runs=len(PLAN.ablation_seeds)
        ),
    params:
        seeds=PLAN.ablation_seeds,
        per_seed=lambda wildcards: PLAN.ablation_seed_flags(
            wildcards.source, wildcards.cell, "evaluate"
        ),
        planting=planting_flag,
        flags=PLAN.score_command_flags,
    shell:
        "python {input.code[0]:q} --seeds {params.seeds} -- {params.per_seed}"
        " --data {input.data:q} {params.planting} {params.flags}"
        " --threads {threads} > {log:q} 2>&1"
