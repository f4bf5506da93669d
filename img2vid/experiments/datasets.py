"""The benchmark's data: cluttered digits, Fashion-MNIST or your own ``ImageFolder`` tree, as a :class:`Task`.

A task holds the training and validation images in memory (``per_class`` of each per class, drawn
from the training set with ``data_seed``) and a *closed* test set: :meth:`Task.test` reads it, and the
benchmark calls it once, after every arm has finished training, so no choice can see a test image.

Data errors are found when the task is loaded, before any training: an ``ImageFolder`` tree whose
``test/`` classes differ from ``train/``'s, a class folder without images, an image of ``test/`` (or a
drawn one of ``train/``) that PIL cannot read, Fashion-MNIST test files that cannot be read. Checking
decodes every test image once and discards it: no pixel and no label of the test split reaches the task
before :meth:`Task.test`.

Fashion-MNIST is read through :class:`torchvision.datasets.FashionMNIST`. The four original IDX files
(gzipped or not) are looked for in ``root`` (directly or in torchvision's ``FashionMNIST/raw`` layout),
then in Debian's ``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``), and only
then downloaded by torchvision into ``root``.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .digits import cluttered_digits

__all__ = ["DATASETS", "DEBIAN_FASHION_MNIST", "Task", "draw_per_class", "load_task"]

DATASETS = ("digits", "fashion-mnist", "imagefolder")

#: Where Debian's ``dataset-fashion-mnist`` package puts the four IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")


@dataclass
class Task:
    """Training and validation images in memory, and a test set read only on request.

    Shape:
        - ``train_x``, ``val_x``: ``(N, C, H, W)`` float32 in ``[0, 1]``; ``train_y``, ``val_y``: ``(N,)`` int64.
        - :meth:`test` returns ``(x, y)`` in the same layout.
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    num_classes: int
    description: str
    load_test: Callable[[], tuple[Tensor, Tensor]] = field(repr=False)
    test_reads: int = 0

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def test(self) -> tuple[Tensor, Tensor]:
        """The test images and labels. Counted in :attr:`test_reads`; the benchmark reads them once."""
        self.test_reads += 1
        return self.load_test()

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y)}


def draw_per_class(labels: Tensor, sizes: Sequence[int], seed: int) -> list[Tensor]:
    """Disjoint index sets, the ``i``-th with ``sizes[i]`` indices of every class, drawn with ``seed``.

    ``sizes=(n_train, n_val)`` gives the training and validation indices. Raises a clear error when a
    class is too small.
    """
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"images per class must be integers >= 1, got {list(sizes)!r}")
    generator = torch.Generator().manual_seed(seed)
    chosen: list[list[Tensor]] = [[] for _ in sizes]
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    for k in torch.unique(labels).tolist():
        members = torch.nonzero(labels == k).flatten()
        if len(members) < bounds[-1]:
            raise ValueError(f"class {k} has {len(members)} training images; {' + '.join(map(str, sizes))} "
                             f"(training + validation images per class) need {bounds[-1]}")
        members = members[torch.randperm(len(members), generator=generator)]
        for part in range(len(sizes)):
            chosen[part].append(members[bounds[part]:bounds[part + 1]])
    return [torch.sort(torch.cat(rows)).values for rows in chosen]


# --------------------------------------------------------------------------------------------------
# Cluttered digits
# --------------------------------------------------------------------------------------------------


def _digits(per_class: int, val_per_class: int, data_seed: int, *, canvas: int = 32, digit_size: int = 16,
            clutter: int = 3) -> Task:
    data = cluttered_digits(per_class, val_per_class, canvas=canvas, digit_size=digit_size, clutter=clutter,
                            seed=data_seed)
    return Task("digits", data.train_x, data.train_y, data.val_x, data.val_y, 10,
                f"cluttered scikit-learn digits, {canvas}x{canvas}, data seed {data_seed}",
                lambda: (data.test_x, data.test_y))


# --------------------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------------------


