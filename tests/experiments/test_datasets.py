"""The loaders: Fashion-MNIST from IDX files (gzipped or not), ImageFolder trees, and the closed test split."""

import gzip
import re
import struct

import numpy as np
import pytest
import torch

from img2vid.experiments import datasets
from img2vid.experiments.datasets import draw_per_class, load_task


def _write_idx(path, array: np.ndarray, compress: bool) -> None:
    """The IDX format of LeCun's MNIST files: magic (0, 0, dtype 0x08, ndim), big-endian sizes, bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def _fake_fashion(folder, n_train=60, n_test=13, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images = {"train": rng.integers(0, 256, (n_train, 28, 28)), "t10k": rng.integers(0, 256, (n_test, 28, 28))}
    labels = {"train": np.arange(n_train) % 10, "t10k": rng.integers(0, 10, n_test)}
    for part in ("train", "t10k"):
        _write_idx(folder / f"{part}-images-idx3-ubyte", images[part], compress)
        _write_idx(folder / f"{part}-labels-idx1-ubyte", labels[part], compress)
    return images, labels


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    """Point the Debian folder and the cache somewhere empty, so only the test's files count."""
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path, no_debian, compress):
    images, labels = _fake_fashion(tmp_path / "idx", compress=compress)
    task = load_task("fashion-mnist", root=tmp_path / "idx", per_class=2, data_seed=1)
    assert task.train_x.shape == (20, 1, 28, 28) and task.val_x.shape == (20, 1, 28, 28)
    assert torch.bincount(task.train_y).tolist() == [2] * 10 and torch.bincount(task.val_y).tolist() == [2] * 10
    # The pixels are the file's bytes / 255: find each drawn image among the originals.
    originals = torch.from_numpy(images["train"]).float() / 255
    for x, y in zip(task.train_x, task.train_y):
        match = [i for i in range(60) if torch.equal(originals[i], x[0])]
        assert len(match) == 1 and labels["train"][match[0]] == int(y)
    assert task.test_reads == 0
    test_x, test_y = task.test()
    assert task.test_reads == 1
    torch.testing.assert_close(test_x[:, 0], torch.from_numpy(images["t10k"]).float() / 255)
    assert test_y.tolist() == labels["t10k"].tolist()


def test_fashion_mnist_in_torchvision_layout_and_the_debian_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _fake_fashion(tmp_path / "tv" / "FashionMNIST" / "raw", compress=False, seed=3)
    task = load_task("fashion-mnist", root=tmp_path / "tv", per_class=1)
    assert task.train_x.shape == (10, 1, 28, 28)
    # No --root: the Debian folder is next.
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    images, _ = _fake_fashion(tmp_path / "debian", seed=4)
    task = load_task("fashion-mnist", per_class=1)
    assert str(tmp_path / "debian") in task.description
    torch.testing.assert_close(task.test()[0][:, 0], torch.from_numpy(images["t10k"]).float() / 255)


