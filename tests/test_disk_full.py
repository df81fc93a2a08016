"""A full disk or quota: one line naming the output, and nothing of the output left behind.

Most cases raise the errors a full disk gives (``OSError`` ENOSPC/EDQUOT, torch's ``unexpected
pos``) at the points where writes happen. Where user namespaces allow it, the last tests mount a
real 64 KiB tmpfs and let the writes fill it.
"""

import errno
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from vlarisk.core import cli, io_utils
from vlarisk.core.errors import OutputError
from vlarisk.core.io_utils import atomic_path, translate_disk_errors, write_json
from vlarisk.data.documents import save_checkpoint
from vlarisk.data.prepare import prepare_dataset
from vlarisk.model.checkpoints import checkpoint_document
from vlarisk.model.models import RiskPredictor

ROOT = Path(__file__).resolve().parents[1]


def no_space(code=errno.ENOSPC):
    return OSError(code, os.strerror(code))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize(
    ("code", "words"), [(errno.ENOSPC, "no space left on device (ENOSPC)"), (errno.EDQUOT, "disk quota exceeded (EDQUOT)")]
)
def test_a_write_that_runs_out_of_space_names_the_output_and_leaves_nothing(tmp_path, code, words):
    target = tmp_path / "out" / "results.json"
    with pytest.raises(OutputError) as caught:
        with atomic_path(target) as tmp:
            tmp.write_text("half of it")
            raise no_space(code)
    assert str(caught.value).startswith(f"{target}: cannot write: {words}")
    assert caught.value.filename == str(target) and caught.value.errno == code
    assert leftovers(target.parent) == []


def test_an_earlier_output_survives_a_failed_rewrite(tmp_path, monkeypatch):
    target = tmp_path / "split.json"
    write_json(target, {"run": 1})

    def fsync_on_a_full_disk(fd):
        raise no_space()

    monkeypatch.setattr(io_utils.os, "fsync", fsync_on_a_full_disk)
    with pytest.raises(OutputError, match="split.json: cannot write"):
        write_json(target, {"run": 2})
    assert leftovers(tmp_path) == ["split.json"]
    assert '"run": 1' in target.read_text()


def test_torch_s_unexpected_pos_is_a_lack_of_space(tmp_path, monkeypatch):
    def torch_save_on_a_full_disk(obj, f, *args, **kwargs):
        Path(f if isinstance(f, (str, os.PathLike)) else f.name).write_bytes(
            b"PK\x03\x04 part of a zip"
        )  # (a Path's .name is its basename)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", torch_save_on_a_full_disk)
    model = RiskPredictor(4, [3])
    optimizer = torch.optim.Adam(model.parameters())
    target = tmp_path / "latest.pt"
    with pytest.raises(OutputError, match=r"latest\.pt: cannot write: torch could not write the file \(.*unexpected pos"):
        save_checkpoint(target, checkpoint_document(model, model.state_dict(), optimizer, 1, {"loss": 0.5}, {}))
    assert leftovers(tmp_path) == []


def test_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_path(tmp_path / "a.json"):
            raise PermissionError(errno.EACCES, "Permission denied")
    with pytest.raises(RuntimeError, match="something else"):
        with atomic_path(tmp_path / "b.json"):
            raise RuntimeError("something else")
    assert leftovers(tmp_path) == []


def test_a_writer_with_its_own_temporary_files_loses_them_too(tmp_path):
    """As for a dataset directory staged beside its target by its own writer."""
    target = tmp_path / "data.vlarisk"
    staged = tmp_path / f".{target.name}.{os.getpid()}@{io_utils._host()}.abc.partial-dir"
    other = tmp_path / f".{target.name}.1@elsewhere.abc.partial-dir"  # another writer's: kept
    staged.mkdir()
    other.mkdir()
    (staged / "states.npy").write_bytes(b"\0" * 100)
    with pytest.raises(OutputError, match="data.vlarisk: cannot write"):
        with translate_disk_errors(target):
            raise OSError(errno.ENOSPC, "No space left on device") from None
    assert leftovers(tmp_path) == [other.name]


def test_a_chained_lack_of_space_is_found(tmp_path):
    with pytest.raises(OutputError, match="ENOSPC"):
        with translate_disk_errors(tmp_path / "x.npz"):
            try:
                raise no_space()
            except OSError as exc:
                raise ValueError("while compressing") from exc


