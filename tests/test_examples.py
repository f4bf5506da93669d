"""Every example runs at its smallest configuration, so none of them rots."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

import img2vid as i2v

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str, *args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def run_failing(script: str, *args: str, cwd: Path) -> str:
    """Run an example that must refuse its input: a clean error message, no traceback."""
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr


def test_image_to_video(tmp_path):
    out = run("image_to_video.py", "--count", "2", "--size", "16", "--T", "3", "-o", "clips.png", cwd=tmp_path)
    assert "2 clips of 3 frames" in out
    assert (tmp_path / "clips.png").stat().st_size > 0


def test_das_search_quick(tmp_path):
    run("das_search.py", "--quick", "--out", "g.json", cwd=tmp_path)
    assert (tmp_path / "g.json").exists()


def test_finetune_pretrained_quick(tmp_path):
    out = run("finetune_pretrained.py", "--quick", "--out", "wrapped.pt", cwd=tmp_path)
    assert "11.18 M -> 11.20 M parameters" in out  # wrap(resnet18, ...) with GSF: the paper's Tab. 6 count
    assert re.search(r"2D checkpoint loaded into the wrapped model: 122 tensors, missing only the \d+ new fusion", out)
    assert re.search(r"epoch 1/1: train loss \d+\.\d{3}, test acc \d+\.\d %", out)
    state = torch.load(tmp_path / "wrapped.pt", weights_only=True)
    assert "fc.weight" in state and any(".fusion." in key for key in state)


def test_finetune_pretrained_from_a_2d_checkpoint(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "imagenet_2d.pt")  # a 1000-way head
    out = run("finetune_pretrained.py", "--quick", "--checkpoint", "imagenet_2d.pt", cwd=tmp_path)
    assert "its old head ['fc.weight', 'fc.bias'] left out" in out  # replaced by a 10-way head
    assert re.search(r"epoch 0/1: test acc \d+\.\d % \(before fine-tuning\)", out)
    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "r50.pt")
    assert "does not fit this architecture" in run_failing("finetune_pretrained.py", "--quick", "--checkpoint",
                                                           "r50.pt", cwd=tmp_path)


def test_cifar_quick(tmp_path):
    out = run("cifar.py", "--quick", "--out", "das.pt", cwd=tmp_path)
    assert "arm das (genotype translate_x:0.05,rotate:5.0,scale:1.05, T 5), 11.20 M parameters" in out
    assert re.search(r"final test acc \d+\.\d\d % \(best \d+\.\d\d % at epoch 1\)", out)
    checkpoint = torch.load(tmp_path / "das.pt", weights_only=True)
    assert checkpoint["args"]["arm"] == "das" and checkpoint["args"]["T"] == 5
    assert any(".fusion." in key for key in checkpoint["model"])


def test_cifar_baseline_arm_and_genotype_file(tmp_path):
    out = run("cifar.py", "--quick", "--arm", "baseline", cwd=tmp_path)
    assert "arm baseline " in out and "11.18 M parameters" in out and "final test acc" in out
    (tmp_path / "g.json").write_text(i2v.Genotype.parse("translate_y:0.1,scale:1.1").to_json())
    out = run("cifar.py", "--quick", "--arm", "augment", "--T", "3", "--genotype", "g.json", cwd=tmp_path)
    assert "arm augment (genotype translate_y:0.1,scale:1.1, T 3), 11.18 M parameters" in out


def test_cifar_missing_dataset_is_a_clear_error(tmp_path):
    assert "pass --download" in run_failing("cifar.py", "--data-dir", str(tmp_path), cwd=tmp_path)


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_help(script, tmp_path):
    assert "usage" in run(script, "--help", cwd=tmp_path).lower()
