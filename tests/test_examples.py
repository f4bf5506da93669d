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
    import json

    out = run("das_search.py", "--quick", "--seeds", "1", "--no-progress", "--out", "g.json", cwd=tmp_path)
    saved = json.loads((tmp_path / "g.json").read_text())
    genotype = i2v.Genotype.from_json(saved["genotype"])
    assert len(genotype) == 3  # --quick: nodes=2, three edges, one step each
    assert f"perturbation genotype: {genotype}" in out
    assert "margins (validation images" in out and "arg-max genotype" in out
    # The search's reported numbers are real fractions, and the comparison ran every candidate.
    search = saved["search"]
    assert 0.0 <= search["network_val_accuracy"] <= 1.0 and 0.0 <= search["selection_val_drop"] <= 1.0
    assert set(saved["val_accuracy"]) == {"baseline", "perturbation", "arg-max", "random"}
    assert all(len(v) == 1 and 0.0 <= v[0] <= 1.0 for v in saved["val_accuracy"].values())
    random = i2v.Genotype.parse(saved["candidates"]["random"])
    assert sum(n != "identity" for n, _ in random) == sum(n != "identity" for n, _ in genotype)


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


def test_segmentation_quick(tmp_path):
    out = run("segmentation.py", "--quick", cwd=tmp_path)
    # A label map moved by ImageToVideo and undone by inverse comes back; without the undo it does not.
    undone, raw = map(float, re.search(r"undone: ([\d.]+) % of object pixels back in place \(([\d.]+) %", out).groups())
    assert "labels stay labels: True" in out and undone > 95 and undone > raw + 10
    # GSF starts as the identity: wrapped model == mean of the 2D model's undone per-frame maps.
    assert float(re.search(r"max relative difference (\S+)\)", out).group(1)) < 1e-4
    acc, miou = map(float, re.search(r"wrapped: test pixel accuracy ([\d.]+) %, mIoU ([\d.]+) %", out).groups())
    assert 0 < acc <= 100 and 0 < miou <= 100


def test_segmentation_smp_pspnet(tmp_path):
    """The paper's PSPNet from segmentation_models_pytorch, wrapped: its single map lines up too."""
    pytest.importorskip("segmentation_models_pytorch", reason="segmentation_models_pytorch is not installed")
    out = run("segmentation.py", "--quick", "--arch", "smp_pspnet", cwd=tmp_path)
    assert "smp_pspnet" in out and "labels stay labels: True" in out
    assert float(re.search(r"max relative difference (\S+)\)", out).group(1)) < 1e-4
    assert re.search(r"wrapped: test pixel accuracy [\d.]+ %", out)


def test_segmentation_learns(tmp_path):
    """LR-ASPP, 128 canvases of 32 x 32, 8 epochs: the wrapped model beats "background everywhere"."""
    out = run("segmentation.py", "--arch", "lraspp_mobilenet_v3_large", "--size", "32", "--digit-size", "12",
              "--train", "128", "--test", "64", "--T", "3", "--epochs", "8", "--no-progress", cwd=tmp_path)
    background = float(re.search(r"all-background prediction: .* mIoU ([\d.]+) %", out).group(1))
    miou = float(re.search(r"wrapped: .* mIoU ([\d.]+) %", out).group(1))
    assert miou > background + 3, out


def test_segmentation_voc_layout(tmp_path):
    """--dataset voc reads a VOCdevkit/VOC2012 tree from disk (a tiny fake one here): v2 wrapper, masks, 255."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 2)):
        names = [f"{split}{i}" for i in range(count)]
        for name in names:
            Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
            mask = np.zeros((40, 50), np.uint8)
            mask[5:25, 10:30], mask[0] = rng.integers(1, 21), 255  # an object and a "void" border
            Image.fromarray(mask, mode="P").save(root / "SegmentationClass" / f"{name}.png")
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    out = run("segmentation.py", "--quick", "--dataset", "voc", "--data-dir", str(tmp_path), "--arm", "both",
              cwd=tmp_path)
    assert "voc: 8 train / 2 test images" in out and "21 classes" in out
    assert "wrapped: test pixel accuracy" in out and "baseline: test pixel accuracy" in out


def test_segmentation_bad_input(tmp_path):
    assert "--T: expected int >= 1" in run_failing("segmentation.py", "--T", "0", cwd=tmp_path)
    assert "unknown op" in run_failing("segmentation.py", "--genotype", "warp:1", cwd=tmp_path)
    assert "not a torch device" in run_failing("segmentation.py", "--device", "tpu", cwd=tmp_path)


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_help(script, tmp_path):
    assert "usage" in run(script, "--help", cwd=tmp_path).lower()
