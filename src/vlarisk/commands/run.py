"""Run the pipeline: ``snakemake`` on this checkout's Snakefile, with its arguments checked first.

``vlarisk-run [snakemake arguments]`` is ``snakemake -s <checkout>/Snakefile [arguments]`` (no
``-s`` is added when one is given). ``--profile NAME`` names one of the checkout's profiles
(``slurm``, ``slurm-test``, ...) from any working directory: it becomes
``--profile <checkout>/profiles/NAME`` unless NAME is a folder here. ``--experiments a,b`` runs
Snakemake once per named experiment of the config (``--config experiment=a``, then ``b``; also
given as ``--config 'experiments_to_run=[a, b]'``), the
same targets each time, stopping at the first that fails; experiments that change no data
settings share the plain run's prepared datasets and splits, so only their training and later
steps run. Two mistakes that Snakemake reports only with a long traceback,
before the Snakefile is read, are caught here in one line each: a ``--configfile`` that does not
exist, and a target written after ``--config`` (whose values run to the next option, so
``--config 'training={epochs: 3}' compare`` reads ``compare`` as a config value).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vlarisk.core.cli import run
from vlarisk.core.errors import InputError
from vlarisk.workflow.config_checks import EXPERIMENTS_TO_RUN  # --experiments given as --config 'experiments_to_run=[a, b]'

SNAKEFILE = Path(__file__).resolve().parents[3] / "Snakefile"  # src/vlarisk/commands/ -> the checkout
PROFILES = SNAKEFILE.parent / "profiles"
PROFILE_OPTION = "--profile"
EXPERIMENTS_OPTION = "--experiments"
CONFIG_FILE_OPTIONS = ("--configfile", "--configfiles")
CONFIG_OPTIONS = ("--config", "-C")
SNAKEFILE_OPTIONS = ("-s", "--snakefile")


def option_values(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """The values given to any of ``options``: ``--opt a b``, up to the next option, and ``--opt=a``."""
    values, taking = [], False
    for token in argv:
        name, has_value, value = token.partition("=")
        if token.startswith("-"):
            taking = token in options
            if name in options and has_value and name.startswith("--"):
                values.append(value)
        elif taking:
            values.append(token)
    return values


def argument_problems(argv: list[str]) -> list[str]:
    """One line per missing config file and per ``--config`` value that is not ``key=value``."""
    problems = [f"--configfile {path}: no such file" for path in option_values(argv, CONFIG_FILE_OPTIONS) if not Path(path).is_file()]
    for value in option_values(argv, CONFIG_OPTIONS):
        if "=" not in value:
            problems.append(
                f"--config {value}: not a key=value pair; --config takes every value up to the next option, "
                f"so put targets before it: snakemake {value} --config ..."
            )
    return problems


def checkout_profile(name: str) -> str:
    """A --profile value: a folder here as given, else the checkout's profiles/<name> when it exists."""
    if Path(name).is_dir() or not (PROFILES / name).is_dir():
        return name
    return str(PROFILES / name)


def with_checkout_profiles(argv: list[str]) -> list[str]:
    """``argv`` with each ``--profile NAME`` (or ``--profile=NAME``) resolved by :func:`checkout_profile`."""
    resolved, previous = [], None
    for token in argv:
        if previous == PROFILE_OPTION:
            token = checkout_profile(token)
        elif token.startswith(PROFILE_OPTION + "="):
            token = f"{PROFILE_OPTION}={checkout_profile(token.partition('=')[2])}"
        resolved.append(token)
        previous = token
    return resolved


def config_key(token: str) -> str:
    """The key of a ``--config`` value (``key=value`` or ``--config=key=value``)."""
    return token.removeprefix("--config=").partition("=")[0]


def listed_experiments(value: str) -> list[str]:
    """The names of a ``--config experiments_to_run=[a, b]`` value (a YAML list, or one name)."""
    import yaml  # only when the value is given: --help stays fast

    try:
        names = yaml.safe_load(value)
    except yaml.YAMLError:
        names = None
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise InputError(
            f"--config {EXPERIMENTS_TO_RUN}={value}: expected a list of experiment names, e.g. '{EXPERIMENTS_TO_RUN}=[lr_small, wide]'"
        )
    return names


def experiment_runs(argv: list[str]) -> dict[str | None, list[str]]:
    """Experiment name -> its argument list, for each named by ``--experiments a,b`` or by the
    ``--config`` value ``experiments_to_run=[a, b]`` (taken out, ``experiment=<name>`` added to the
    ``--config`` values); ``{None: argv}`` without them."""
    names, rest, taking, in_config = [], [], False, False
    for token in argv:
        if token.startswith("-"):
            in_config = token in CONFIG_OPTIONS or token.startswith("--config=")
        if taking:
            names += [name for name in token.split(",") if name]
            taking = False
        elif token == EXPERIMENTS_OPTION:
            taking = True
        elif token.startswith(EXPERIMENTS_OPTION + "="):
            names += [name for name in token.partition("=")[2].split(",") if name]
        elif in_config and config_key(token) == EXPERIMENTS_TO_RUN:
            names += listed_experiments(token.removeprefix("--config=").partition("=")[2])
            if token.startswith("--config="):
                rest.append("--config")
        else:
            rest.append(token)
    if taking or (EXPERIMENTS_OPTION in argv and not names):
        raise InputError(f"{EXPERIMENTS_OPTION}: give the experiments' names, comma-separated: {EXPERIMENTS_OPTION} lr_small,wide")
    if not names:
        return {None: argv}
    where = next((i for i, token in enumerate(rest) if token in CONFIG_OPTIONS or token.startswith("--config=")), None)
    if where is None:
        return {name: [*rest, "--config", f"experiment={name}"] for name in names}
    return {name: [*rest[: where + 1], f"experiment={name}", *rest[where + 1 :]] for name in names}


def snakemake_command(argv: list[str]) -> list[str]:
    """The snakemake command line: this checkout's Snakefile unless ``-s`` is given."""
    given = any(token in SNAKEFILE_OPTIONS or token.startswith("--snakefile=") for token in argv)
    if not given and not SNAKEFILE.is_file():
        raise InputError(
            f"{SNAKEFILE}: not found; vlarisk-run needs the package installed from a checkout (pip install -e .), or -s <Snakefile>"
        )
    return [sys.executable, "-m", "snakemake", *([] if given else ["-s", str(SNAKEFILE)]), *with_checkout_profiles(argv)]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv in (["-h"], ["--help"]):
        print(f"usage: vlarisk-run [snakemake arguments]\n\n{__doc__.strip()}\n\nSnakemake's arguments: snakemake --help")
        sys.exit(0)  # as argparse's --help
    runs = experiment_runs(argv)
    problems = argument_problems(next(iter(runs.values())))
    if problems:
        raise InputError("\n".join(problems))
    if None in runs:
        command = snakemake_command(runs[None])
        os.execv(command[0], command)
    for number, (name, run_argv) in enumerate(runs.items(), 1):
        print(f"vlarisk-run: experiment {name} ({number} of {len(runs)})", file=sys.stderr, flush=True)
        done = subprocess.run(snakemake_command(run_argv))
        if done.returncode:
            sys.exit(done.returncode)
    print(f"vlarisk-run: {len(runs)} experiments done; compare them with: vlarisk-compare results", file=sys.stderr)


def cli() -> None:
    """Console entry point ``vlarisk-run``: :func:`main` with plain error reporting (:func:`vlarisk.core.cli.run`)."""
    run(main)
