"""Cluttered digits: the demo's small, real, offline dataset where the receptive field matters.

Scikit-learn's digits (1,797 real 8 x 8 scans, shipped with scikit-learn, no download) are too easy at
full size: every method lands at 98-99 %. Here each digit is enlarged, placed at a random position on a
larger black canvas, and surrounded by clutter: square fragments cut from *other* digits of the same
split. Only a few training images per class are kept, and every remaining image is a test image. The
canvases are generated once, from a fixed seed, so the dataset is the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ClutteredDigits", "cluttered_digits", "load_digit_images"]


@dataclass(frozen=True)
class ClutteredDigits:
    """Train, validation and test canvases with their labels.

    Shape:
        - ``*_x``: ``(N, 1, canvas, canvas)`` float32 in ``[0, 1]``; ``*_y``: ``(N,)`` int64 in ``[0, 10)``.
    """

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    seed: int
    canvas: int
    digit_size: int

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """Scikit-learn's 1,797 digits as ``(N, 8, 8)`` float32 in ``[0, 1]`` and ``(N,)`` int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the demo dataset needs scikit-learn: pip install 'img2vid[demo]' (or scikit-learn)"
        ) from None
    bunch = load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0).clip(0.0, 1.0)
    return images, np.asarray(bunch.target, dtype=np.int64)


def cluttered_digits(
    train_per_class: int = 10,
    val_per_class: int = 5,
    *,
    canvas: int = 32,
    digit_size: int = 16,
    clutter: int = 3,
    fragment: int = 6,
    seed: int = 0,
) -> ClutteredDigits:
    """Build the cluttered-digits dataset deterministically from ``seed``.

    Each class is split at random into ``train_per_class`` training images, ``val_per_class``
    validation images (for the search and its selection step) and the rest, all of which are test
    images. Each digit is resized to ``digit_size`` (bilinear), pasted at a uniformly random position on
    a ``canvas x canvas`` black image, over ``clutter`` fragments of ``fragment x fragment`` pixels cut
    at random from other resized digits of the *same* split (so no test pixel reaches training).

    Args:
        train_per_class: images per class in the training split.
        val_per_class: images per class in the validation split.
        canvas: side of the square output image, ``>= digit_size``.
        digit_size: side of the resized digit, ``>= 8`` recommended (the scans are 8 x 8).
        clutter: number of fragments per image, ``>= 0``.
        fragment: side of each fragment, ``1 <= fragment <= digit_size``.
        seed: fixes the split, the positions and the fragments.

    Returns:
        A :class:`ClutteredDigits`.
    """
    for name, value, low in (("train_per_class", train_per_class, 1), ("val_per_class", val_per_class, 0),
                             ("digit_size", digit_size, 1), ("clutter", clutter, 0), ("fragment", fragment, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(canvas, int) or canvas < digit_size:
        raise ValueError(f"canvas must be an integer >= digit_size ({digit_size}), got {canvas!r}")
    if fragment > digit_size:
        raise ValueError(f"fragment ({fragment}) must not exceed digit_size ({digit_size})")
    images, labels = load_digit_images()
    counts = np.bincount(labels, minlength=10)
    if train_per_class + val_per_class >= counts.min():
        raise ValueError(
            f"train_per_class + val_per_class = {train_per_class + val_per_class} leaves no test image "
            f"for the smallest class ({counts.min()} images)"
        )
    rng = np.random.default_rng(seed)
    # (N, 8, 8) -> (N, digit_size, digit_size), bilinear like any torchvision resize.
    resized = F.interpolate(torch.from_numpy(images)[:, None], size=(digit_size, digit_size), mode="bilinear",
                            align_corners=False).clamp(0, 1)[:, 0].numpy()
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for k in range(10):
        members = rng.permutation(np.flatnonzero(labels == k))
        splits["train"] += members[:train_per_class].tolist()
        splits["val"] += members[train_per_class:train_per_class + val_per_class].tolist()
        splits["test"] += members[train_per_class + val_per_class:].tolist()
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for name in ("train", "val", "test"):
        index = np.asarray(sorted(splits[name]), dtype=np.int64)
        out[name] = (torch.from_numpy(_render(resized, index, canvas, clutter, fragment, rng)),
                     torch.from_numpy(labels[index]))
    return ClutteredDigits(*out["train"], *out["val"], *out["test"], seed=seed, canvas=canvas,
                           digit_size=digit_size)


def _render(digits: np.ndarray, index: np.ndarray, canvas: int, clutter: int, fragment: int,
            rng: np.random.Generator) -> np.ndarray:
    """Paste ``digits[index]`` on cluttered canvases. Shape: ``(len(index), 1, canvas, canvas)``."""
    size = digits.shape[-1]
    out = np.zeros((len(index), 1, canvas, canvas), dtype=np.float32)
    for row, i in enumerate(index):
        board = out[row, 0]
        if len(index) > 1:
            for _ in range(clutter):
                # A fragment of another digit of the same split, at a random place on the canvas.
                j = i
                while j == i:
                    j = int(rng.choice(index))
                fy, fx = rng.integers(0, size - fragment + 1, size=2)
                piece = digits[j, fy:fy + fragment, fx:fx + fragment]
                py, px = rng.integers(0, canvas - fragment + 1, size=2)
                np.maximum(board[py:py + fragment, px:px + fragment], piece,
                           out=board[py:py + fragment, px:px + fragment])
        y, x = rng.integers(0, canvas - size + 1, size=2)
        np.maximum(board[y:y + size, x:x + size], digits[i], out=board[y:y + size, x:x + size])
    return out
