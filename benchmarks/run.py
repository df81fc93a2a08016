#!/usr/bin/env python
"""Benchmark preparation, training and evaluation against naive baselines, in one invocation.

    python benchmarks/run.py --scale 0.05                       # smoke run, about a minute
    python benchmarks/run.py --scale 0.25 1 4 --stages prepare train evaluate
    python benchmarks/run.py --stages dryrun                    # Snakemake planning time only

Scale 1 is the real "seed0" pool: 200 successes (~97 steps) + 374 failures (220 steps) = ~101,700
steps of 4096-D hidden states (1.7 GB), pickles of ~0.4 + 1.6 GB. Every implementation runs in its
own subprocess (``benchmarks/stages.py``); its peak memory is the kernel's high-water mark of that
process (``ru_maxrss``) and, sampled every 0.1 s, the summed PSS of its process tree (DataLoader
workers included, shared pages counted once). Rollouts are generated under ``--workdir`` (default: a
fresh directory in /tmp) and deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GiB = 1024**3

TRAIN_IMPLS = ["dataloader", "bare", "project", "bare-bf16", "project-bf16", "project-fit"]
IMPLS = {
    "prepare": ["reference", "naive", "load-only", "project", "project-nosync", "project-perstep"],
    "train": TRAIN_IMPLS,
    "train3": ["reference", "reference-tuned", "project", "project-perstep"],
    "evaluate": ["naive", "project"],
}
BASELINE = {"prepare": "reference", "train": "dataloader", "train3": "reference", "evaluate": "naive"}
# rows that need the reference's memory (several times the pickles'): skipped above --skip-reference-above
MEMORY_HUNGRY = {("prepare", "reference"), ("prepare", "naive"), ("train3", "reference")}


def bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older torch
        return False


def _read_pss_rss(pid: int) -> tuple[int, int]:
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return pss, rss


class TreeMemorySampler(threading.Thread):
    """Peak summed PSS and RSS of a process and all its descendants, sampled every ``interval``."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_pss = self.peak_rss = 0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._halt.is_set():
            try:
                pids = [self.pid] + [child.pid for child in root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            pss = rss = 0
            tick = time.perf_counter()
            for pid in pids:
                p, r = _read_pss_rss(pid)
                pss, rss = pss + p, rss + r
            self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)
            # reading smaps of a multi-GB process costs time: keep the sampler under ~10% of a core
            self._halt.wait(max(self.interval, 10 * (time.perf_counter() - tick)))

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_stage(stage: str, impl: str, workdir: Path, args) -> dict:
    result = workdir / f"result-{stage}-{impl}.json"
    result.unlink(missing_ok=True)
    command = [
        sys.executable,
        str(HERE / "stages.py"),
        stage,
        impl,
        "--workdir",
        str(workdir),
        "--result",
        str(result),
        "--scale",
        str(args.current_scale),
        "--hidden-dim",
        str(args.hidden_dim),
        "--batch-size",
        str(args.batch_size),
        "--train-steps",
        str(args.train_steps),
        "--threads",
        str(args.threads),
        "--epochs",
        str(args.epochs),
    ]
    os.sync()  # earlier rows' output written back before this row's clock starts (GBs of pickles and datasets)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO)
    sampler = TreeMemorySampler(process.pid)
    sampler.start()
    code = process.wait()
    sampler.stop()
    wall = time.perf_counter() - started
    if code != 0 or not result.exists():
        print(f"!! {stage}/{impl} failed with exit status {code}", file=sys.stderr, flush=True)
        return {"stage": stage, "impl": impl, "failed": True, "exit_status": code}
    record = json.loads(result.read_text())
    record.update(
        stage=stage,
        impl=impl,
        process_seconds=wall,
        tree_pss_bytes=sampler.peak_pss,
        tree_rss_bytes=sampler.peak_rss,
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )
    record["peak_bytes"] = max(record["maxrss_self_bytes"], sampler.peak_pss)
    record["samples_per_second"] = record["samples"] / record["seconds"] if record.get("seconds") else None
    print(
        f"   {stage:9s} {impl:13s} {record['seconds']:8.2f} s  {_rate(record):>10s}  peak {record['peak_bytes'] / GiB:6.2f} GiB"
        f"  (load {load_before:.2f} -> {record['load_after']:.2f})",
        flush=True,
    )
    return record


def _rate(record: dict) -> str:
    rate = record.get("samples_per_second")
    return f"{rate:,.0f}/s" if rate else "-"