def _idx_folder(folder: Path) -> Path | None:
    """``folder`` or its ``FashionMNIST/raw`` if it holds the four IDX files (gzipped or not)."""
    for candidate in (folder, folder / "FashionMNIST" / "raw"):
        if all((candidate / name).is_file() or (candidate / f"{name}.gz").is_file() for name in _IDX_FILES):
            return candidate
    return None


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "img2vid"


def _torchvision_root(idx: Path) -> Path:
    """A root in torchvision's layout (``ROOT/FashionMNIST/raw/<uncompressed IDX files>``) for ``idx``."""
    if idx.name == "raw" and idx.parent.name == "FashionMNIST" and all((idx / n).is_file() for n in _IDX_FILES):
        return idx.parent.parent
    root = _cache_dir() / "fashion-mnist"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in _IDX_FILES:
        target = raw / name
        if target.is_file():
            continue
        # One partial file per process: concurrent runs filling the same cache must not share it.
        partial = raw / f"{name}.{os.getpid()}.partial"
        if (idx / name).is_file():
            shutil.copyfile(idx / name, partial)
        else:
            with gzip.open(idx / f"{name}.gz", "rb") as source, open(partial, "wb") as sink:
                shutil.copyfileobj(source, sink)
        partial.replace(target)
    return root


def _fashion_mnist(root: str | Path | None, per_class: int, val_per_class: int, data_seed: int) -> Task:
    from torchvision.datasets import FashionMNIST

    searched = []
    for folder in ([Path(root)] if root is not None else []) + [DEBIAN_FASHION_MNIST]:
        searched.append(str(folder))
        idx = _idx_folder(folder)
        if idx is not None:
            tv_root, where = _torchvision_root(idx), str(idx)
            break
    else:
        tv_root = Path(root) if root is not None else _cache_dir() / "fashion-mnist"
        where = f"downloaded by torchvision into {tv_root}"
        try:
            FashionMNIST(tv_root, train=True, download=True)
            FashionMNIST(tv_root, train=False, download=True)
        except Exception as error:
            raise FileNotFoundError(
                "Fashion-MNIST not found. Give it one of three ways: (1) --root DIR holding the four IDX files "
                f"({', '.join(_IDX_FILES)}, gzipped or not, directly or in DIR/FashionMNIST/raw); (2) on "
                "Debian/Ubuntu, `apt-get install dataset-fashion-mnist`, which puts them in "
                f"{DEBIAN_FASHION_MNIST}; (3) a network connection, so torchvision can download them. "
                f"Looked in: {', '.join(searched) or 'nowhere'}; download failed: {error}"
            ) from None
    train = FashionMNIST(tv_root, train=True)
    try:  # are the test files readable? Read now, before any training, and dropped.
        FashionMNIST(tv_root, train=False)
    except Exception as error:
        raise ValueError(f"Fashion-MNIST's test files ({where}) cannot be read: {error}") from error
    images = train.data.unsqueeze(1).float().div_(255)
    fit, val = draw_per_class(train.targets, (per_class, val_per_class), data_seed)

    def load_test() -> tuple[Tensor, Tensor]:
        test = FashionMNIST(tv_root, train=False)
        return test.data.unsqueeze(1).float().div_(255), test.targets.clone()

    return Task("fashion-mnist", images[fit], train.targets[fit], images[val], train.targets[val], 10,
                f"Fashion-MNIST 28x28 ({where}), {per_class} train + {val_per_class} val images per class drawn "
                f"from the 60,000 training images with data seed {data_seed}; test: all 10,000", load_test)


# --------------------------------------------------------------------------------------------------
# ImageFolder
# --------------------------------------------------------------------------------------------------


def _image_tree(folder: Path, transform: Callable[[Any], Any]) -> Any:
    """``ImageFolder(folder)``, refusing a tree without class folders or with a class folder without images."""
    from torchvision import datasets
    from torchvision.datasets.folder import IMG_EXTENSIONS

    try:
        tree = datasets.ImageFolder(str(folder), transform=transform, allow_empty=True)
    except FileNotFoundError:
        raise ValueError(f"{folder} holds no class folder; it must hold one sub-folder of images per class") from None
    found = {label for _, label in tree.samples}
    empty = [folder / name for name, label in tree.class_to_idx.items() if label not in found]
    if empty:
        also = f"; also empty: {', '.join(map(str, empty[1:]))}" if len(empty) > 1 else ""
        raise ValueError(f"class folder {empty[0]} holds no image (files ending in {', '.join(IMG_EXTENSIONS)}); "
                         f"every class folder needs at least one{also}")
    return tree


