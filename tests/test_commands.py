"""Commands' own checks: vlarisk-prepare's output name, and vlarisk-run's checks of snakemake's arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vlarisk.commands import run as run_command
from vlarisk.commands.prepare import main as prepare_main
from vlarisk.core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["ds.npz", "ds", "ds.pt"])
def test_prepare_refuses_an_output_name_that_says_another_form(tmp_path, name):
    with pytest.raises(
        InputError, match=rf"^--output {tmp_path / name}: the name must end in the form to write \(\.vlarisk: a dataset folder; "
    ):
        prepare_main(["--success", str(tmp_path / "s.pkl"), "--failure", str(tmp_path / "f.pkl"), "--output", str(tmp_path / name)])
    assert not (tmp_path / name).exists()


def test_split_refuses_an_output_name_that_is_not_json(tmp_path):
    from vlarisk.commands.split import main as split_main

    with pytest.raises(InputError, match=rf"^--output {tmp_path / 'split.npz'}: a split is written as JSON: give a name ending in .json$"):
        split_main(["--data", str(tmp_path / "missing.vlarisk"), "--output", str(tmp_path / "split.npz")])
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------ vlarisk-run
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["all", "--config", "training={epochs: 3}", "compare"], ["--config compare: not a key=value pair"]),
        (["--configfile", "nofile.yaml", "-n"], ["--configfile nofile.yaml: no such file"]),
        (["--configfile=nofile.yaml"], ["--configfile nofile.yaml: no such file"]),
        (["-C", "a=1", "paper", "-n"], ["--config paper: not a key=value pair"]),
        (["compare", "--config", "training={epochs: 3}", "split={seed: 1}", "-n"], []),
        (["--configfile", "pyproject.toml", "--cores", "2", "all"], []),
    ],
)
def test_run_catches_what_snakemake_reports_with_a_traceback(argv, expected, monkeypatch):
    monkeypatch.chdir(ROOT)
    problems = run_command.argument_problems(argv)
    assert [problem.split(";")[0] for problem in problems] == expected


def test_run_adds_this_checkouts_snakefile_unless_given():
    assert run_command.snakemake_command(["-n"])[-3:] == ["-s", str(ROOT / "Snakefile"), "-n"]
    assert run_command.snakemake_command(["-s", "other/Snakefile", "-n"])[-3:] == ["-s", "other/Snakefile", "-n"]


def test_run_finds_the_checkouts_profiles_from_any_directory(tmp_path, monkeypatch):
    """From a scratch directory, `--profile slurm` is the checkout's profiles/slurm; a folder of that
    name here, and any other value, is left as given."""
    monkeypatch.chdir(tmp_path)
    slurm = str(ROOT / "profiles" / "slurm")
    command = run_command.snakemake_command(["--profile", "slurm", "--profile=slurm-test", "--profile", "mysite", "all"])
    assert command[-6:] == ["--profile", slurm, f"--profile={ROOT / 'profiles' / 'slurm-test'}", "--profile", "mysite", "all"]
    (tmp_path / "slurm").mkdir()
    assert run_command.snakemake_command(["--profile", "slurm"])[-2:] == ["--profile", "slurm"]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["all", "--cores", "2"], {None: ["all", "--cores", "2"]}),
        (
            ["all", "--experiments", "a,b", "--cores", "2"],
            {"a": ["all", "--cores", "2", "--config", "experiment=a"], "b": ["all", "--cores", "2", "--config", "experiment=b"]},
        ),
        (
            ["compare", "--config", "training={epochs: 3}", "--experiments=a"],
            {"a": ["compare", "--config", "experiment=a", "training={epochs: 3}"]},
        ),
        (
            ["all", "--config", "experiments_to_run=[a, b]", "split={seed: 1}"],
            {"a": ["all", "--config", "experiment=a", "split={seed: 1}"], "b": ["all", "--config", "experiment=b", "split={seed: 1}"]},
        ),
        (["all", "--config=experiments_to_run=a", "-n"], {"a": ["all", "--config", "experiment=a", "-n"]}),
    ],
)
def test_run_runs_each_named_experiment(argv, expected):
    """--experiments a,b: one snakemake run per experiment, its name added to the --config values
    (a second --config would replace the first, so it joins the one given)."""
    assert run_command.experiment_runs(argv) == expected


def test_run_refuses_an_empty_experiments_option():
    with pytest.raises(InputError, match="--experiments: give the experiments' names"):
        run_command.experiment_runs(["all", "--experiments"])
    with pytest.raises(InputError, match=r"^--config experiments_to_run=\{a: 1\}: expected a list of experiment names"):
        run_command.experiment_runs(["all", "--config", "experiments_to_run={a: 1}"])


def test_run_prints_one_line_and_starts_nothing(tmp_path):
    command = [sys.executable, "-c", "from vlarisk.commands.run import cli; cli()", "all", "--config", "training={epochs: 3}", "compare"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and not list(tmp_path.iterdir())
    assert result.stderr.splitlines() == [
        "error: --config compare: not a key=value pair; --config takes every value up to the next option, "
        "so put targets before it: snakemake compare --config ..."
    ]