def best_of(runs: list[dict]) -> dict:
    """The fastest run (least disturbed by other load), with the highest peak memory of all runs."""
    ok = [r for r in runs if not r.get("failed")]
    if not ok:
        return runs[-1]
    best = dict(min(ok, key=lambda r: r["seconds"] / max(r["samples"], 1)))
    best["all_seconds"] = [round(r["seconds"], 3) for r in ok]
    for key in ("peak_bytes", "maxrss_self_bytes", "tree_pss_bytes", "tree_rss_bytes"):
        best[key] = max(r[key] for r in ok)
    best["load_before"] = min(r["load_before"] for r in ok)
    best["load_after"] = max(r["load_after"] for r in ok)
    return best


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / GiB, 1),
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16": bf16_supported(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
    }


def baseline_for(stage: str, impl: str) -> str:
    """The row a row is compared with: bf16 rows only with the bf16 bare loop (same precision)."""
    if impl.endswith("-bf16"):
        return "bare-bf16"
    return BASELINE[stage]


def table(records: list[dict]) -> str:
    """Markdown table: one row per (scale, stage, implementation) with ratios to its baseline.

    ``command s`` is the whole stage process (imports and data loading included), the headline;
    ``timed s`` is the stage's timed section. ``train3`` rows compare whole commands; other stages
    compare the timed sections' samples/s.
    """
    lines = [
        "| scale | steps | stage | implementation | command s | timed s | CPU s | samples/s | peak RSS GiB | peak tree PSS GiB "
        "| dataset GiB | test AUC | speed vs baseline | memory vs baseline | speed vs bare | load avg |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    index = {(r["scale"], r["stage"], r["impl"]): r for r in records if not r.get("failed")}
    for r in records:
        if r.get("failed"):
            lines.append(f"| {r['scale']} | | {r['stage']} | {r['impl']} | FAILED (exit {r.get('exit_status')}) | | | | | | | | | | | |")
            continue
        if r["stage"] == "generate":
            continue
        base = index.get((r["scale"], r["stage"], baseline_for(r["stage"], r["impl"])))
        speed = memory = vs_bare = ""
        if base and base is not r:
            if r["stage"] == "train3":
                speed = f"{base['process_seconds'] / r['process_seconds']:.2f}x"
            else:
                speed = f"{(base['seconds'] / base['samples']) / (r['seconds'] / r['samples']):.2f}x"
            memory = f"{r['peak_bytes'] / base['peak_bytes']:.2f}x"
        elif base is r:
            speed = memory = "baseline"
        if r["stage"] == "train" and r["impl"].startswith("project"):
            bare = index.get((r["scale"], "train", "bare-bf16" if r["impl"].endswith("-bf16") else "bare"))
            if bare:
                vs_bare = f"{r['samples_per_second'] / bare['samples_per_second']:.2f}x"
        auc = f"{r['mean_auc']:.4f}" if r.get("mean_auc") is not None else ""
        if r.get("collapse"):
            auc += " (collapsed)"
        data = f"{r['dataset_bytes'] / GiB:.3f}" if r.get("dataset_bytes") else ""
        lines.append(
            f"| {r['scale']} | {r['dataset_steps']:,} | {r['stage']} | {r['impl']} | {r.get('process_seconds', float('nan')):.2f} | "
            f"{r['seconds']:.2f} | {r.get('cpu_seconds', float('nan')):.2f} | {_rate(r).removesuffix('/s')} | "
            f"{r['maxrss_self_bytes'] / GiB:.2f} | {r['tree_pss_bytes'] / GiB:.2f} | {data} | {auc} | {speed} | {memory} | {vs_bare} | "
            f"{r['load_before']:.2f}→{r['load_after']:.2f} |"
        )
    return "\n".join(lines)


def dryrun(args) -> list[dict]:
    """Time ``snakemake -n`` of the paper grid (config/paper.yaml) or of a generated many-source config.

    Timed twice: as is, and with a stand-in ``scontrol`` that fails at once. The SLURM executor
    plugin runs ``scontrol show config`` (10 s timeout) when Snakemake loads its plugins; on a
    machine with SLURM's client tools but no reachable controller that alone takes ~9 s of every
    invocation, whatever the workflow. The second timing is the planning cost itself.
    """
    import resource

    paper = REPO / "config" / "paper.yaml"
    records = []
    with tempfile.TemporaryDirectory(prefix="vlarisk-dryrun-") as tmp:
        if paper.exists() and not args.dryrun_sources:
            command = ["snakemake", "paper", "-n", "--nolock", "--configfile", str(paper)]
            what = "config/paper.yaml, target paper"
        else:
            import yaml

            config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
            count = args.dryrun_sources or 100
            config["sources"].update({f"synthetic_{i:03d}": {"simulate": {"hidden_dim": 64, "seed": i}} for i in range(count)})
            path = Path(tmp) / "many_sources.yaml"
            path.write_text(yaml.safe_dump(config))
            command = ["snakemake", "all", "-n", "--nolock", "--configfile", str(path)]
            what = f"config/config.yaml plus {count} simulated sources, target all"
        shim = Path(tmp) / "bin"
        shim.mkdir()
        (shim / "scontrol").write_text("#!/bin/sh\nexit 1\n")
        (shim / "scontrol").chmod(0o755)
        for label, env in (
            ("as is", dict(os.environ)),
            ("no SLURM controller query", {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}),
        ):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            load = os.getloadavg()[0]
            started = time.perf_counter()
            result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
            seconds = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            jobs = None
            for line in result.stdout.splitlines():
                if line.strip().startswith("total"):
                    jobs = int(line.split()[-1])
            print(f"   dryrun ({label}): {what}: {seconds:.2f} s wall, {cpu:.2f} s CPU, {jobs} jobs, exit {result.returncode}", flush=True)
            if result.returncode != 0:
                print(result.stderr[-3000:], file=sys.stderr)
            records.append(
                {
                    "stage": "dryrun",
                    "variant": label,
                    "what": what,
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                    "jobs": jobs,
                    "exit_status": result.returncode,
                    "load": load,
                }
            )
    return records


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, nargs="+", default=[0.05], help="multiples of the seed0 pool (1 = 101,720 steps)")
    parser.add_argument(
        "--stages", nargs="+", default=["prepare", "train", "evaluate"], choices=["prepare", "train", "train3", "evaluate", "dryrun"]
    )
    parser.add_argument("--impls", nargs="+", default=None, help="only these implementations (baselines are always kept)")
    parser.add_argument("--hidden-dim", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=0, help="batches timed per training implementation (0: one epoch)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each implementation (round-robin); the fastest is reported")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each stage process")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the train3 rows (whole commands)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 rows")
    parser.add_argument(
        "--skip-reference-above",
        type=float,
        default=None,
        help="skip the rows holding all the data in memory several times (reference and naive preparation, reference training) above this scale",
    )
    parser.add_argument(
        "--dryrun-sources", type=int, default=0, help="dry-run a generated config with this many sources instead of config/paper.yaml"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where rollouts and datasets go (default: a new /tmp directory)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--output", type=Path, default=None, help="also write the records (JSON) and the table (.md beside it)")
    args = parser.parse_args(argv)

    info = machine()
    print(f"machine: {info}", flush=True)
    records: list[dict] = []
    data_stages = [s for s in args.stages if s != "dryrun"]
    for scale in args.scale if data_stages else []:
        args.current_scale = scale
        workdir = args.workdir / f"scale_{scale}" if args.workdir else Path(tempfile.mkdtemp(prefix=f"vlarisk-bench-{scale}-", dir="/tmp"))
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"== scale {scale} in {workdir}", flush=True)
        try:
            generated = run_stage("generate", "rollouts", workdir, args)
            if generated.get("failed"):
                continue
            steps = generated["samples"]
            generated.update(scale=scale, dataset_steps=steps)
            records.append(generated)
            stages = list(data_stages)
            if any(s in stages for s in ("train", "train3", "evaluate")) and "prepare" not in stages:
                stages.insert(0, "prepare")  # later stages need the prepared dataset
            for stage in stages:
                impls = IMPLS[stage]
                if args.impls:
                    impls = [i for i in impls if i in args.impls or i == BASELINE[stage] or (i.startswith("bare") and stage == "train")]
                if args.skip_reference_above is not None and scale > args.skip_reference_above:
                    impls = [i for i in impls if (stage, i) not in MEMORY_HUNGRY]
                if args.no_bf16 or not info["bf16"]:
                    impls = [i for i in impls if not i.endswith("-bf16")]
                runs: dict[str, list[dict]] = {impl: [] for impl in impls}
                for _ in range(args.repeat):  # round-robin, so load changes hit every implementation alike
                    for impl in impls:
                        runs[impl].append(run_stage(stage, impl, workdir, args))
                        if stage == "prepare" and impl == "naive":
                            for name in ("naive_hidden.npy", "naive_labels.npy"):
                                (workdir / name).unlink(missing_ok=True)
                for impl in impls:
                    record = best_of(runs[impl])
                    record.update(
                        scale=scale,
                        dataset_steps=steps,
                        hidden_bytes=steps * args.hidden_dim * 4,
                        larger_pickle_bytes=max(generated["success_bytes"], generated["failure_bytes"]),
                    )
                    records.append(record)
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    if "dryrun" in args.stages:
        records.extend(dryrun(args))

    print()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, torch {info['torch']} ({info['cpu_capability']}, bf16 {'yes' if info['bf16'] else 'no'}), load at start {info['loadavg_start'][0]:.2f}"
    )
    data_records = [r for r in records if r.get("stage") != "dryrun"]
    text = table(data_records) if data_records else ""
    print(text)
    for r in records:
        if r.get("stage") == "dryrun":
            print(
                f"\nSnakemake dry run, {r['variant']} ({r['what']}): {r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} s CPU, "
                f"{r['jobs']} jobs (load {r['load']:.2f})"
            )
    print(targets(data_records))
    if args.output:
        args.output.write_text(json.dumps({"machine": info, "records": records}, indent=2))
        args.output.with_suffix(".md").write_text(text + "\n\n" + targets(data_records) + "\n")


