"""The demo: its dataset, its network, and a tiny end-to-end run that writes every file."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from img2vid import Genotype
from img2vid.data import cluttered_digits, load_digit_images
from img2vid.demo import ARMS, QUICK, DemoConfig, clip_strip, random_genotype, run_demo, small_resnet
from img2vid.rf import theoretical_rf

# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def test_digits_are_the_real_scikit_learn_scans():
    images, labels = load_digit_images()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert images.min() == 0.0 and images.max() == 1.0
    assert sorted(set(labels.tolist())) == list(range(10))


def test_cluttered_digits_shapes_splits_and_ranges():
    d = cluttered_digits(10, 5, canvas=32, digit_size=16, seed=0)
    assert d.train_x.shape == (100, 1, 32, 32) and d.val_x.shape == (50, 1, 32, 32)
    assert d.test_x.shape == (1797 - 150, 1, 32, 32)  # every held-out image is a test image
    assert d.sizes() == {"train": 100, "val": 50, "test": 1647}
    for x, y in ((d.train_x, d.train_y), (d.val_x, d.val_y), (d.test_x, d.test_y)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.min() >= 0 and x.max() <= 1
        assert len(x) == len(y)
    assert torch.bincount(d.train_y, minlength=10).tolist() == [10] * 10
    assert torch.bincount(d.val_y, minlength=10).tolist() == [5] * 10
    # Each canvas holds a digit (bright pixels) on black, with clutter: more ink than a bare digit.
    bare = cluttered_digits(10, 5, clutter=0, seed=0)
    assert (d.train_x > 0.5).sum() > (bare.train_x > 0.5).sum()
    assert ((d.train_x > 0.5).flatten(1).sum(1) > 10).all()


def test_cluttered_digits_is_deterministic_and_seeded():
    a, b = cluttered_digits(5, 2, seed=3), cluttered_digits(5, 2, seed=3)
    for field in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    c = cluttered_digits(5, 2, seed=4)
    assert not torch.equal(a.train_x, c.train_x)


def test_cluttered_digits_places_digits_at_varied_positions():
    d = cluttered_digits(10, 0, clutter=0, seed=0)  # no clutter: the ink is the digit alone
    ink = d.train_x[:, 0] > 0.05
    cols = torch.stack([torch.nonzero(row.any(0)).flatten()[[0, -1]] for row in ink]).float()
    centres = cols.mean(1)
    assert centres.std() > 3  # spread over the 32-pixel canvas, not always in the middle
    assert (cols[:, 1] - cols[:, 0] < 16).all()  # and each digit fits in its 16-pixel box


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_per_class": 0}, "train_per_class"),
        ({"train_per_class": 170}, "no test image"),
        ({"canvas": 8}, "canvas"),
        ({"fragment": 20}, "fragment"),
        ({"clutter": -1}, "clutter"),
        ({"digit_size": 2.5}, "digit_size"),
    ],
)
def test_cluttered_digits_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cluttered_digits(**kwargs)


# --------------------------------------------------------------------------------------------------
# Network, genotypes, pictures
# --------------------------------------------------------------------------------------------------


def test_small_resnet_shapes_and_receptive_field_below_the_digit():
    net = small_resnet(width=8)
    assert net(torch.rand(3, 1, 32, 32)).shape == (3, 10)
    # The longest path: conv1, layer1 (two 3x3), layer2.conv1 (3x3 / 2), layer2.conv2 (3x3).
    assert theoretical_rf([(3, 1), (3, 1), (3, 1), (3, 2), (3, 1)]) == 13 < 16


def test_random_genotype_is_seeded_from_the_affine_space_and_moves():
    g = random_genotype(4, seed=1)
    assert g == random_genotype(4, seed=1) and len(g) == 4
    assert {name for name, _ in g} <= {"identity", "translate_x", "translate_y", "scale", "rotate"}
    assert all(random_genotype(1, seed=s)[0][0] != "identity" for s in range(20))  # never a replica
    assert len({str(random_genotype(3, seed=s)) for s in range(6)}) > 1
    with pytest.raises(ValueError, match="steps"):
        random_genotype(0, seed=0)


def test_clip_strip_lays_frames_out_in_rows():
    clips = torch.zeros(2, 3, 1, 4, 5)
    clips[1, 2] = 1.0
    image = clip_strip(clips, zoom=2, gap=1)
    assert image.size == (3 * 10 + 4, 2 * 8 + 3)  # (width, height)
    pixels = torch.from_numpy(np.array(image))
    assert pixels.shape == (19, 34, 3)
    assert pixels[1, 1].tolist() == [0, 0, 0]  # first clip, first frame
    assert pixels[-2, -2].tolist() == [255, 255, 255]  # second clip, last frame is white
    assert pixels[0, 0].tolist() == [128, 128, 128]  # grey gap
    with pytest.raises(ValueError, match="channels"):
        clip_strip(torch.zeros(3, 2, 4, 4))


def test_config_validation_and_quick_is_smaller():
    assert QUICK.seeds < DemoConfig().seeds and QUICK.epochs < DemoConfig().epochs
    assert DemoConfig().seeds >= 5
    with pytest.raises(ValueError, match="seeds"):
        DemoConfig(seeds=0)
    with pytest.raises(ValueError, match="integer"):
        DemoConfig(epochs=2.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# The whole job, tiny
# --------------------------------------------------------------------------------------------------

TINY = DemoConfig(seeds=2, train_per_class=2, val_per_class=1, canvas=16, digit_size=8, clutter=1, width=4,
                  epochs=2, batch_size=10, search_epochs=1, nodes=1, erf_samples=1, test_limit=60)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    result = run_demo(TINY, out, progress=False, log=lines.append)
    return out, result, "\n".join(lines)


def test_tiny_demo_writes_every_file(tiny_run):
    out, _, _ = tiny_run
    names = {p.name for p in out.iterdir()}
    assert {"results.csv", "results.json", "genotype.json", "clips.png", "receptive_fields.png"} <= names
    for picture in ("clips.png", "receptive_fields.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tiny_demo_table_has_every_arm_and_is_consistent(tiny_run):
    out, result, printed = tiny_run
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["arm"] for row in rows] == list(ARMS)
    saved = json.loads((out / "results.json").read_text())
    assert saved["table"] == result["table"]
    for row in result["table"]:
        tests = result["per_seed"][row["arm"]]["test"]
        assert len(tests) == TINY.seeds == row["seeds"]
        assert row["test_acc_mean"] == pytest.approx(sum(tests) / len(tests))
        diffs = [a - b for a, b in zip(tests, result["per_seed"]["baseline"]["test"])]
        assert row["diff_vs_baseline_mean"] == pytest.approx(sum(diffs) / len(diffs))
        assert row["arm"] in printed
    baseline = next(row for row in result["table"] if row["arm"] == "baseline")
    assert baseline["diff_vs_baseline_mean"] == 0.0
    assert result["data"]["test"] == TINY.test_limit
    assert result["machine"]["torch"] == torch.__version__
    assert "DAS" in result["verdict"] and result["verdict"] in printed


def test_tiny_demo_genotypes(tiny_run):
    out, result, printed = tiny_run
    genotype = Genotype.from_json((out / "genotype.json").read_text())
    assert len(genotype) == 1  # one node, one edge
    table = {row["arm"]: row for row in result["table"]}
    assert table["das"]["genotype"] == table["augment"]["genotype"] == str(genotype)
    assert table["replica"]["genotype"] == "identity"
    assert result["search"]["genotype"] == str(genotype)
    assert len(result["search"]["selection_scores"]) == 1 and len(result["search"]["selection_scores"][0]) == 5
    assert "arg-max genotype" in printed and "perturbation-selected genotype" in printed
    randoms = result["per_seed"]["random"]["genotype"]
    assert randoms == [str(random_genotype(1, seed)) for seed in range(TINY.seeds)]


def test_demo_is_reproducible_for_the_baseline(tmp_path):
    small = dataclasses.replace(TINY, seeds=1)
    a = run_demo(small, tmp_path / "a", progress=False, arms=["baseline"], log=lambda _: None)
    b = run_demo(small, tmp_path / "b", progress=False, arms=["baseline"], log=lambda _: None)
    assert a["per_seed"] == b["per_seed"]


def test_demo_rejects_bad_arms_and_devices(tmp_path):
    with pytest.raises(ValueError, match="arms"):
        run_demo(TINY, tmp_path, arms=["das"], progress=False)
    with pytest.raises(ValueError, match="arms"):
        run_demo(TINY, tmp_path, arms=["baseline", "mixup"], progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            run_demo(TINY, tmp_path, device="cuda", progress=False)
    with pytest.raises(ValueError, match="'tpu' is not a torch device"):
        run_demo(TINY, tmp_path, device="tpu", progress=False)
