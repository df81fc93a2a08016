"""Loading never runs a stranger's code: pickles and checkpoints that would, are refused by name.

Every payload below is first shown to be live (a plain ``pickle.loads`` runs it and creates the
marker file), then loaded the project's way: the load must fail naming the offending global, and
the marker must not exist. Plain data (numpy arrays of several dtypes, written with protocols 2 to 5,
by numpy 2 or with numpy 1.x module paths) must still load unchanged and without warnings.
"""

from __future__ import annotations

import builtins
import collections
import gc
import io
import os
import pathlib
import pickle
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from vlarisk.core.errors import InputError, UnsafePickleError
from vlarisk.data.dataset import load_dataset
from vlarisk.data.documents import read_checkpoint
from vlarisk.data.prepare import prepare_dataset
from vlarisk.data.rollouts import load_rollouts
from vlarisk.data.safe_pickle import load_pickle
from vlarisk.data.synthetic import RolloutSimulator, SimulationSpec

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """An object whose unpickling calls ``func(*args)``; ``func`` may itself be a Payload (nested calls)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # pickle insists that a reduce function be callable
        raise AssertionError("never called while pickling")


def getattr_payload(command: str) -> Payload:
    """``getattr(__import__('os'), 'system')(command)``: the dangerous function is never named as a global."""
    return Payload(Payload(getattr, Payload(builtins.__import__, "os"), "system"), command)


def payloads(marker: Path) -> dict[str, tuple[object, str]]:
    """Name -> (object whose unpickling creates ``marker``, the global a safe loader must name)."""
    command = f"touch {marker}"
    return {
        "os.system": (Payload(os.system, command), f"{os.system.__module__}.system"),
        "builtins.open": (Payload(builtins.open, str(marker), "w"), f"{builtins.open.__module__}.open"),
        "pathlib.Path.touch": (Payload(pathlib.Path.touch, pathlib.Path(marker)), "pathlib.Path.touch"),
        "builtins.eval": (Payload(builtins.eval, f"__import__('os').system({command!r})"), "builtins.eval"),
        "builtins.exec": (Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec"),
        "getattr trick": (getattr_payload(command), "builtins.getattr"),
        "subprocess.call": (Payload(subprocess.call, ["touch", str(marker)]), "subprocess.call"),
    }


PAYLOAD_NAMES = list(payloads(Path("/nonexistent")))


def _live(obj, marker: Path) -> None:
    """The payload really does create the marker when unpickled the unsafe way."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pickle.loads(pickle.dumps(obj))
    assert marker.exists(), "the test payload is not live"
    marker.unlink()


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_malicious_rollout_pickle_is_refused_and_names_the_global(tmp_path, name):
    marker = tmp_path / "pwned"
    obj, expected_global = payloads(marker)[name]
    _live(obj, marker)
    path = tmp_path / "success_rollouts.pkl"
    path.write_bytes(pickle.dumps({"trajectories": [{"steps": [], "payload": obj}]}))
    with pytest.raises(UnsafePickleError) as caught:
        load_rollouts(str(path))
    assert not marker.exists()
    message = str(caught.value)
    assert message.startswith(f"{path}: refusing to load global '{expected_global}'"), message


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_refusal_holds_for_every_protocol(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps([Payload(os.system, f"touch {marker}")], protocol=protocol))
    with pytest.raises(UnsafePickleError, match=r"\.system'"):
        load_pickle(path)
    assert not marker.exists()


def test_payload_hidden_in_a_hidden_state_stops_preparation(tmp_path):
    marker = tmp_path / "pwned"
    simulator = RolloutSimulator(SimulationSpec(hidden_dim=16, num_success=2, num_failure=2, success_steps=(10, 12), failure_steps=12))
    success = tmp_path / "success.pkl"
    failure = tmp_path / "failure.pkl"
    rollout = simulator.rollout(False)
    rollout["steps"][5]["hidden_state"] = Payload(os.system, f"touch {marker}")
    success.write_bytes(pickle.dumps([simulator.rollout(True)]))
    failure.write_bytes(pickle.dumps([rollout]))
    output = tmp_path / "dataset.vlarisk"
    with pytest.raises(UnsafePickleError, match=rf"^{failure}: refusing to load global 'posix\.system'"):
        prepare_dataset(success, failure, output)
    assert not marker.exists()
    assert not output.exists() and not list(tmp_path.glob("*.partial"))


