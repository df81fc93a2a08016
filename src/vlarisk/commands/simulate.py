"""Write synthetic success/failure rollout pickles with a planted risk signal (the embedded default)."""

from vlarisk.core.cli import ArgumentParser, log, run
from vlarisk.core.spec_options import dataclass_from_json
from vlarisk.data.synthetic import SimulationSpec, write_synthetic_source


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--success", required=True, help="output success_rollouts.pkl")
    parser.add_argument("--failure", required=True, help="output failure_rollouts.pkl")
    parser.add_argument("--planting", required=True, help="output .npz recording the planted directions")
    parser.add_argument(
        "--spec",
        default="{}",
        help="JSON object of a simulate block's keys (hidden_dim, num_failure, ...; docs/settings.md); the others keep their defaults",
    )
    args = parser.parse_args(argv)
    spec = dataclass_from_json(SimulationSpec, args.spec, "--spec")
    write_synthetic_source(spec, args.success, args.failure, args.planting)
    log(f"wrote {spec.num_success} successful and {spec.num_failure} failed rollouts ({spec.hidden_dim}-D hidden states)")


def cli() -> None:
    """Console entry point ``vlarisk-simulate``: :func:`main` with plain error reporting (:func:`vlarisk.core.cli.run`)."""
    run(main)
