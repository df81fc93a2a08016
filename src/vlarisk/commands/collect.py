"""``vlarisk-collect``: train a policy (or load one) and collect a physics source's rollout pickles."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from vlarisk.core.cli import ArgumentParser, log, run
from vlarisk.core.errors import InputError
from vlarisk.core.spec_options import json_object
from vlarisk.physics.env import ENVIRONMENTS, check_tasks
from vlarisk.physics.perturbations import DEFAULT_MIX, check_mix


def parser() -> ArgumentParser:
    """The command's flags (shared by ``train_policy`` mode and collection)."""
    p = ArgumentParser(description=__doc__)
    p.add_argument("--env", default="metaworld", choices=ENVIRONMENTS, help="simulator")
    p.add_argument("--tasks", nargs="+", required=True, help="MetaWorld v3 tasks, e.g. pick-place-v3 push-v3")
    p.add_argument("--episodes", type=int, default=200, help="episodes in all, split evenly over the tasks")
    p.add_argument("--seed", type=int, default=0, help="seeds the policy's demos and training, the faults and the episodes")
    p.add_argument(
        "--out",
        required=True,
        help="output folder: success_rollouts.pkl, failure_rollouts.pkl, collection.json (and policy.pt when trained here)",
    )
    p.add_argument("--policy", help="a policy checkpoint from --train-only (default: train one into OUT/policy.pt)")
    p.add_argument("--train-only", action="store_true", help="only train the policy and write OUT/policy.pt")
    p.add_argument("--horizon", type=int, default=150, help="step limit of an episode")
    p.add_argument(
        "--mix", default=json.dumps(DEFAULT_MIX), help="JSON fault mix: kind -> weight (none, action_noise, perception_bias, gripper_open)"
    )
    p.add_argument("--max-labelled-failures", type=int, default=60, help="failures per task that get t* and blame (others are left out)")
    p.add_argument("--workers", type=int, default=2, help="worker processes for episodes and counterfactual replays")
    p.add_argument("--policy-settings", default="{}", help="JSON object of PolicySettings fields (demos_per_task, epochs, ...)")
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    # torch and the collection code load after parsing: --help and usage errors come at once
    from vlarisk.physics.collect import POLICY_FILE, CollectionSettings, collect, load_checkpoint
    from vlarisk.physics.policy import PolicySettings, save_policy, train_policy

    tasks = check_tasks(args.tasks, args.env)
    if args.episodes < 1 or args.horizon < 2:
        raise InputError(f"--episodes must be >= 1 and --horizon >= 2 (got {args.episodes}, {args.horizon})")
    mix = check_mix(json_object(args.mix, "--mix"))
    out = Path(args.out)
    if args.policy:
        checkpoint = load_checkpoint(args.policy)
    else:
        overrides = json_object(args.policy_settings, "--policy-settings")
        unknown = sorted(set(overrides) - {f.name for f in fields(PolicySettings)})
        if unknown:
            raise InputError(f"--policy-settings: unknown fields {unknown}; expected some of {[f.name for f in fields(PolicySettings)]}")
        settings = PolicySettings(**{"seed": args.seed, "horizon": args.horizon, **overrides})
        checkpoint = train_policy(tasks, settings, log)
        out.mkdir(parents=True, exist_ok=True)
        save_policy(checkpoint, out / POLICY_FILE)
        log(f"trained the policy in {checkpoint['train_seconds']:.1f} s on {checkpoint['demo_steps']} demo steps: {out / POLICY_FILE}")
        if args.train_only:
            return
    settings = CollectionSettings(tuple(tasks), args.episodes, args.seed, args.horizon, mix, args.max_labelled_failures, args.workers)
    summary = collect(settings, checkpoint, out, log)
    log(f"collected {args.episodes} episodes in {summary['wall_seconds']:.1f} s, failure rate {summary['failure_rate']:.2f}: {out}")


def cli() -> None:
    """Console-script entry point."""
    run(main)
