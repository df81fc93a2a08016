"""The SLURM cluster path: profiles/slurm, the resource table (src/vlarisk/workflow/planning.py), tests/slurm/*.sh.

Without a scheduler (always run):
  * the resource callables grow with input size and attempt;
  * `--profile profiles/slurm` parses to the intended settings (and no other
    profile, e.g. the implicit workflow profile profiles/default, overrides them);
  * `snakemake -n --profile profiles/slurm` plans the tiny config with the GPU
    request on exactly the GPU rules; a layered site profile keeps it.

With a real one-node SLURM on localhost (marker `slurm`, needs root; brought up
by tests/slurm/slurm_up.sh and torn down by pid file at the end of the session):
  * the tiny pipeline runs through `--profile profiles/slurm --profile
    profiles/slurm-test`; the scheduler's own records show GPU rules submitted
    with --gres=gpu:1, CPU rules without a GPU, local rules not at all; the
    test metrics equal those of a plain local run (`--cores 2`).
If SLURM cannot be started the end-to-end test is skipped with the reason, or
fails when CI=true.  VLARISK_SLURM_KEEP=1 leaves the cluster running afterwards.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_utils import without

ROOT = Path(__file__).resolve().parents[1]
SLURM_DIR = ROOT / "tests" / "slurm"
# relative to a project copy (or absolute); a --configfile is merged over config/config.yaml
TINY_CONFIG = os.environ.get("VLARISK_SLURM_TEST_CONFIG", "tests/data/tiny_config.yaml")

GPU_RULES = {"train_model", "train_task_split", "train_ablation", "train_multi_model"}
PHYSICS_RULES = {"train_policy", "collect_rollouts"}  # CPU jobs (MuJoCo); not in the tiny config's DAG
CPU_RULES = PHYSICS_RULES | {
    "simulate_rollouts",
    "prepare_dataset",
    "score_baselines",
    "evaluate_model",
    "evaluate_task_split",
    "evaluate_ablation",
    "evaluate_multi_model",
}
CLUSTER_RULES = GPU_RULES | CPU_RULES

# wall-clock limits for the snakemake runs (seconds)
SLURM_RUN_TIMEOUT = int(os.environ.get("VLARISK_SLURM_TEST_TIMEOUT", "1200"))
LOCAL_RUN_TIMEOUT = 1200

IN_CI = os.environ.get("CI", "").strip().lower() == "true"

_SKIP_ANYWHERE = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info")
# at the top level only: environments, outputs, real (large) rollout data
_SKIP_TOP = {".venv", "venv", "results", ".snakemake", "build", "data"}


def _copy_ignore(directory: str, names: list[str]) -> set[str]:
    skip = set(_SKIP_ANYWHERE(directory, names))
    if Path(directory).resolve() == ROOT:
        skip |= _SKIP_TOP & set(names)
    return skip


# --------------------------------------------------------------------- helpers
def copy_project(dst: Path) -> Path:
    """A private copy of the workflow (no results, no .snakemake, no venv)."""
    shutil.copytree(ROOT, dst, ignore=_copy_ignore, symlinks=True)
    return dst


def write_test_config(project: Path, *, multi: bool, ablations: bool, task_splits: bool = False) -> str:
    """The tiny config, plus a multi-model group of all its sources and/or a
    one-factor, one-seed ablation grid and/or a second task split, so that every
    cluster rule is in the DAG. Returns its path relative to the project."""
    import yaml

    config = yaml.safe_load((project / TINY_CONFIG).read_text())
    sources = list(config["sources"])
    if multi and not (config.get("multi_model") or {}).get("groups"):
        config["multi_model"] = {"groups": {"all_sources": sources}}
    if ablations and not (config.get("ablations") or {}).get("factors"):
        config["ablations"] = {
            "sources": sources[:1],
            "seeds": [0],
            "factors": {"dropout": [0.25]},
        }
    if task_splits:
        config["split"] = {**config["split"], "held_out_tasks": "auto", "n_task_splits": 2}
    path = project / "slurm_test_config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path.name


def venv_env(project: Path | None = None) -> dict:
    """Environment for snakemake subprocesses: the interpreter running pytest
    (the project's venv) comes first on PATH, so rules' `python` is the venv's
    both locally and inside SLURM jobs (the plugin exports the environment).
    With `project`, its own src/ is imported instead of the editable install's."""
    env = dict(os.environ)
    if project is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project / "src"), env.get("PYTHONPATH")) if p)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    venv = Path(sys.executable).parent.parent
    if (venv / "pyvenv.cfg").exists():
        env["VIRTUAL_ENV"] = str(venv)
    env.pop("SNAKEMAKE_PROFILE", None)  # only the profiles given explicitly
    for k in [k for k in env if k.startswith("SLURM_")]:
        env.pop(k)  # not from inside an allocation
    return env