def test_fashion_mnist_missing_everywhere_names_all_three_ways(tmp_path, no_debian, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", offline)
    with pytest.raises(FileNotFoundError, match=r"--root DIR.*apt-get install dataset-fashion-mnist.*download"):
        load_task("fashion-mnist", root=tmp_path / "empty", per_class=1)


def _fake_imagefolder(root, classes=("cat", "dog", "fox"), per_split=None):
    from PIL import Image

    per_split = per_split or {"train": 4, "test": 2}
    rng = np.random.default_rng(0)
    for split, n in per_split.items():
        for k, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                colour = np.full((10, 12, 3), 40 * k + i, dtype=np.uint8)
                colour[..., 1] = rng.integers(0, 256)
                Image.fromarray(colour).save(root / split / name / f"{i}.png")


def test_imagefolder_draws_train_and_val_from_train_and_tests_on_all_of_test(tmp_path):
    _fake_imagefolder(tmp_path)
    task = load_task("imagefolder", root=tmp_path, per_class=2, image_size=8)
    assert task.num_classes == 3 and task.in_channels == 3
    assert task.train_x.shape == (6, 3, 8, 8) and task.val_x.shape == (6, 3, 8, 8)
    assert torch.bincount(task.train_y).tolist() == [2, 2, 2]
    # Train and validation images are different files: the red channel encodes the file index.
    train_codes = {(int(y), round(float(x[0].mean()) * 255)) for x, y in zip(task.train_x, task.train_y)}
    val_codes = {(int(y), round(float(x[0].mean()) * 255)) for x, y in zip(task.val_x, task.val_y)}
    assert not train_codes & val_codes
    test_x, test_y = task.test()
    assert test_x.shape == (6, 3, 8, 8) and torch.bincount(test_y).tolist() == [2, 2, 2]


def test_imagefolder_bad_trees(tmp_path):
    with pytest.raises(ValueError, match="needs --root"):
        load_task("imagefolder", per_class=1)
    with pytest.raises(FileNotFoundError, match="train"):
        load_task("imagefolder", root=tmp_path, per_class=1)
    _fake_imagefolder(tmp_path, per_split={"train": 2, "test": 2})
    with pytest.raises(ValueError, match="class 0 has 2 training images; 2 \\+ 2"):
        load_task("imagefolder", root=tmp_path, per_class=2, image_size=8)
    (tmp_path / "test" / "emu").mkdir()
    (tmp_path / "test" / "cat" / "0.png").rename(tmp_path / "test" / "emu" / "0.png")
    with pytest.raises(ValueError, match="same class folders"):  # found when loading, before any training
        load_task("imagefolder", root=tmp_path, per_class=1, image_size=8)


def _corrupt(path, how):
    if how == "text":
        path.write_text("not an image")
    else:  # a PNG cut in half: PIL recognises it, then fails to decode it
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("trap", ["class-mismatch", "empty-test-class", "empty-train-class", "unreadable-test-image",
                                  "truncated-test-image", "unreadable-train-image", "no-class-folder"])
def test_imagefolder_data_errors_are_found_when_the_task_loads(tmp_path, trap):
    """Each trap used to surface only at task.test(), after the search and every training run."""
    import shutil

    _fake_imagefolder(tmp_path)
    test, train = tmp_path / "test", tmp_path / "train"
    if trap == "class-mismatch":
        (test / "dog").rename(test / "wolf")
        match = r"only in test/: \['wolf'\], only in train/: \['dog'\]"
    elif trap in ("empty-test-class", "empty-train-class"):
        folder = (test if trap == "empty-test-class" else train) / "fox"
        for image in folder.iterdir():
            image.unlink()
        (folder / "notes.txt").write_text("not an image either")
        match = f"class folder {re.escape(str(folder))} holds no image"
    elif trap in ("unreadable-test-image", "truncated-test-image"):
        _corrupt(test / "dog" / "1.png", "text" if trap == "unreadable-test-image" else "half")
        match = re.escape(str(test / "dog" / "1.png")) + " cannot be read as an image"
    elif trap == "unreadable-train-image":
        for image in (train / "cat").iterdir():  # whichever is drawn
            _corrupt(image, "text")
        match = re.escape(str(train / "cat")) + r"/\d\.png cannot be read as an image"
    else:
        shutil.rmtree(test)
        test.mkdir()
        match = "holds no class folder"
    with pytest.raises(ValueError, match=match):
        load_task("imagefolder", root=tmp_path, per_class=1, image_size=8)


def test_checking_the_test_split_reads_none_of_it_into_the_task(tmp_path):
    from PIL import Image

    _fake_imagefolder(tmp_path / "a")
    _fake_imagefolder(tmp_path / "b")
    for image in (tmp_path / "b" / "test").rglob("*.png"):  # other test pixels, and one more test image
        Image.new("RGB", (10, 12), (255, 0, 255)).save(image)
    Image.new("RGB", (10, 12), (0, 255, 0)).save(tmp_path / "b" / "test" / "cat" / "9.png")
    a = load_task("imagefolder", root=tmp_path / "a", per_class=2, image_size=8)
    b = load_task("imagefolder", root=tmp_path / "b", per_class=2, image_size=8)
    for name in ("train_x", "train_y", "val_x", "val_y"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.test_reads == b.test_reads == 0 and len(b.test()[1]) == len(a.test()[1]) + 1


def test_unreadable_fashion_mnist_test_files_are_found_when_the_task_loads(tmp_path, no_debian):
    _fake_fashion(tmp_path / "idx", compress=False)
    images = tmp_path / "idx" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"Fashion-MNIST's test files .* cannot be read"):
        load_task("fashion-mnist", root=tmp_path / "idx", per_class=1)


def test_draw_per_class_is_disjoint_balanced_and_seeded():
    labels = torch.arange(100) % 4
    a_train, a_val = draw_per_class(labels, (5, 3), seed=0)
    assert not set(a_train.tolist()) & set(a_val.tolist())
    assert torch.bincount(labels[a_train]).tolist() == [5] * 4 and torch.bincount(labels[a_val]).tolist() == [3] * 4
    assert torch.equal(draw_per_class(labels, (5, 3), seed=0)[0], a_train)
    assert not torch.equal(draw_per_class(labels, (5, 3), seed=1)[0], a_train)
    with pytest.raises(ValueError, match="integers >= 1"):
        draw_per_class(labels, (0, 1), seed=0)
    with pytest.raises(ValueError, match="need 26"):
        draw_per_class(labels, (20, 6), seed=0)


def test_digits_task_and_unknown_dataset():
    pytest.importorskip("sklearn")
    task = load_task("digits", per_class=3, val_per_class=2)
    assert task.train_x.shape == (30, 1, 32, 32) and task.val_x.shape == (20, 1, 32, 32) and task.test_reads == 0
    with pytest.raises(ValueError, match="choose from"):
        load_task("cifar", per_class=1)


@pytest.mark.skipif(not (datasets.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
def test_the_real_fashion_mnist_from_debian(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    task = load_task("fashion-mnist", per_class=50, data_seed=0)
    assert task.train_x.shape == (500, 1, 28, 28) and task.val_x.shape == (500, 1, 28, 28)
    assert torch.bincount(task.train_y).tolist() == [50] * 10
    assert 0.2 < float(task.train_x.mean()) < 0.4  # garments on black: Fashion-MNIST's mean is about 0.286
    test_x, test_y = task.test()
    assert test_x.shape == (10_000, 1, 28, 28) and torch.bincount(test_y).tolist() == [1000] * 10
