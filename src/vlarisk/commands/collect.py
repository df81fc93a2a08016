"""``vlarisk-collect``: train a policy (or load one) and collect a physics source's rollout pickles."""

from __future__ import annotations

import argparse
from pathlib import Path

from vlarisk.core.cli import ArgumentParser, log, run
from vlarisk.core.errors import InputError
from vlarisk.core.settings import CollectSettings, PolicySettings, add_arguments, config_from_args
from vlarisk.core.spec_options import dataclass_from_values, json_object


def parser() -> ArgumentParser:
    """The command's flags (shared by ``train_policy`` mode and collection): the ``collect`` block's keys, then how to run."""
    p = add_arguments(ArgumentParser(description=__doc__), CollectSettings)
    p.add_argument(
        "--out",
        required=True,
        help="output folder: success_rollouts.pkl, failure_rollouts.pkl, collection.json (and policy.pt when trained here)",
    )
    p.add_argument("--policy", help="a policy checkpoint from --train-only (default: train one into OUT/policy.pt)")
    p.add_argument("--train-only", action="store_true", help="only train the policy and write OUT/policy.pt")
    p.add_argument("--workers", type=int, default=2, help="worker processes for episodes and counterfactual replays")
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    # torch and the collection code load after parsing: --help and usage errors come at once
    from vlarisk.physics.collect import POLICY_FILE, CollectionSettings, collect, load_checkpoint
    from vlarisk.physics.env import check_tasks
    from vlarisk.physics.perturbations import check_mix
    from vlarisk.physics.policy import save_policy, train_policy

    block = _collect_block(args)
    tasks = check_tasks(block.tasks, block.env)
    mix = check_mix(block.mix)
    out = Path(args.out)
    if args.policy:
        checkpoint = load_checkpoint(args.policy)
    else:
        given = {"seed": block.seed, "horizon": block.horizon, **block.policy}
        settings = dataclass_from_values(PolicySettings, given, "--policy-settings")
        checkpoint = train_policy(tasks, settings, log)
        out.mkdir(parents=True, exist_ok=True)
        save_policy(checkpoint, out / POLICY_FILE)
        log(f"trained the policy in {checkpoint['train_seconds']:.1f} s on {checkpoint['demo_steps']} demo steps: {out / POLICY_FILE}")
        if args.train_only:
            return
    settings = CollectionSettings(tuple(tasks), block.episodes, block.seed, block.horizon, mix, block.max_labelled_failures, args.workers)
    summary = collect(settings, checkpoint, out, log)
    log(f"collected {block.episodes} episodes in {summary['wall_seconds']:.1f} s, failure rate {summary['failure_rate']:.2f}: {out}")


def _collect_block(args) -> CollectSettings:
    """The parsed flags as a ``collect`` block, the JSON flags read, every value checked (one line on error)."""
    json_flags = {"mix": json_object(args.mix, "--mix"), "policy_settings": json_object(args.policy_settings, "--policy-settings")}
    try:
        return config_from_args(argparse.Namespace(**{**vars(args), **json_flags}), CollectSettings)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def cli() -> None:
    """Console-script entry point."""
    run(main)