def snakemake_cmd(*args: str, timeout_s: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", *args]
    if timeout_s is not None:
        # SIGINT lets snakemake cancel its SLURM jobs; SIGKILL 30 s later if it
        # hangs (e.g. a status command that never answers)
        cmd = ["timeout", "-s", "INT", "-k", "30", str(timeout_s), *cmd]
    return cmd


def tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])


_JOB_HEADER = re.compile(r"^\s*(local)?rule (\w+):\s*$")  # indented: a member of a group job


def planned_jobs(log: str) -> list[dict]:
    """Jobs of a snakemake (dry-)run log: rule, local or not, resources."""
    jobs: list[dict] = []
    cur = None
    for line in log.splitlines():
        m = _JOB_HEADER.match(line)
        if m:
            cur = {"rule": m.group(2), "local": bool(m.group(1)), "resources": {}}
            jobs.append(cur)
            continue
        if cur is not None and line.strip().startswith("resources:"):
            for item in line.split(":", 1)[1].split(","):
                if "=" in item:
                    k, v = item.strip().split("=", 1)
                    cur["resources"][k] = v
    return jobs


def rules_of(jobs: list[dict]) -> set[str]:
    return {j["rule"] for j in jobs}


def node_memory_mb() -> int:
    out = subprocess.run(["scontrol", "show", "node", "localhost"], capture_output=True, text=True).stdout
    m = re.search(r"RealMemory=(\d+)", out)
    return int(m.group(1)) if m else 4000


def squeue_records(job_name: str) -> list[dict]:
    """All jobs (any state) with this name, as slurmctld knows them
    (finished jobs stay visible for MinJobAge=600 s)."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "--name", job_name, "-o", "%i|%k|%b|%T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    recs = []
    for line in out.splitlines():
        jobid, comment, gres, state = (x.strip() for x in line.split("|", 3))
        # comment is rule_<rule> or rule_<rule>_wildcards_<wildcards>
        rule = comment[len("rule_") :].split("_wildcards_", 1)[0]
        detail = subprocess.run(["scontrol", "-o", "show", "job", jobid], capture_output=True, text=True).stdout
        m = re.search(r"TresPerNode=(\S+)", detail)
        recs.append(
            {
                "jobid": jobid,
                "comment": comment,
                "rule": rule,
                "gres": gres,
                "tres_per_node": m.group(1) if m else "",
                "state": state,
            }
        )
    return recs


# results.json fields that measure the run, not the model: wall times, throughput
_VOLATILE = re.compile(r"(seconds|per_second|elapsed|duration|timestamp|date|host)", re.I)


stable_view = without(_VOLATILE)  # results.json without run-specific fields (timings, throughput, host)


def assert_close(a, b, where: str = "$"):
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where}: keys differ: {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if math.isnan(a) and math.isnan(b):
                return
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{where}: {a} != {b}"
        else:
            assert a == b, f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def results_files(project: Path) -> dict[str, dict]:
    files = sorted((project / "results").glob("**/results.json"))
    return {str(f.relative_to(project)): json.loads(f.read_text()) for f in files}


# ------------------------------------------------------ resource callables
def _load_resources_module() -> dict:
    """vlarisk.workflow.planning's resource callables (RESOURCE_TABLE, mem_mb_for, runtime_for), as the Snakefile imports them."""
    from vlarisk.workflow import planning

    return vars(planning)


class _FakeInput(list):
    def __init__(self, size_mb: float, n: int = 1):
        super().__init__(["x"] * n)
        self.size_mb = size_mb