def test_preparation_on_a_full_disk(tmp_path, monkeypatch, rollout_pickles):
    success, failure = rollout_pickles
    target = tmp_path / "out" / "data.vlarisk"
    original_open = open

    class FullFile:
        """A file beside ``target`` whose every write finds the disk full."""

        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            raise no_space()

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def full_open(file, mode="r", *args, **kwargs):
        handle = original_open(file, mode, *args, **kwargs)
        return FullFile(handle) if "w" in mode and str(target.parent) in str(file) else handle

    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(OutputError, match=r"data\.vlarisk: cannot write: no space left on device"):
        prepare_dataset(success, failure, target)
    monkeypatch.undo()
    assert leftovers(target.parent) == []


def test_the_command_line_prints_one_line_and_exits_1(tmp_path, capsys):
    target = tmp_path / "results.json"

    def main(argv):
        with atomic_path(target) as tmp:
            tmp.write_text("{")
            raise no_space(errno.EDQUOT)

    with pytest.raises(SystemExit) as exited:
        cli.run(main, [])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {target}: cannot write: disk quota exceeded (EDQUOT)")
    assert leftovers(tmp_path) == []


@pytest.fixture
def rollout_pickles(tmp_path):
    """A success and a failure pickle of the real format: 8 rollouts of 20 steps, 256-D hidden
    states (160 KiB of distinct states, more than the small file system holds)."""
    rng = np.random.default_rng(0)

    def rollouts(success):
        steps = lambda n: [  # noqa: E731
            {"hidden_state": rng.normal(size=256).astype(np.float32), "action": rng.normal(size=7).astype(np.float32)} for _ in range(n)
        ]
        return [{"success": success, "task": f"task {i % 2}", "steps": steps(20)} for i in range(4)]

    paths = []
    for name, success in (("success", True), ("failure", False)):
        path = tmp_path / "rollouts" / f"{name}_rollouts.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(rollouts(success)))
        paths.append(path)
    return paths


def _tmpfs_works() -> bool:
    if shutil.which("unshare") is None or sys.platform != "linux":
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(not _tmpfs_works(), reason="no user namespaces here to mount a small tmpfs (unshare -rm)")


def run_on_a_full_tmpfs(tmp_path: Path, command: list[str]) -> subprocess.CompletedProcess:
    """Run ``command`` with a 64 KiB tmpfs mounted on ``tmp_path / 'full'``; list what it left there."""
    mount = tmp_path / "full"
    mount.mkdir()
    quoted = shlex.join(command)
    script = f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(str(mount))} && {quoted}; status=$?; echo; echo LEFT: $(ls -A {shlex.quote(str(mount))}); exit $status"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=300)


@needs_tmpfs
def test_a_checkpoint_on_a_real_full_file_system(tmp_path):
    program = textwrap.dedent(
        f"""
        import torch
        from vlarisk.data.documents import save_checkpoint
        from vlarisk.model.checkpoints import checkpoint_document
        from vlarisk.core.cli import run
        from vlarisk.model.models import RiskPredictor

        def main(argv):
            model = RiskPredictor(64, [512])  # 130 KiB of weights for a 64 KiB file system
            document = checkpoint_document(model, model.state_dict(), torch.optim.Adam(model.parameters()), 1, {{"loss": 0.5}}, {{}})
            save_checkpoint({str(tmp_path / "full" / "best_model.pt")!r}, document)

        run(main)
        """
    )
    done = run_on_a_full_tmpfs(tmp_path, [sys.executable, "-c", program])
    assert done.returncode == 1, done.stderr
    # torch's own file writer reports a short write as "unexpected pos", without the errno
    assert done.stderr.count("\n") == 1, done.stderr
    assert re.fullmatch(
        rf"error: {re.escape(str(tmp_path / 'full' / 'best_model.pt'))}: cannot write: torch could not write the file \(.*unexpected pos.*\); "
        r"the usual cause is a full disk or an exceeded quota \(\d+\.\d KiB free in .*\); nothing was kept\. .*",
        done.stderr.strip(),
    ), done.stderr
    assert done.stdout.strip().endswith("LEFT:")


@needs_tmpfs
def test_preparation_on_a_real_full_file_system(tmp_path, rollout_pickles):
    success, failure = rollout_pickles
    output = tmp_path / "full" / "data.vlarisk"
    script = ROOT / "workflow_scripts" / "prepare_training_data.py"
    done = run_on_a_full_tmpfs(
        tmp_path, [sys.executable, str(script), "--success", str(success), "--failure", str(failure), "--output", str(output)]
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: {output}: cannot write: no space left on device (ENOSPC)")
    assert done.stdout.strip().endswith("LEFT:")
