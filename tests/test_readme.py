"""The README's commands run as written.

Convention: a README code block is run by this test when the line just before its opening
```` ```bash ```` fence is ``<!-- runnable -->``. The marked blocks run in the README's order, each
with ``bash -e -o pipefail`` (any failing line fails the test), all in one fresh copy of the project
whose ``.venv`` is the environment running the tests: as a reader following the README top to
bottom would run them. Mark only blocks that finish in about a minute on the project's small data;
leave full runs of the embedded default (``make run``, ``snakemake --cores 2 all``) unmarked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_utils import REPO, copy_project

MARKER = "<!-- runnable -->"
BLOCK = re.compile(rf"^{re.escape(MARKER)}\n```bash\n(.*?)^```$", re.M | re.S)


def runnable_blocks(text: str) -> list[str]:
    """The bash blocks marked runnable, in order; a marker not followed by a bash block is an error."""
    blocks = BLOCK.findall(text)
    markers = re.findall(rf"^{re.escape(MARKER)}$", text, re.M)  # a marker is a line of its own; prose may name it
    assert len(blocks) == len(markers), f"every {MARKER} must stand on the line just before a ```bash fence"
    return blocks


def test_markers_select_exactly_the_marked_bash_blocks():
    text = f"```bash\nnot this\n```\nprose naming `{MARKER}`\n{MARKER}\n```bash\necho one\necho two\n```\n\n{MARKER}\n```bash\necho three\n```\n"
    assert runnable_blocks(text) == ["echo one\necho two\n", "echo three\n"]
    with pytest.raises(AssertionError, match="just before"):
        runnable_blocks(f"{MARKER}\n\n```bash\necho one\n```\n")


@pytest.mark.slow
@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="the README's blocks activate .venv: run the tests from a virtual environment")
def test_readme_runnable_blocks_run(tmp_path):
    blocks = runnable_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    assert blocks, f"the README marks no block {MARKER}"
    project = copy_project(tmp_path / "checkout")
    (project / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    for block in blocks:
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block], cwd=project, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"{block}\nexit status {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