@pytest.mark.parametrize("kind", ["simulate", "prepare", "train", "evaluate"])
def test_resource_callables_scale_with_input_and_attempt(kind):
    ns = _load_resources_module()
    mem, rt = ns["mem_mb_for"](kind), ns["runtime_for"](kind)
    small, big = _FakeInput(1.0), _FakeInput(2048.0)
    for f in (mem, rt):
        v1 = f(None, small, 1)
        assert isinstance(v1, int) and v1 > 0
        assert f(None, small, 2) > v1  # grows on retry
        assert f(None, small, 3) > f(None, small, 2)
        assert f(None, big, 1) >= v1  # grows with input
        assert f(None, _FakeInput(10**9), 50) <= ns["RESOURCE_TABLE"][kind][f.__name__][2]
    assert mem(None, _FakeInput(0.0, n=0), 1) == ns["RESOURCE_TABLE"][kind]["mem_mb"][0]
    with pytest.raises(ValueError):
        ns["mem_mb_for"]("no-such-kind")


def test_training_runtime_scales_with_epochs_and_the_files_inside_a_dataset_folder(tmp_path):
    """A prepared dataset is a folder (whose own entry is a few KB): its files count as input, and
    a training job's wall time grows with epochs x data; a config value replaces the formula."""
    ns = _load_resources_module()
    dataset = tmp_path / "dataset.vlarisk"
    dataset.mkdir()
    with open(dataset / "features.npy", "wb") as sparse:  # 1023 MB on paper, nothing on disk
        sparse.truncate(1023 * 2**20)
    (dataset / "meta.json").write_bytes(b"0" * 2**20)
    folder = _FakeInput(0.004)
    folder[:] = [str(dataset)]
    base, per_epoch_gb, _ = ns["RESOURCE_TABLE"]["train"]["runtime"]
    for epochs in (1, 20, 50):
        runtime = ns["runtime_for"]("train", epochs=lambda wildcards, n=epochs: n)
        minutes = base + per_epoch_gb * epochs * (0.004 + 1024.0) / 1024  # plain recomputation
        assert runtime(None, folder, 1) == int(minutes)
        assert runtime(None, folder, 2) == int(2 * minutes)
        cell = ns["runtime_for"]("train", epochs=lambda wildcards, n=epochs: n, runs=3)  # an ablation cell's three seeds
        assert cell(None, folder, 1) == int(3 * minutes)
    assert ns["runtime_for"]("train", epochs=lambda wildcards: 1, override=600)(None, folder, 2) == 1200
    assert ns["mem_mb_for"]("train", override=16000)(None, folder, 1) == 16000


# ------------------------------------------------ profile without a scheduler
@pytest.mark.slow
def test_slurm_profile_effective_settings(monkeypatch, tmp_path):
    """What `--profile profiles/slurm` really sets, after Snakemake has merged in
    every other profile it loads (notably the implicit workflow profile
    profiles/default, which overrides --profile key by key)."""
    from snakemake.cli import parse_args

    project = copy_project(tmp_path / "proj")
    monkeypatch.chdir(project)
    monkeypatch.delenv("SNAKEMAKE_PROFILE", raising=False)
    _, args = parse_args(["--profile", "profiles/slurm", "all"])
    # plain values, so that a failure does not print the whole argparse Namespace
    executor, jobs, retries = args.executor, args.jobs, args.retries
    latency_wait, max_threads = args.latency_wait, args.max_threads
    keep_logs = args.slurm_keep_successful_logs

    assert executor == "slurm"
    assert jobs and jobs >= 10
    assert retries >= 1
    # shared file systems: 5 s (Snakemake's default) is too short for NFS
    assert latency_wait >= 30, f"latency-wait={latency_wait}: another profile (profiles/default?) overrides profiles/slurm"
    # a `cores` anywhere caps each cluster job's threads (--cpus-per-task) at that number, `all` at
    # the login node's CPU count: the workflow profile, loaded after every --profile, sets none
    assert args.cores is None, f"cores={args.cores}: caps cluster jobs' threads"
    assert max_threads is None
    assert keep_logs is True
    gres = {rule: getattr(res.get("gres"), "raw", None) for rule, res in (args.set_resources or {}).items()}
    for rule in GPU_RULES:
        assert gres.get(rule) == "gpu:1", f"{rule}: {gres.get(rule)!r}"
    for rule, res in (args.set_resources or {}).items():
        assert not ("gres" in res and "gpu" in res), f"{rule}: both gres and gpu"
        if rule in CPU_RULES:
            assert "gres" not in res and "gpu" not in res


