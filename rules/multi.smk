# Multi-model training: one predictor per group of sources, each source on its own split.
#
#   results/multi/{group}/data_config.json   the guide's {"datasets": [...]} with split/planting paths
#   results/multi/{group}/best_model.pt      trained on every member's train/val rollouts
#   results/multi/{group}/results.json       pooled and per-source test metrics (docs/multi_model.md)

MULTI_MODEL = config.get("multi_model", {})
MULTI_GROUPS = MULTI_MODEL.get("groups", {})


def multi_training_settings():
    """Global training settings, then the `multi_model.training` overrides."""
    return {**config["training"], **MULTI_MODEL.get("training", {})}


def check_multi_config():
    """Fail at parse time on a group naming an unconfigured source, or no layer to share."""
    if MULTI_GROUPS and not multi_training_settings()["hidden_dims"]:
        raise ValueError(
            "multi_model: hidden_dims is empty; a multi-model needs at least one hidden layer"
            " (set multi_model.training.hidden_dims)"
        )
    for group, members in MULTI_GROUPS.items():
        unknown = [member for member in members if member not in SOURCES]
        if unknown:
            raise ValueError(
                f"multi_model.groups.{group} names unknown source(s) {unknown};"
                f" configured sources are {SOURCES}"
            )


check_multi_config()


wildcard_constraints:
    group="|".join(MULTI_GROUPS) or "none",


localrules:
    write_multi_config,


def multi_member_files(wildcards):
    """Each member's dataset and split, and the planting records of simulated members."""
    members = MULTI_GROUPS[wildcards.group]
    return {
        "data": expand("results/datasets/{source}/dataset.vlarisk", source=members),
        "splits": expand("results/splits/{source}.json", source=members),
        "plantings": [
            f"results/rollouts/{source}/planting.npz"
            for source in members
            if is_simulated(source)
        ],
    }


def multi_data_config(group):
    """The group's data-config entries: the guide's fields plus split and planting paths."""
    entries = []
    for source in MULTI_GROUPS[group]:
        entry = {
            "model_name": source,
            "data_path": f"results/datasets/{source}/dataset.vlarisk",
            "split_path": f"results/splits/{source}.json",
            "description": f"source {source} of multi-model group {group}",
        }
        if is_simulated(source):
            entry["planting_path"] = f"results/rollouts/{source}/planting.npz"
        entries.append(entry)
    return entries


def write_data_config(path, entries, log_path):
    """Write a data config for train/evaluate_multi_model.py and note its members in the log."""
    with open(path, "w") as handle:
        json.dump({"datasets": entries}, handle, indent=2)
    with open(log_path, "w") as handle:
        print(f"{path}: {[entry['model_name'] for entry in entries]}", file=handle)


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
        code=code_for("multi"),
    output:
        best="results/multi/{group}/best_model.pt",
        latest="results/multi/{group}/latest.pt",
    log:
        "results/logs/train_multi_model/{group}.log",
    benchmark:
        "results/benchmarks/train_multi_model/{group}.tsv"
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
        code=code_for("multi_evaluate"),
    output:
        "results/multi/{group}/results.json",
    log:
        "results/logs/evaluate_multi_model/{group}.log",
    benchmark:
        "results/benchmarks/evaluate_multi_model/{group}.tsv"
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