def _read(tree: Any, index: int) -> tuple[Tensor, int]:
    """``tree[index]`` (image, label), naming the file when it cannot be read."""
    try:
        return tree[index]
    except Exception as error:
        raise ValueError(f"{tree.samples[index][0]} cannot be read as an image: {error}") from error


def _load_images(tree: Any, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
    pairs = [_read(tree, i) for i in indices]
    if not pairs:
        raise ValueError("no images to load")
    return torch.stack([image for image, _ in pairs]), torch.tensor([label for _, label in pairs])


def _imagefolder(root: str | Path | None, per_class: int, val_per_class: int, data_seed: int, size: int) -> Task:
    from torchvision.transforms import v2

    if root is None:
        raise ValueError("--dataset imagefolder needs --root DIR, where DIR/train and DIR/test are ImageFolder trees")
    root = Path(root)
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise FileNotFoundError(f"--dataset imagefolder: {root / part} is not a folder; DIR/train and DIR/test "
                                    "must each hold one sub-folder of images per class")
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"image size must be an integer >= 2, got {size!r}")
    transform = v2.Compose([v2.ToImage(), v2.RGB(), v2.Resize((size, size), antialias=True),
                            v2.ToDtype(torch.float32, scale=True)])
    # Both trees' structure, and every test image's readability, before any training.
    train, test = _image_tree(root / "train", transform), _image_tree(root / "test", transform)
    if test.class_to_idx != train.class_to_idx:
        only_test = sorted(set(test.class_to_idx) - set(train.class_to_idx))
        only_train = sorted(set(train.class_to_idx) - set(test.class_to_idx))
        raise ValueError(f"{root / 'test'} and {root / 'train'} must hold the same class folders; only in test/: "
                         f"{only_test}, only in train/: {only_train}")
    for i in range(len(test)):  # each test image read as the final evaluation will read it, then dropped
        _read(test, i)
    labels = torch.tensor(train.targets)
    fit, val = draw_per_class(labels, (per_class, val_per_class), data_seed)
    train_x, train_y = _load_images(train, fit.tolist())
    val_x, val_y = _load_images(train, val.tolist())

    def load_test() -> tuple[Tensor, Tensor]:
        return _load_images(test, range(len(test)))

    return Task("imagefolder", train_x, train_y, val_x, val_y, len(train.classes),
                f"ImageFolder {root} at {size}x{size}, {len(train.classes)} classes, {per_class} train + "
                f"{val_per_class} "
                f"val images per class drawn from train/ with data seed {data_seed}; test: every image of test/",
                load_test)


def load_task(dataset: str, *, root: str | Path | None = None, per_class: int = 10,
              val_per_class: int | None = None, data_seed: int = 0, image_size: int = 32) -> Task:
    """The benchmark's :class:`Task` for ``dataset`` in :data:`DATASETS`.

    Args:
        dataset: ``"digits"`` (offline, needs scikit-learn), ``"fashion-mnist"`` or ``"imagefolder"``.
        root: Fashion-MNIST's IDX folder or download target; the ``ImageFolder`` root (with ``train/``
            and ``test/``).
        per_class: training images per class.
        val_per_class: validation images per class (default: ``per_class``).
        data_seed: fixes which images are drawn.
        image_size: ``ImageFolder`` images are resized to this square size (RGB).
    """
    val_per_class = per_class if val_per_class is None else val_per_class
    if dataset == "digits":
        return _digits(per_class, val_per_class, data_seed)
    if dataset == "fashion-mnist":
        return _fashion_mnist(root, per_class, val_per_class, data_seed)
    if dataset == "imagefolder":
        return _imagefolder(root, per_class, val_per_class, data_seed, image_size)
    raise ValueError(f"unknown dataset {dataset!r}; choose from {list(DATASETS)}")


