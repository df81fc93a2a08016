"""Shared fixtures: small synthetic rollout files in the real pickle format."""

from __future__ import annotations

import pytest

from vlarisk.core.device import limit_threads
from vlarisk.data.prepare import prepare_dataset
from vlarisk.data.synthetic import SimulationSpec, write_synthetic_source

TINY = dict(hidden_dim=16, num_success=30, num_failure=40, success_steps=(20, 30), failure_steps=40, num_tasks=4)
# Threads of each test process (a pytest-xdist worker is one of `make test`'s processes, one per
# core) and of the commands it starts; a pipeline run's jobs get their rule's threads from Snakemake.
TEST_THREADS = 1


def pytest_configure(config):
    """Hold the test process, and every process it starts, to ``TEST_THREADS`` torch, OpenMP and BLAS threads."""
    limit_threads(TEST_THREADS)


@pytest.fixture(scope="session")
def rollout_files(tmp_path_factory):
    """Labelled rollouts in the dict layout: ``(success, failure, planting)`` paths."""
    root = tmp_path_factory.mktemp("rollouts")
    paths = (root / "success_rollouts.pkl", root / "failure_rollouts.pkl", root / "planting.npz")
    write_synthetic_source(SimulationSpec(**TINY, with_labels=True, layout="dict", seed=0), *paths)
    return paths


@pytest.fixture(scope="session")
def unlabelled_rollout_files(tmp_path_factory):
    """Unlabelled rollouts in the bare-list layout."""
    root = tmp_path_factory.mktemp("rollouts_list")
    paths = (root / "success_rollouts.pkl", root / "failure_rollouts.pkl", root / "planting.npz")
    write_synthetic_source(SimulationSpec(**TINY, with_labels=False, layout="list", seed=1), *paths)
    return paths


@pytest.fixture(scope="session")
def dataset_path(rollout_files, tmp_path_factory):
    path = tmp_path_factory.mktemp("dataset") / "tiny.vlarisk"
    prepare_dataset(rollout_files[0], rollout_files[1], path)
    return path


def pytest_collection_modifyitems(items):
    """A test needing a module's ``built`` fixture (a real pipeline run in a copy of the project,
    minutes) is ``slow``: ``make test-fast`` leaves it out, ``make test`` runs it."""
    for item in items:
        if "built" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