def _dry_run(project: Path, *profile_args: str) -> str:
    """Dry run of the `paper` target (every rule) on the extended tiny config."""
    config = write_test_config(project, multi=True, ablations=True, task_splits=True)
    proc = subprocess.run(
        # targets before --configfile, which takes every word up to the next option
        snakemake_cmd("paper", *profile_args, "-n", "--configfile", config),
        cwd=project,
        env=venv_env(project),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, tail(out)
    return out


@pytest.mark.slow
def test_slurm_profile_dry_run_plans_gpu_rules(tmp_path):
    """`snakemake -n --profile profiles/slurm` needs the executor plugin but no
    SLURM; the plan holds the GPU rules, each with gres=gpu:1, and no CPU rule
    asks for a GPU."""
    project = copy_project(tmp_path / "proj")
    out = _dry_run(project, "--profile", "profiles/slurm")
    jobs = planned_jobs(out)
    assert jobs, tail(out)
    planned = rules_of(jobs)
    assert CLUSTER_RULES - PHYSICS_RULES <= planned, sorted(CLUSTER_RULES - PHYSICS_RULES - planned)  # no physics source in the tiny config
    for j in jobs:
        if j["rule"] in GPU_RULES:
            assert j["resources"].get("gres") == "gpu:1", j
            assert "gpu" not in j["resources"], j
        else:
            assert "gres" not in j["resources"] and "gpu" not in j["resources"], j
    # a dry run must not have produced anything
    assert not (project / "results" / "models").exists()


@pytest.mark.slow
def test_site_profile_layering_keeps_gpu_request(tmp_path):
    """The documented site layering (docs/cluster.md): a later profile replaces
    whole keys, so the example site profile repeats the GPU requests."""
    project = copy_project(tmp_path / "proj")
    out = _dry_run(
        project,
        "--profile",
        "profiles/slurm",
        "--profile",
        "profiles/slurm-site-example",
    )
    jobs = planned_jobs(out)
    assert GPU_RULES <= rules_of(jobs), tail(out)
    for j in jobs:
        if j["rule"] in GPU_RULES:
            assert j["resources"].get("gres") == "gpu:a100:1", j
            assert j["resources"].get("slurm_partition") == "gpu", j
        elif j["rule"] in CPU_RULES:
            assert "gres" not in j["resources"], j
            assert j["resources"].get("slurm_partition") == "cpu", j
            assert j["resources"].get("slurm_account") == "myproject", j


_RULE_PLACEMENT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings(quiet=None)) as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(),
        config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])]),
        snakefile=Path("Snakefile"),
        workdir=Path("."),
    )._workflow
    print(json.dumps({
        rule.name: {"local": rule.name in workflow._localrules,
                    "resources": sorted(rule.resources.keys())}
        for rule in workflow.rules
    }))
