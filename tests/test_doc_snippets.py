"""Every fenced block of README.md and docs/*.md marked ``runnable`` runs as written.

The convention (README, "Quick start"): runnable blocks run from the repository root after ``make
demo``, where ``examples/out/lfb_train.h5`` is the demo bank and ``examples/data/`` the demo's inputs
and random checkpoint. Here a temporary directory is laid out the same way from the session's tiny
dataset and bank (same video ids and seconds as the demo), and each block runs there unchanged:
python blocks in this process (``__name__ == "__main__"``), bash blocks in ``bash -eu`` with this
environment's ``lfbtool`` first on PATH. Nothing in a block is substituted.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\S*)(.*)$")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int  # of the opening fence, 1-based
    language: str
    runnable: bool
    code: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def fenced_blocks(text: str, doc: str) -> list[Block]:
    """The fenced blocks of a Markdown text; ``runnable`` is a word of the fence's info string."""
    blocks: list[Block] = []
    opened: tuple[int, str, str] | None = None
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if opened is None and match:
            opened, lines = (number, match.group(1), match.group(2)), []
        elif opened is not None and line.startswith("```"):
            start, language, rest = opened
            blocks.append(Block(doc, start, language, "runnable" in rest.split(), "\n".join(lines) + "\n"))
            opened = None
        elif opened is not None:
            lines.append(line)
    assert opened is None, f"{doc}:{opened[0]}: a fenced block is never closed"
    return blocks


def all_blocks() -> list[Block]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [block for path in docs for block in fenced_blocks(path.read_text(), str(path.relative_to(ROOT)))]


BLOCKS = all_blocks()
RUNNABLE = [block for block in BLOCKS if block.runnable]


def test_fence_parser() -> None:
    text = "a\n```python runnable\nx = 1\n```\n```bash\nls\n```\n```\nplain\n```\n"
    assert fenced_blocks(text, "t.md") == [
        Block("t.md", 2, "python", True, "x = 1\n"),
        Block("t.md", 5, "bash", False, "ls\n"),
        Block("t.md", 8, "", False, "plain\n"),
    ]


def test_runnable_blocks_are_found() -> None:
    # README's bank reading, reading.md's FeatureBank / DataLoader / MMAction2 LFB / CLI blocks,
    # checkpoints.md's read_checkpoint: losing the marks must not pass silently.
    assert len(RUNNABLE) >= 6, [block.id for block in RUNNABLE]
    assert {block.language for block in RUNNABLE} <= {"python", "bash"}


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.language == "python"], ids=lambda b: b.id)
def test_python_blocks_parse_and_pick_no_device(block: Block) -> None:
    """Every python block is Python (runnable or not) and never hard-codes a CUDA device."""
    ast.parse(block.code, filename=block.id)
    assert not re.search(r"""device\s*=\s*["']cuda""", block.code), f"{block.id}: hard-coded CUDA device"


@pytest.fixture
def demo_root(tmp_path: Path, half_bank, tiny_data) -> Path:
    """A directory laid out as the repository after `make demo`: examples/out/lfb_train.h5, examples/data/."""
    out = tmp_path / "examples" / "out"
    out.mkdir(parents=True)
    shutil.copy(half_bank.bank, out / "lfb_train.h5")
    data = tmp_path / "examples" / "data"
    data.symlink_to(Path(tiny_data.example.frames_root).parent, target_is_directory=True)
    assert (data / "slowonly_r50_random.pth").is_file()
    return tmp_path


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_runnable_block(block: Block, demo_root: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture) -> None:
    if block.language == "python":
        monkeypatch.chdir(demo_root)
        exec(compile(block.code, block.id, "exec"), {"__name__": "__main__"})  # noqa: S102 - the docs' own code
        return
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(["bash", "-eu", "-o", "pipefail", "-c", block.code], cwd=demo_root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{block.id} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
