"""The README's "Ten lines of library code" examples run exactly as printed (issue 12).

Each ```python block of that section runs in a fresh interpreter (offline, progress bars off) and must exit 0
and print a number.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Ten lines of library code"


def section_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    body = text.split(SECTION, 1)[1]
    nxt = re.search(r"^## ", body, flags=re.M)
    body = body[: nxt.start()] if nxt else body
    return re.findall(r"^```python\n(.*?)^```", body, flags=re.M | re.S)


BLOCKS = section_blocks()


def test_section_has_three_examples():
    assert len(BLOCKS) == 3, f"expected 3 python blocks in {SECTION!r}, found {len(BLOCKS)}"


@pytest.mark.parametrize("index", range(3))
def test_readme_example_runs(index):
    assert index < len(BLOCKS), f"{SECTION!r} has only {len(BLOCKS)} python blocks"
    env = {**os.environ, "POLYMODAL_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", BLOCKS[index]], capture_output=True, text=True, timeout=300,
                          env=env, cwd=README.parent)
    assert proc.returncode == 0, f"example {index + 1} failed:\n{proc.stderr[-3000:]}"
    assert re.search(r"\d+\.\d+|\d+/\d+", proc.stdout), f"example {index + 1} printed no number:\n{proc.stdout!r}"