"""


@pytest.mark.slow
def test_every_rule_is_local_or_a_sized_cluster_rule(tmp_path):
    """No cheap rule goes to SLURM by mistake (it must be in `localrules`), and
    every cluster rule declares its memory and wall time (planning.RESOURCE_TABLE)."""
    project = copy_project(tmp_path / "proj")
    config = write_test_config(project, multi=True, ablations=True)
    proc = subprocess.run(
        [sys.executable, "-c", _RULE_PLACEMENT, config],
        cwd=project,
        env=venv_env(project),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, tail(proc.stdout + proc.stderr)
    rules = json.loads(proc.stdout.strip().splitlines()[-1])
    assert CLUSTER_RULES <= rules.keys(), sorted(CLUSTER_RULES - rules.keys())
    for name, info in rules.items():
        if name in CLUSTER_RULES:
            assert not info["local"], f"{name} is a localrule but needs the cluster"
            assert {"mem_mb", "runtime"} <= set(info["resources"]), (name, info)
        else:
            assert info["local"], f"{name} is neither in localrules nor a cluster rule"


# ------------------------------------------------------------- real SLURM
@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node SLURM (tests/slurm/slurm_up.sh), stopped at the end
    of the session by pid file (tests/slurm/slurm_down.sh)."""

    def unavailable(reason: str):
        if IN_CI:
            pytest.fail(f"SLURM is required in CI (CI=true) but unavailable: {reason}")
        pytest.skip(f"no local SLURM: {reason}")

    if os.geteuid() != 0:
        unavailable("tests/slurm/slurm_up.sh must run as root")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        unavailable("neither SLURM nor apt-get to install it")
    if shutil.which("timeout") is None:
        unavailable("coreutils `timeout` missing")
    try:
        up = subprocess.run(
            ["bash", str(SLURM_DIR / "slurm_up.sh")],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        unavailable("slurm_up.sh did not finish within 600 s")
    if up.returncode != 0:
        unavailable(f"slurm_up.sh failed (rc={up.returncode}):\n{tail(up.stderr, 30)}")
    try:
        yield {"up_log": up.stderr + up.stdout}
    finally:
        if os.environ.get("VLARISK_SLURM_KEEP") != "1":
            down = subprocess.run(
                ["bash", str(SLURM_DIR / "slurm_down.sh")],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if down.returncode != 0:
                print("slurm_down.sh failed:\n" + down.stderr, file=sys.stderr)


@pytest.mark.slurm
@pytest.mark.slow
def test_tiny_pipeline_through_real_slurm(slurm_cluster, tmp_path):
    slurm_proj = copy_project(tmp_path / "on_slurm")
    local_proj = copy_project(tmp_path / "local")
    # the tiny config with a multi-model group: all of `all`'s rules, each GPU kind
    config = write_test_config(slurm_proj, multi=True, ablations=False)
    shutil.copy(slurm_proj / config, local_proj / config)
    config_args = ("--configfile", config)  # after the targets: it takes every word

    # the local reference run shares the machine with the SLURM run; start it
    # first, it mostly overlaps with the plugin's polling waits
    local_log = tmp_path / "local.log"
    with open(local_log, "w") as fh:
        local = subprocess.Popen(
            snakemake_cmd(
                "all",
                "--cores",
                "2",
                *config_args,
                timeout_s=LOCAL_RUN_TIMEOUT,
            ),
            cwd=local_proj,
            env=venv_env(local_proj),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )

    # per-job memory cap that fits the test node (replaces slurm-test's value)
    mem_cap = max(1000, min(node_memory_mb() - 256, 16000))
    slurm_args = [
        "all",
        "--profile",
        "profiles/slurm",
        "--profile",
        "profiles/slurm-test",
        *config_args,
        "--resources",
        f"mem_mb={mem_cap}",
        "--verbose",  # logs each sbatch call
    ]
    t0 = time.monotonic()
    slurm = subprocess.run(
        snakemake_cmd(*slurm_args, timeout_s=SLURM_RUN_TIMEOUT),
        cwd=slurm_proj,
        env=venv_env(slurm_proj),
        capture_output=True,
        text=True,
    )
    slurm_wall = time.monotonic() - t0
    log = slurm.stdout + slurm.stderr
    (tmp_path / "slurm.log").write_text(log)
    print(f"SLURM run: {slurm_wall:.0f} s, log {tmp_path / 'slurm.log'}")

    try:
        local.wait(timeout=LOCAL_RUN_TIMEOUT + 60)
    finally:
        if local.poll() is None:
            local.kill()
    local_out = local_log.read_text()

    assert slurm.returncode == 0, f"SLURM run failed (rc={slurm.returncode}; 124/137 = timeout)\n{tail(log, 80)}"
    assert local.returncode == 0, f"local run failed\n{tail(local_out, 80)}"

    # ---- what the scheduler saw
    m = re.search(r"SLURM run ID: (\S+)", log)
    assert m, "no 'SLURM run ID' in the log"
    records = squeue_records(m.group(1))
    submitted_ids = set(re.findall(r"submitted with SLURM jobid (\d+)", log))
    assert records, f"slurmctld has no jobs named {m.group(1)}"
    assert {r["jobid"] for r in records} == submitted_ids
    for r in records:
        assert r["state"] == "COMPLETED", r
        assert r["rule"] in CLUSTER_RULES, f"non-cluster rule went to SLURM: {r}"
        if r["rule"] in GPU_RULES:
            assert "gpu:1" in r["gres"] and "gpu:1" in r["tres_per_node"], r
        else:
            assert "gpu" not in r["gres"] and "gpu" not in r["tres_per_node"], r
    submitted_rules = {r["rule"] for r in records}
    # the real run plans no ablation, second task split or physics source (the dry runs above do)
    expected = CLUSTER_RULES - {"train_ablation", "evaluate_ablation", "train_task_split", "evaluate_task_split"} - PHYSICS_RULES
    assert submitted_rules == expected, sorted(submitted_rules)

    # the sbatch lines the plugin issued agree
    calls = [ln for ln in log.splitlines() if ln.startswith("sbatch call: ")]
    assert len(calls) == len(records)
    for call in calls:
        comment = re.search(r"--comment (\S+)", call).group(1).strip("'\"")
        rule = comment[len("rule_") :].split("_wildcards_", 1)[0]
        if rule in GPU_RULES:
            assert "--gres=gpu:1" in call and "--gpus" not in call, call
        else:
            assert "--gres" not in call and "--gpus" not in call, call

    # local rules ran, on this host
    ran = planned_jobs(log)
    local_ran = {j["rule"] for j in ran if j["local"]}
    assert "all" in local_ran
    assert not (local_ran & submitted_rules)
    assert {j["rule"] for j in ran if not j["local"]} == submitted_rules

    # SLURM's own per-job logs are where the profile says
    for r in records:
        logs = list((slurm_proj / "results" / "logs" / "slurm").glob(f"rule_{r['rule']}/**/{r['jobid']}.log"))
        assert logs, f"no SLURM log for job {r['jobid']} ({r['rule']})"

    # ---- same numbers as the local run
    on_slurm, on_local = results_files(slurm_proj), results_files(local_proj)
    assert any(k.startswith("results/models/") for k in on_slurm), sorted(on_slurm)
    assert on_slurm.keys() == on_local.keys()
    for name in on_slurm:
        # same code, data, seeds and thread count: the test metrics are identical
        assert "test_metrics" in on_slurm[name], sorted(on_slurm[name])
        assert on_slurm[name]["test_metrics"] == on_local[name]["test_metrics"], name
        # and so is everything else but timings (floats compared to 1e-6)
        assert_close(stable_view(on_slurm[name]), stable_view(on_local[name]), name)


# ------------------------------------------- a killed training job resumes on retry
RESUME_EPOCHS = 30
RESUME_RUN_TIMEOUT = int(os.environ.get("VLARISK_SLURM_RESUME_TIMEOUT", "240"))


def running_jobs_of_rule(rule: str) -> list[str]:
    """Ids of this cluster's running jobs of ``rule`` (by the plugin's --comment rule_<rule>...)."""
    out = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i|%k"], capture_output=True, text=True, check=True).stdout
    return [
        jobid.strip()
        for jobid, comment in (line.split("|", 1) for line in out.splitlines())
        if comment.strip().startswith(f"rule_{rule}_wildcards_") or comment.strip() == f"rule_{rule}"
    ]


@pytest.mark.slurm
def test_training_job_killed_on_slurm_resumes_from_the_last_finished_epoch(slurm_cluster, tmp_path):
    """scancel a train_model job after its second epoch; Snakemake's retry (--retries 1) continues
    from the resume state outside the declared outputs, which Snakemake deleted, not from epoch 1."""
    import yaml

    project = copy_project(tmp_path / "resume")
    config = yaml.safe_load((project / TINY_CONFIG).read_text())
    # epochs of a fraction of a second: long enough to be caught in the middle of training
    config["training"].update(epochs=RESUME_EPOCHS, patience=0, batch_size=32, hidden_dims=[64])  # every epoch runs
    (project / "resume_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    config_args = ("--configfile", "resume_config.yaml")
    source = next(iter(config["sources"]))
    model, state = project / "results" / "models" / source, project / "results" / ".resume" / "train_model" / source
    rule_log = project / "results" / "logs" / "train_model" / f"{source}.log"

    # the data locally (not the point here), then only the training job through SLURM
    inputs = [f"results/datasets/{source}/dataset.vlarisk", f"results/splits/{source}.json"]
    prep = subprocess.run(
        snakemake_cmd(*inputs, "--cores", "2", *config_args, timeout_s=LOCAL_RUN_TIMEOUT),
        cwd=project,
        env=venv_env(project),
        capture_output=True,
        text=True,
    )
    assert prep.returncode == 0, tail(prep.stdout + prep.stderr)
    mem_cap = max(1000, min(node_memory_mb() - 256, 16000))
    slurm_log = tmp_path / "slurm.log"
    with open(slurm_log, "w") as fh:
        run = subprocess.Popen(
            snakemake_cmd(
                f"results/models/{source}/best_model.pt",
                "--profile",
                "profiles/slurm",
                "--profile",
                "profiles/slurm-test",
                "--retries",
                "1",
                "--resources",
                f"mem_mb={mem_cap}",
                *config_args,
                timeout_s=RESUME_RUN_TIMEOUT,
            ),
            cwd=project,
            env=venv_env(project),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        # wait for the job's second finished epoch, then kill the job as the scheduler would
        while not (rule_log.exists() and re.search(r"^epoch +2/", rule_log.read_text(), re.M)):
            assert run.poll() is None, f"snakemake ended before epoch 2 (rc={run.returncode})\n{tail(slurm_log.read_text())}"
            time.sleep(0.2)
        (first,) = running_jobs_of_rule("train_model")
        subprocess.run(["scancel", first], check=True)
        while first in running_jobs_of_rule("train_model"):
            time.sleep(0.2)
        # the last epoch the killed job finished (read before the retry can start: the plugin
        # needs several seconds to notice the failure and resubmit)
        retry_started = bool(running_jobs_of_rule("train_model"))
        killed_at = int(read_checkpoint(state / "latest.pt")["epoch"])
        run.wait(timeout=RESUME_RUN_TIMEOUT + 60)
    finally:
        if run.poll() is None:
            run.kill()
    log = slurm_log.read_text()
    assert run.returncode == 0, f"SLURM run failed (rc={run.returncode}; 124/137 = timeout)\n{tail(log, 80)}"

    # the scheduler saw the killed job and its retry
    m = re.search(r"SLURM run ID: (\S+)", log)
    assert m, "no 'SLURM run ID' in the log"
    states = {r["jobid"]: r["state"] for r in squeue_records(m.group(1)) if r["rule"] == "train_model"}
    assert states[first] == "CANCELLED" and sorted(states.values()) == ["CANCELLED", "COMPLETED"], states

    # the retry continued from the last finished epoch, not from epoch 1
    resumed = re.search(r"^resumed from (\S+) at epoch (\d+)$", rule_log.read_text(), re.M)
    assert resumed, f"the retry did not resume:\n{tail(rule_log.read_text(), 20)}"
    assert Path(resumed.group(1)) == Path("results/.resume/train_model") / source / "latest.pt"
    epoch = int(resumed.group(2))
    assert 2 < epoch <= RESUME_EPOCHS
    if not retry_started:
        assert epoch == killed_at + 1
    trained_again = [int(e) for e in re.findall(r"^epoch +(\d+)/", rule_log.read_text(), re.M)]
    assert trained_again == list(range(epoch, RESUME_EPOCHS + 1))
    latest = read_checkpoint(model / "latest.pt")
    assert latest["epoch"] == RESUME_EPOCHS and len(latest["history"]["train_loss"]) == RESUME_EPOCHS
    assert (model / "best_model.pt").exists()
    assert not state.exists(), "the finished job left its resume state"


def read_checkpoint(path: Path) -> dict:
    from vlarisk.data.documents import read_checkpoint as read

    return read(path)
