#!/usr/bin/env python
"""Time and peak memory of the distance baselines (cosine kNN, Ledoit-Wolf Mahalanobis) at 4096-D.

Fits ``vlarisk.score.distance_baselines.distance_scores`` on ``--states`` distinct training states
per outcome (the default cap) and scores ``--scored`` states, each repeated over ``--chunk`` steps
as a prepared dataset holds them (a per-step view of random, correlated 4096-D states held in
memory before the clock starts). Peak memory is what numpy allocates during the call
(``tracemalloc``: the states, the covariance and every temporary; BLAS scratch space aside).
Prints one line per repeat; ``--save`` keeps the scores, to compare two versions of the code.

    python benchmarks/distance_baselines.py
    python benchmarks/distance_baselines.py --states 2000 --scored 10000 --repeat 3 --save /tmp/scores.npz
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np

from vlarisk.core.device import limit_threads


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=5000, help="distinct training states per outcome (default: %(default)s)")
    parser.add_argument("--scored", type=int, default=2000, help="distinct states scored (default: %(default)s)")
    parser.add_argument("--chunk", type=int, default=8, help="steps per state (default: %(default)s)")
    parser.add_argument("--width", type=int, default=4096, help="hidden size (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=2, help="timed calls (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: %(default)s)")
    parser.add_argument("--save", type=Path, default=None, help="write the last call's scores (.npz)")
    return parser.parse_args(argv)


def correlated_states(rows: int, width: int, seed: int = 0) -> np.ndarray:
    """``float32 [rows, width]`` states with a decaying spectrum (64 strong directions and noise), as hidden states have."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((64, width)).astype(np.float32)
    hidden = rng.standard_normal((rows, 64)).astype(np.float32) * np.geomspace(4, 0.5, 64, dtype=np.float32) @ basis
    hidden += rng.standard_normal((rows, width), dtype=np.float32)
    return hidden


def main(argv=None) -> None:
    args = parse_args(argv)
    limit_threads(args.threads)
    from vlarisk.data.dataset import StepStates
    from vlarisk.score.distance_baselines import distance_scores

    train = 2 * args.states
    states = correlated_states(train + args.scored, args.width)
    states[:train:2] += 0.3  # successes (even states) shifted: the detectors have something to find
    hidden = StepStates(states, np.repeat(np.arange(len(states)), args.chunk))
    train_rows, scored_rows = np.arange(train * args.chunk), np.arange(train * args.chunk, len(states) * args.chunk)
    success = hidden.index[train_rows] % 2 == 0
    print(
        f"{args.states} states per outcome, {args.scored} scored states over {len(scored_rows)} steps, {args.width}-D, {args.threads} thread(s)"
    )
    for repeat in range(args.repeat):
        tracemalloc.start()
        started = time.perf_counter()
        scores = distance_scores(hidden, train_rows, success, scored_rows)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"repeat {repeat + 1}: {seconds:6.2f} s  peak {peak / 2**20:7.1f} MiB", flush=True)
    if args.save:
        np.savez(args.save, **{name: values[:, 0] for name, values in scores.items()})


if __name__ == "__main__":
    main()
