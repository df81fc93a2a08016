# Helpers of the multi-model rules (rules/multi.smk): groups, their files and settings.

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