def test_malicious_legacy_dataset_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "dataset.pkl"
    path.write_bytes(pickle.dumps({"dataset": [{"hidden_state": Payload(builtins.eval, f"open({str(marker)!r}, 'w')")}], "metadata": {}}))
    with pytest.raises(UnsafePickleError, match="refusing to load global 'builtins.eval'"):
        load_dataset(path)
    assert not marker.exists()


def test_object_array_cannot_smuggle_a_payload(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "x.pkl"
    array = np.empty(2, dtype=object)
    array[0] = Payload(os.system, f"touch {marker}")
    path.write_bytes(pickle.dumps(array))
    with pytest.raises(UnsafePickleError, match=r"\.system'"):
        load_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "getattr trick"])
def test_malicious_torch_checkpoint_is_refused(tmp_path, name):
    marker = tmp_path / "pwned"
    obj, expected_global = payloads(marker)[name]
    path = tmp_path / "best_model.pt"
    torch.save({"epoch": 1, "model_state_dict": {"w": torch.zeros(2)}, "val_metrics": {"x": obj}}, path)
    with pytest.raises(UnsafePickleError) as caught:
        read_checkpoint(path)
    assert not marker.exists()
    message = str(caught.value)
    assert f"refusing to load global '{expected_global}'" in message and "\n" not in message, message


def test_checkpoint_with_numpy_values_still_loads(tmp_path):
    """The reference stored numpy floats in val_metrics; those are data, not code."""
    path = tmp_path / "reference.pt"
    metrics = {"auc_x": np.float64(0.75), "counts": np.arange(3, dtype=np.int64)}
    torch.save({"epoch": 3, "val_metrics": metrics, "normalization": {"mean": np.zeros(4, np.float32)}}, path)
    loaded = read_checkpoint(path)
    assert loaded["val_metrics"]["auc_x"] == 0.75
    np.testing.assert_array_equal(loaded["val_metrics"]["counts"], np.arange(3))


# ------------------------------------------------------------------ plain data loads unchanged

ARRAYS = {
    "float32": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
    "float16": np.array([0.5, -2.0, 65504.0], dtype=np.float16),
    "int64": np.array([-(2**40), 0, 7], dtype=np.int64),
    "bool": np.array([True, False, True]),
    "0-d": np.array(3.25, dtype=np.float64),
    "non-contiguous": np.arange(20, dtype=np.float32)[::3],
    "fortran": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
    "big-endian": np.arange(4, dtype=">f4"),
    "empty": np.zeros((0, 7), dtype=np.float32),
}
SCALARS = {"np.float32": np.float32(1.5), "np.int64": np.int64(-3), "np.bool_": np.bool_(True)}


def _payload_of_plain_data():
    return {
        "arrays": dict(ARRAYS),
        "scalars": dict(SCALARS),
        "nested": [({"a": 1, "b": None}, frozenset({1, 2}), {3}, b"raw", bytearray(b"x"), 1 + 2j, range(3), slice(1, 5))],
        "ordered": collections.OrderedDict(x=1),
    }


