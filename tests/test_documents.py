"""The checkpoint and results.json layouts: versions stamped, earlier layouts still read, names in one place."""

from __future__ import annotations

import numpy as np
import torch

from vlarisk.data.documents import (
    BEST_MODEL,
    CHECKPOINT_FORMAT,
    RESULTS_FILE,
    RESULTS_FORMAT,
    read_checkpoint,
    read_results,
    save_checkpoint,
    with_alarms,
    write_results_file,
)
from vlarisk.data.label_cutoffs import label_cutoffs_by_dimension
from vlarisk.model.checkpoints import saved_label_cutoffs


def test_a_format_1_checkpoint_still_gives_its_label_cutoffs(tmp_path):
    """Before format 2 the positive-label cut-offs were stored as ``thresholds``."""
    path = tmp_path / BEST_MODEL
    cutoffs = np.array([0.25, np.nan, 0.5, 0.5, 0.5, 0.5, 0.5])
    torch.save({"format_version": 1, "thresholds": label_cutoffs_by_dimension(cutoffs), "data_sha256": "abc", "split": None}, path)
    saved = saved_label_cutoffs(read_checkpoint(path), "any")
    np.testing.assert_array_equal(saved.label_cutoffs, cutoffs)
    assert saved.data_sha256 == "abc"


def test_a_checkpoint_without_cutoffs_or_version_reads(tmp_path):
    """The guide's checkpoints: no version, no cut-offs."""
    path = tmp_path / BEST_MODEL
    torch.save({"epoch": 3, "model_state_dict": {}}, path)
    assert read_checkpoint(path)["epoch"] == 3 and saved_label_cutoffs(read_checkpoint(path), "any") is None


def test_the_alarm_is_stored_without_touching_the_rest(tmp_path):
    path = tmp_path / BEST_MODEL
    checkpoint = {"epoch": 2, "sources": {"a": {"label_cutoffs": {}}, "b": {}}}
    save_checkpoint(path, with_alarms(checkpoint, {"a": {"threshold": 0.5}, "b": {"threshold": None}}))
    assert checkpoint == {"epoch": 2, "sources": {"a": {"label_cutoffs": {}}, "b": {}}}  # the document given is not changed
    saved = read_checkpoint(path)
    assert saved["format_version"] == CHECKPOINT_FORMAT and saved["epoch"] == 2
    assert saved["sources"] == {"a": {"label_cutoffs": {}, "alarm": {"threshold": 0.5}}, "b": {"alarm": {"threshold": None}}}
    assert list(tmp_path.iterdir()) == [path]  # written through a temporary file, none left behind


def test_a_single_source_checkpoint_keeps_its_alarm_at_the_top():
    assert with_alarms({"epoch": 1}, {"m": {"threshold": 0.3}}) == {"epoch": 1, "alarm": {"threshold": 0.3}}


def test_results_carry_their_format(tmp_path):
    write_results_file(tmp_path / RESULTS_FILE, {"model_name": "m"})
    assert read_results(tmp_path / RESULTS_FILE) == {"format_version": RESULTS_FORMAT, "model_name": "m"}
