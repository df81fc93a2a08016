# Resource requests for the rules that may run as cluster jobs.
#
# Usage in a resources directive, naming the kind (a row of RESOURCE_TABLE),
# e.g. in train_model:
#
#         resources:
#             mem_mb=mem_mb_for("train"),
#             runtime=runtime_for("train"),
#
# Both are callables of (wildcards, input, attempt), so Snakemake evaluates them
# per job, once the job's input exists (before that the value shows as <TBD> in
# a dry run), and again on each retry:
#
#     mem_mb  = min(cap, (base + per_input_mb * input MB) * attempt)       [MB]
#     runtime = min(cap, (base + per_input_gb * input GB) * attempt)       [minutes]
#
# so a job killed for memory or time (OUT_OF_MEMORY / TIMEOUT under SLURM) comes
# back with twice, then three times, the request (profiles/slurm sets retries: 2).
# Locally the values only matter against a --resources mem_mb=... limit.
#
# Numbers are deliberately generous for the pipeline's real sizes (tens to a few
# hundred MB of rollouts); the tiny test config stays at the base values.
# Which site limits apply (partition, account, GPU type, QoS) is the profile's
# business, not this file's: see docs/cluster.md.

RESOURCE_TABLE = {
    # kind: rules using it
    #   mem_mb  : base MB, + MB per input MB, cap MB
    #   runtime : base min, + min per input GB, cap min
    "simulate": {  # simulate_rollouts: generates data, input is small
        "mem_mb": (2000, 2.0, 32000),
        "runtime": (30, 60, 24 * 60),
    },
    "prepare": {  # prepare_dataset: loads all rollouts, writes features
        "mem_mb": (2000, 4.0, 64000),
        "runtime": (20, 60, 12 * 60),
    },
    "train": {  # train_model, train_ablation, train_multi_model (GPU rules)
        "mem_mb": (8000, 4.0, 96000),
        "runtime": (120, 240, 48 * 60),
    },
    "evaluate": {  # evaluate_model, evaluate_ablation, evaluate_multi_model
        "mem_mb": (4000, 3.0, 64000),
        "runtime": (20, 60, 12 * 60),
    },
}


def _input_mb(input):
    """Total size of a job's input in MB (0 for rules without input)."""
    return input.size_mb if len(input) else 0.0


def _resource_row(kind, name):
    try:
        return RESOURCE_TABLE[kind][name]
    except KeyError:
        raise ValueError(
            f"unknown resource kind {kind!r}; expected one of {sorted(RESOURCE_TABLE)}"
        ) from None


def mem_mb_for(kind):
    """Memory request (MB) for rules of this kind, growing with input and attempt."""
    base, per_input_mb, cap = _resource_row(kind, "mem_mb")

    def mem_mb(wildcards, input, attempt):
        return int(min(cap, (base + per_input_mb * _input_mb(input)) * attempt))

    return mem_mb


def runtime_for(kind):
    """Wall-time request (minutes) for rules of this kind, growing with input and attempt."""
    base, per_input_gb, cap = _resource_row(kind, "runtime")

    def runtime(wildcards, input, attempt):
        return int(min(cap, (base + per_input_gb * _input_mb(input) / 1024) * attempt))

    return runtime
