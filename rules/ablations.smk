# Ablations: one factor of the training recipe varied at a time around the default, per seed
# (the grid and its helpers: rules/paper_common.smk). Cells train and score exactly like the
# single models (train_model, evaluate_model), on the source's own split.


localrules:
    check_same_rollouts,


rule check_same_rollouts:
    input:
        reference="results/datasets/{source}/dataset.vlarisk",
        other="results/datasets/{source}/heuristic.vlarisk",
    output:
        "results/datasets/{source}/heuristic.same_rollouts.txt",
    log:
        "results/logs/check_same_rollouts/{source}.log",
    conda:
        "../envs/vlarisk.yaml"
    shell:
        "python workflow_scripts/check_same_rollouts.py {input.reference} {input.other}"
        " --output {output} > {log} 2>&1"


use rule train_model as train_ablation with:
    input:
        unpack(ablation_training_data),
        split="results/splits/{source}.json",
        code=code_for("train_risk_predictor"),
    output:
        best="results/ablations/{source}/{cell}/seed-{seed}/best_model.pt",
        latest="results/ablations/{source}/{cell}/seed-{seed}/latest.pt",
    log:
        "results/logs/train_ablation/{source}/{cell}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/train_ablation/{source}/{cell}/seed-{seed}.tsv"
    wildcard_constraints:
        cell=ABLATION_CELL_PATTERN,
        seed=r"\d+",
    params:
        flags=lambda wildcards: training_flags(ablation_settings(wildcards)),
        output_dir=subpath(output.best, parent=True),


# Scored like every single model: on the source's own dataset (provided labels are the truth).
use rule evaluate_model as evaluate_ablation with:
    input:
        unpack(planting_file),
        checkpoint="results/ablations/{source}/{cell}/seed-{seed}/best_model.pt",
        latest="results/ablations/{source}/{cell}/seed-{seed}/latest.pt",
        data="results/datasets/{source}/dataset.vlarisk",
        split="results/splits/{source}.json",
        code=code_for("evaluate_risk_predictor"),
    output:
        "results/ablations/{source}/{cell}/seed-{seed}/results.json",
    log:
        "results/logs/evaluate_ablation/{source}/{cell}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_ablation/{source}/{cell}/seed-{seed}.tsv"
    wildcard_constraints:
        cell=ABLATION_CELL_PATTERN,
        seed=r"\d+",
