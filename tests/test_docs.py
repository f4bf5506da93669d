"""The Python snippets of the README and the docs run as written, so they never rot.

Blocks fenced ``python`` run; blocks fenced ``py`` are illustrations that need what a test cannot have
(downloaded weights, a user's checkpoint).
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_python_snippets_run(page):
    namespace: dict = {}
    for block in python_blocks(page):  # blocks of a page share one namespace, as a reader's session
        exec(compile(block, str(page), "exec"), namespace)
