"""Cluttered digits: the real scans, placed among clutter, deterministic splits."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("sklearn")

from img2vid.experiments.digits import cluttered_digits, load_digit_images


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
