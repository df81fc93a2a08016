#!/usr/bin/env python
"""A training step on an idle and on a busy machine, by thread count: why jobs are held to their threads.

Each row times a plain 64-512-256-7 MLP training step (batch 256, Adam) in a fresh process held to
its threads by :func:`vlarisk.core.device.limit_threads` (torch, OpenMP, BLAS), its idle OpenMP threads
spinning (OpenMP's default) or sleeping (``OMP_WAIT_POLICY=PASSIVE``, which ``import vlarisk``
sets); ``torch default`` is a process left alone, as a command run without ``--threads`` or
``OMP_NUM_THREADS`` was before. The
busy machine runs ``--competitors`` busy-loop processes beside it (another job on the same cores).
Prints one table: median milliseconds per step, idle and busy, and the slowdown.

    python benchmarks/threads.py
    python benchmarks/threads.py --competitors 2 --steps 200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BUSY_LOOP = "while True: pass"
WAIT_POLICIES = (("spinning", "ACTIVE"), ("sleeping", "PASSIVE"))  # OMP_WAIT_POLICY of idle OpenMP threads


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150, help="timed steps per row (default: %(default)s)")
    parser.add_argument("--competitors", type=int, default=2, help="busy-loop processes on the busy machine (default: %(default)s)")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2], help="thread counts to compare (default: %(default)s)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # internal: time steps with this many threads
    return parser.parse_args(argv)


def time_steps(threads: int, steps: int) -> float:
    """Median seconds of one training step with ``threads`` (0: torch's own choice)."""
    from vlarisk.core.device import limit_threads

    limit_threads(threads)
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256), torch.nn.ReLU(), torch.nn.Linear(256, 7)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    hidden, target = torch.randn(256, 64), torch.rand(256, 7)
    seconds = []
    for step in range(steps + 10):
        tick = time.perf_counter()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(hidden), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 10:  # the first steps warm the allocator and thread pools
            seconds.append(time.perf_counter() - tick)
    return statistics.median(seconds)


def measure(threads: int, steps: int, wait_policy: str) -> float:
    """:func:`time_steps` in a fresh process, whose thread pools nothing else has set, its idle
    OpenMP threads spinning (``ACTIVE``) or sleeping (``PASSIVE``)."""
    environ = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    environ["OMP_WAIT_POLICY"] = wait_policy
    command = [sys.executable, __file__, "--worker", str(threads), "--steps", str(steps)]
    return json.loads(subprocess.run(command, env=environ, capture_output=True, text=True, check=True).stdout)


def busy(count: int) -> list[subprocess.Popen]:
    """``count`` busy-loop processes (another job's work on the same cores)."""
    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(time_steps(args.worker, args.steps)))
        return
    rows = [("torch default, spinning (before)", 0, "ACTIVE"), ("torch default, sleeping", 0, "PASSIVE")]
    rows += [(f"{n} thread{'s' if n > 1 else ''}, {how}", n, policy) for n in args.threads for how, policy in WAIT_POLICIES]
    idle = {name: measure(n, args.steps, policy) for name, n, policy in rows}
    competitors = busy(args.competitors)
    try:
        time.sleep(1)
        loaded = {name: measure(n, args.steps, policy) for name, n, policy in rows}
    finally:
        for process in competitors:
            process.kill()
            process.wait()
    print(f"MLP 64-512-256-7 training step, batch 256; {os.cpu_count()} cores; busy = {args.competitors} busy-loop processes beside it")
    print()
    print("| threads | idle ms/step | busy ms/step | busy / idle |")
    print("|---|---|---|---|")
    for name, _, _ in rows:
        print(f"| {name} | {1000 * idle[name]:.1f} | {1000 * loaded[name]:.1f} | {loaded[name] / idle[name]:.1f}x |")


if __name__ == "__main__":
    main()
