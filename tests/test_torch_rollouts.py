"""Rollouts whose hidden states are torch tensors load as numpy, and torch's own route to code stays shut.

A hook on a VLA usually saves ``hidden_state`` as a torch tensor, and ``pickle.dump`` of a tensor
names ``torch.storage._load_from_bytes`` (which torch itself reads with ``weights_only=False``) and
``torch._utils._rebuild_tensor_v2``. The loader admits those names, reads the storage bytes with
torch's ``weights_only`` allow-list, and gives numpy arrays; every payload below is first shown live.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch

from vlarisk.core.errors import UnsafePickleError
from vlarisk.data.dataset import load_dataset
from vlarisk.data.prepare import prepare_dataset
from vlarisk.data.rollouts import load_rollouts
from vlarisk.data.safe_pickle import load_pickle


class Payload:
    """An object whose unpickling calls ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _rollouts(as_tensor, seed: int, success: bool) -> list[dict]:
    """Three rollouts of 12 steps with 8-D hidden states, each state made by ``as_tensor(array)``."""
    rng = np.random.default_rng(seed)
    return [
        {
            "task_id": index % 2,
            "steps": [
                {"action": rng.normal(size=7).astype(np.float32), "hidden_state": as_tensor(rng.normal(size=8).astype(np.float32))}
                for _ in range(12)
            ],
            "success": success,
        }
        for index in range(3)
    ]


def _live(obj, marker) -> None:
    """Unpickled the unsafe way, the payload really creates the marker."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pickle.loads(pickle.dumps(obj))
        except Exception:  # the payload ran; what it returned need not rebuild anything
            pass
    assert marker.exists(), "the test payload is not live"
    marker.unlink()


def test_pickled_torch_hidden_states_load_as_the_same_numpy_arrays(tmp_path):
    plain = _rollouts(np.asarray, seed=0, success=True)
    path = tmp_path / "success.pkl"
    with open(path, "wb") as handle:
        pickle.dump(_rollouts(torch.from_numpy, seed=0, success=True), handle)
    loaded = load_rollouts(str(path))
    for got, expected in zip(loaded, plain, strict=True):
        for step_got, step_expected in zip(got["steps"], expected["steps"], strict=True):
            assert type(step_got["hidden_state"]) is np.ndarray and step_got["hidden_state"].dtype == np.float32
            np.testing.assert_array_equal(step_got["hidden_state"], step_expected["hidden_state"])


def test_tensor_kinds_a_hook_may_save(tmp_path):
    """Views, parameters, tensors with gradients and bfloat16 load as their values, without gradients."""
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    saved = {
        "view": base[:, 1],
        "parameter": torch.nn.Parameter(torch.ones(3)),
        "with_grad": torch.ones(2, requires_grad=True) * 2,
        "bfloat16": torch.tensor([0.5, -1.0], dtype=torch.bfloat16),
        "int64": torch.tensor([-(2**40), 7]),
    }
    expected = {
        "view": [1.0, 5.0, 9.0],
        "parameter": [1.0, 1.0, 1.0],
        "with_grad": [2.0, 2.0],
        "bfloat16": [0.5, -1.0],
        "int64": [-(2**40), 7],
    }
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(saved))
    loaded = load_pickle(path)
    assert {key: value.tolist() for key, value in loaded.items()} == expected
    assert all(type(value) is np.ndarray for value in loaded.values())


def test_a_torch_save_file_of_rollouts_prepares_like_numpy(tmp_path):
    """torch.save's zip archive is read with weights_only=True; the dataset equals the numpy one."""
    hashes = []
    for label, as_tensor in (("numpy", np.asarray), ("torch", torch.from_numpy)):
        success, failure = tmp_path / f"{label}_success.pkl", tmp_path / f"{label}_failure.pkl"
        if label == "numpy":
            success.write_bytes(pickle.dumps(_rollouts(as_tensor, 1, True)))
            failure.write_bytes(pickle.dumps(_rollouts(as_tensor, 2, False)))
        else:
            torch.save(_rollouts(as_tensor, 1, True), success)
            torch.save({"trajectories": _rollouts(as_tensor, 2, False)}, failure)
        prepare_dataset(success, failure, tmp_path / f"{label}.vlarisk")
        hashes.append(load_dataset(tmp_path / f"{label}.vlarisk").content_hash)
    assert hashes[0] == hashes[1]


def test_storage_bytes_carrying_a_payload_are_refused(tmp_path):
    """torch's own _load_from_bytes would run this (weights_only=False); the loader names the global."""
    marker = tmp_path / "pwned"
    archive = io.BytesIO()
    torch.save({"x": Payload(os.system, f"touch {marker}")}, archive)
    obj = [{"steps": [{"hidden_state": Payload(torch.storage._load_from_bytes, archive.getvalue())}]}]
    _live(obj, marker)
    path = tmp_path / "success.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(UnsafePickleError, match=rf"^{path}: refusing to load global '(posix|os|nt)\.system'"):
        load_rollouts(str(path))
    assert not marker.exists()


def test_a_torch_save_file_with_a_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    obj = {"trajectories": [{"steps": [], "payload": Payload(os.system, f"touch {marker}")}]}
    path = tmp_path / "failure.pt"
    torch.save(obj, path)
    with pytest.raises(UnsafePickleError, match=r"refusing to load global '(posix|os|nt)\.system'"):
        load_pickle(path)
    assert not marker.exists()


def test_other_torch_globals_stay_refused(tmp_path):
    """Only the three names a pickled tensor needs are admitted: torch.save (which writes a file) is not."""
    marker = tmp_path / "pwned"
    obj = Payload(torch.save, 0, str(marker))
    _live(obj, marker)
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(UnsafePickleError, match=r"refusing to load global 'torch\.serialization\.save'"):
        load_pickle(path)
    assert not marker.exists()


def test_a_tensor_with_backward_hooks_is_refused(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated, and still what a pickled tensor holds
        storage = torch.ones(2).storage()
    obj = Payload(torch._utils._rebuild_tensor_v2, storage, 0, (2,), (1,), False, OrderedDict(hook=1))
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(UnsafePickleError, match="backward hooks"):
        load_pickle(path)