class Numpy1Pickler(pickle._Pickler):
    """Writes numpy's internals under their numpy 1.x names (``numpy.core.*``), as old files have them."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_global(self, obj, name=None):
        name = name or getattr(obj, "__qualname__", None) or obj.__name__
        module = pickle.whichmodule(obj, name)
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core") :]
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    dispatch[types.FunctionType] = save_global


def _dumps(obj, protocol: int, numpy1: bool) -> bytes:
    if not numpy1:
        return pickle.dumps(obj, protocol=protocol)
    buffer = io.BytesIO()
    Numpy1Pickler(buffer, protocol=protocol).dump(obj)
    data = buffer.getvalue()
    assert b"numpy.core" in data and b"numpy._core" not in data
    return data


def _assert_same(loaded, original):
    if isinstance(original, np.ndarray):
        assert isinstance(loaded, np.ndarray) and loaded.dtype == original.dtype and loaded.shape == original.shape
        for flag in ("writeable", "c_contiguous", "f_contiguous"):
            assert getattr(loaded.flags, flag) == getattr(original.flags, flag), flag
        np.testing.assert_array_equal(loaded, original)
    elif isinstance(original, np.generic):
        assert type(loaded) is type(original) and loaded == original
    elif isinstance(original, dict):
        assert type(loaded) is type(original) and loaded.keys() == original.keys()
        for key in original:
            _assert_same(loaded[key], original[key])
    elif isinstance(original, (list, tuple)):
        assert type(loaded) is type(original) and len(loaded) == len(original)
        for a, b in zip(loaded, original, strict=True):
            _assert_same(a, b)
    else:
        assert loaded == original and type(loaded) is type(original)


@pytest.mark.parametrize("numpy1", [False, True], ids=["numpy2-paths", "numpy1-paths"])
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_data_loads_unchanged_for_every_protocol(tmp_path, protocol, numpy1):
    original = _payload_of_plain_data()
    path = tmp_path / "data.pkl"
    path.write_bytes(_dumps(original, protocol, numpy1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy 2 warns on numpy.core.*: the loader must not trigger it
        loaded = load_pickle(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unsafe = pickle.loads(path.read_bytes())  # what the plain unpickler makes of the same bytes
    _assert_same(loaded, unsafe)
    for name, array in ARRAYS.items():
        np.testing.assert_array_equal(loaded["arrays"][name], array)


@pytest.mark.parametrize("collector_on", [True, False])
def test_loading_leaves_the_garbage_collector_as_it_was(tmp_path, collector_on):
    """The collector is paused while a file loads, then restored: after a load, a refused load and a corrupt file."""
    good, corrupt = tmp_path / "good.pkl", tmp_path / "corrupt.pkl"
    good.write_bytes(pickle.dumps({"trajectories": [{"steps": []}]}))
    corrupt.write_bytes(pickle.dumps(list(range(1000)))[:-40])
    malicious = tmp_path / "malicious.pkl"
    malicious.write_bytes(pickle.dumps(Payload(os.getcwd, ())))
    was_enabled = gc.isenabled()
    (gc.enable if collector_on else gc.disable)()
    try:
        assert load_pickle(good) == {"trajectories": [{"steps": []}]}
        assert gc.isenabled() is collector_on
        for path, error in ((corrupt, InputError), (malicious, UnsafePickleError)):
            with pytest.raises(error):
                load_pickle(path)
            assert gc.isenabled() is collector_on
    finally:
        (gc.enable if was_enabled else gc.disable)()


def test_preparing_data_does_not_import_torch():
    """Preparation and dataset reading stay free of torch (0.2 GiB and a second); the model API still imports."""
    code = (
        "import sys, vlarisk, vlarisk.data.prepare, vlarisk.data.dataset, vlarisk.data.splits, vlarisk.core.cli\n"
        "assert 'torch' not in sys.modules, 'torch imported by data preparation'\n"
        "from vlarisk import RiskPredictor, load_predictor\n"
        "assert 'torch' in sys.modules and RiskPredictor.__module__ == 'vlarisk.model.models'\n"
        "try:\n    vlarisk.no_such_name\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit('no AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_rollout_files_of_every_protocol_give_the_same_dataset(tmp_path, protocol):
    simulator = RolloutSimulator(
        SimulationSpec(hidden_dim=16, num_success=3, num_failure=3, success_steps=(10, 12), failure_steps=12, seed=3)
    )
    success = [simulator.rollout(True) for _ in range(3)]
    failure = [simulator.rollout(False) for _ in range(3)]
    hashes = []
    for label, numpy1 in (("reference", None), ("new", False), ("old", True)):
        s, f = tmp_path / f"s_{label}.pkl", tmp_path / f"f_{label}.pkl"
        if numpy1 is None:  # highest protocol, numpy 2 paths
            s.write_bytes(pickle.dumps(success, protocol=pickle.HIGHEST_PROTOCOL))
            f.write_bytes(pickle.dumps({"trajectories": failure, "metadata": {}}, protocol=pickle.HIGHEST_PROTOCOL))
        else:
            s.write_bytes(_dumps(success, protocol, numpy1))
            f.write_bytes(_dumps({"trajectories": failure, "metadata": {}}, protocol, numpy1))
        prepare_dataset(s, f, tmp_path / f"{label}.vlarisk")
        hashes.append(load_dataset(tmp_path / f"{label}.vlarisk").content_hash)
    assert hashes[0] == hashes[1] == hashes[2]


def test_malicious_checkpoint_through_the_command_line(tmp_path, dataset_path):
    """evaluate_risk_predictor.py on a poisoned checkpoint: exit 2, one line naming the global."""
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "best_model.pt"
    torch.save({"epoch": 1, "history": Payload(os.system, f"touch {marker}")}, checkpoint)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "workflow_scripts" / "evaluate_risk_predictor.py"),
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(dataset_path),
            "--split",
            str(tmp_path / "split.json"),
            "--output",
            str(tmp_path / "results.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip()
        == f"error: {checkpoint}: refusing to load global 'posix.system': checkpoints are read with weights_only=True (tensors and plain data only)"
    )
    assert not marker.exists() and not (tmp_path / "results.json").exists()
