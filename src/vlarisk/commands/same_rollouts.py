"""Check that two datasets of one source hold the same rollouts under the same ids.

The labels ablation trains on the heuristic-labelled dataset with the split of the source's own
dataset; that is only sound when rollout ids mean the same rollouts in both (``--require-labels``
can drop a whole unlabelled rollout from one of them and shift the ids after it).
"""

from vlarisk.core.cli import ArgumentParser, log
from vlarisk.core.errors import InputError
from vlarisk.core.io_utils import atomic_path


def rollout_keys(path: str) -> list[tuple]:
    """``(rollout id, file, index in file)`` of every rollout of a dataset."""
    from vlarisk.data.dataset import load_dataset

    return [(r["rollout_id"], r["file"], r["index"]) for r in load_dataset(path).metadata["rollouts"]]


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("reference", help="the dataset whose split is used")
    parser.add_argument("other", help="the dataset trained on with that split")
    parser.add_argument("--output", required=True, help="note written when they match")
    args = parser.parse_args(argv)
    reference, other = rollout_keys(args.reference), rollout_keys(args.other)
    if reference != other:
        differ = sorted(set(reference) ^ set(other))[:3]
        raise InputError(
            f"{args.other}: its rollouts differ from those of {args.reference} (first differences: {differ}); the split of one does not fit the other"
        )
    with atomic_path(args.output) as tmp:
        tmp.write_text(f"{args.reference} and {args.other}: the same {len(reference)} rollouts\n")
    log(f"{args.output}: {len(reference)} rollouts match")
