"""Every example runs at its smallest configuration, so none of them rots."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str, *args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_image_to_video(tmp_path):
    out = run("image_to_video.py", "--count", "2", "--size", "16", "--T", "3", "-o", "clips.png", cwd=tmp_path)
    assert "2 clips of 3 frames" in out
    assert (tmp_path / "clips.png").stat().st_size > 0


def test_das_search_quick(tmp_path):
    run("das_search.py", "--quick", "--out", "g.json", cwd=tmp_path)
    assert (tmp_path / "g.json").exists()


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_help(script, tmp_path):
    assert "usage" in run(script, "--help", cwd=tmp_path).lower()