def targets(records: list[dict]) -> str:
    """The speed targets, checked on every scale that has the rows they need."""
    index = {(r["scale"], r["stage"], r["impl"]): r for r in records if not r.get("failed")}
    lines = []
    for scale in sorted({r["scale"] for r in records}):

        def get(stage, impl, scale=scale):
            return index.get((scale, stage, impl))

        out = [f"targets at scale {scale}:"]
        project = get("prepare", "project")
        for name, baseline in (("reference", get("prepare", "reference")), ("naive", get("prepare", "naive"))):
            if baseline and project:
                t, m = baseline["process_seconds"] / project["process_seconds"], project["peak_bytes"] / baseline["peak_bytes"]
                out.append(
                    f"  prepare: {t:.2f}x faster than the {name} (>=2 {'MET' if t >= 2 else 'MISSED'}), "
                    f"peak {m:.2f}x the {name}'s (<=0.5 {'MET' if m <= 0.5 else 'MISSED'})"
                )
        if project:
            f = project["peak_bytes"] / project["larger_pickle_bytes"]
            out.append(f"  prepare: peak {f:.2f}x the larger pickle (<1.3 {'MET' if f < 1.3 else 'MISSED'})")
        loader, bare, proj = get("train", "dataloader"), get("train", "bare"), get("train", "project")
        if loader and proj:
            s = proj["samples_per_second"] / loader["samples_per_second"]
            out.append(f"  train: project {s:.2f}x DataLoader (>=2.5 {'MET' if s >= 2.5 else 'MISSED'})")
        if bare and proj:
            s = proj["samples_per_second"] / bare["samples_per_second"]
            out.append(f"  train: project {s:.2f}x bare loop (>=0.85 {'MET' if s >= 0.85 else 'MISSED'})")
        bare16, proj16 = get("train", "bare-bf16"), get("train", "project-bf16")
        if bare16 and proj16 and proj:
            out.append(
                f"  train bf16: project {proj16['samples_per_second'] / bare16['samples_per_second']:.2f}x bare bf16; "
                f"{proj16['samples_per_second'] / proj['samples_per_second']:.2f}x project fp32"
            )
        chunked, per_step = get("train3", "project"), get("train3", "project-perstep")
        for name in ("reference", "reference-tuned"):
            reference = get("train3", name)
            if not (reference and chunked):
                continue
            t = reference["process_seconds"] / chunked["process_seconds"]
            m = chunked["peak_bytes"] / reference["peak_bytes"]
            healthy = not chunked.get("collapse")
            out.append(
                f"  train {chunked.get('epochs', 3)} epochs (whole command): {t:.2f}x faster than the {name} (>=5 {'MET' if t >= 5 else 'MISSED'}), "
                f"peak {m:.2f}x (<=0.3 {'MET' if m <= 0.3 else 'MISSED'}), test AUC {chunked['mean_auc']:.4f} vs "
                f"{reference['mean_auc']:.4f}{'' if healthy else ' COLLAPSED'}"
            )
        if per_step and chunked:
            out.append(
                f"  train {chunked.get('epochs', 3)} epochs: deduplicated {per_step['process_seconds'] / chunked['process_seconds']:.2f}x faster than per-step, "
                f"test AUC {chunked['mean_auc']:.4f} vs {per_step['mean_auc']:.4f}"
            )
        if project and project.get("dataset_bytes"):
            d = project["dataset_bytes"] / project["hidden_bytes"]
            out.append(
                f"  dataset on disk: {project['dataset_bytes'] / GiB:.3f} GiB = {d:.3f}x the hidden states' raw bytes (<=0.2 {'MET' if d <= 0.2 else 'MISSED'})"
            )
        fit = get("train", "project-fit")
        if fit:
            m = fit["peak_bytes"] / fit["hidden_bytes"]
            out.append(
                f"  train memory: fit peak {fit['peak_bytes'] / GiB:.2f} GiB = {m:.2f}x hidden-state bytes (<1.5 {'MET' if m < 1.5 else 'MISSED'})"
            )
        en, ep = get("evaluate", "naive"), get("evaluate", "project")
        if en and ep:
            out.append(
                f"  evaluate: project {en['seconds'] / ep['seconds']:.2f}x faster than batch-256 scoring; peak {ep['peak_bytes'] / GiB:.2f} GiB vs {en['peak_bytes'] / GiB:.2f}"
            )
        lines.append("\n".join(out))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
