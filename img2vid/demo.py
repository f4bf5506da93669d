"""The main job: the paper's experiment at small scale, end to end on a CPU.

On cluttered digits (:mod:`img2vid.data`: real scans, few training images, digits at random places
among clutter, so the receptive field matters), the demo

1. searches a motion with DAS (Sec. 3.1): a :func:`~img2vid.searchable_stem` over the affine space in
   front of a GSF-temporalized small ResNet (torchvision ``BasicBlock``), trained bi-level on the
   training / validation split, then discretised by perturbation (:func:`~img2vid.derive_genotype`),
   shown beside the naive arg-max genotype and the per-edge weights;
2. trains the ablation arms of the paper's Tables 5 and 8 from the *same* initialisation and data
   order per seed: ``baseline`` (the 2D network), ``augment`` (the DAS clip, no fusion: frames are
   processed independently and averaged), ``replica`` (identity clip + GSF), ``das`` (the DAS clip +
   GSF) and ``random`` (a random affine genotype + GSF);
3. reports mean +- std over seeds and the paired difference to the baseline, prints the table, and
   writes it as CSV and JSON with the genotype, example clips and the receptive fields (Sec. 3.2).

Whatever comes out is reported as it is: the summary line says plainly whether DAS beat the baseline
and the augmentation arm at this scale.

Run it with ``python -m img2vid demo [--quick] [--device cuda] [--out DIR] [--seeds N]``.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import os
import platform
import statistics
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from .data import ClutteredDigits, cluttered_digits
from .genotype import Genotype
from .ops import OPS
from .video import ImageToVideo

__all__ = ["ARMS", "QUICK", "DemoConfig", "SmallResNet", "clip_strip", "random_genotype", "run_demo", "small_resnet"]

AFFINE_SPACE = ("identity", "translate_x", "translate_y", "scale", "rotate")

# name -> (what it is, in the paper's words)
ARMS: dict[str, str] = {
    "baseline": "2D network on the images (Table 5, Baseline)",
    "augment": "DAS clip, no fusion: frames independent, averaged (Table 5, Augment)",
    "replica": "identity clip + GSF (Table 5, Replica)",
    "das": "DAS clip + GSF (Tables 5 and 8, Ours)",
    "random": "random affine genotype + GSF, drawn per seed (Table 8, Random)",
}


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Everything the demo's result depends on. The defaults take about 10 minutes on 2 CPU cores.

    Attributes:
        seeds: training seeds per arm (seed ``s`` fixes the initialisation and the data order, shared
            by every arm, so differences to the baseline are paired).
        train_per_class, val_per_class, canvas, digit_size, clutter, data_seed: the dataset
            (:func:`~img2vid.data.cluttered_digits`); every image not in train / val is a test image.
        width: channels of the small ResNet's first stage (the second has twice as many).
        T: frames per clip.
        epochs, batch_size, lr, weight_decay: training of every arm (SGD, Nesterov, cosine schedule).
        search_epochs, nodes, arch_lr: the DAS search (first-order bi-level steps on train / val).
        search_seed: initialisation of the search network and stem.
        erf_samples: random inputs per ERF picture.
        test_limit: test on the first ``test_limit`` held-out images only (for fast tests); ``None``, the
            default, tests on every held-out image.
    """

    seeds: int = 5
    train_per_class: int = 10
    val_per_class: int = 10
    canvas: int = 32
    digit_size: int = 16
    clutter: int = 3
    data_seed: int = 0
    width: int = 12
    T: int = 5
    epochs: int = 50
    batch_size: int = 32
    lr: float = 0.05
    weight_decay: float = 5e-4
    search_epochs: int = 15
    nodes: int = 4
    arch_lr: float = 0.01
    search_seed: int = 0
    erf_samples: int = 8
    test_limit: int | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in ("int", int) and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"DemoConfig.{field.name} must be an integer, got {value!r}")
        for name in ("seeds", "T", "epochs", "batch_size", "width", "nodes", "erf_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"DemoConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.search_epochs < 0:
            raise ValueError(f"DemoConfig.search_epochs must be >= 0, got {self.search_epochs!r}")
        if self.val_per_class < 1:
            raise ValueError(f"DemoConfig.val_per_class must be >= 1 (the search needs it), got {self.val_per_class}")
        if self.test_limit is not None and (isinstance(self.test_limit, bool) or not isinstance(self.test_limit, int)
                                            or self.test_limit < 1):
            raise ValueError(f"DemoConfig.test_limit must be None or an integer >= 1, got {self.test_limit!r}")
        if not (self.lr > 0 and self.arch_lr > 0 and self.weight_decay >= 0):
            raise ValueError("lr and arch_lr must be > 0 and weight_decay >= 0")


QUICK = DemoConfig(seeds=3, epochs=20, search_epochs=5)


# --------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------


class SmallResNet(nn.Module):
    """A two-block ResNet from torchvision's ``BasicBlock``, for small images.

    ``conv1`` (3x3), ``bn1``, ``relu`` -> ``layer1`` (BasicBlock, ``width``) -> ``layer2`` (BasicBlock,
    ``2 * width``, stride 2) -> global average pool -> ``fc``. Its theoretical receptive field (Eq. 8
    along the longest path: 3x3, 3x3, 3x3, 3x3/2, 3x3) is 13 pixels, less than a 16-pixel digit:
    each position of the last feature map sees only part of the digit.

    Shape:
        - Input: ``(B, in_channels, H, W)``; output: ``(B, num_classes)``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(width, width)
        down = nn.Sequential(nn.Conv2d(width, 2 * width, 1, stride=2, bias=False), nn.BatchNorm2d(2 * width))
        self.layer2 = BasicBlock(width, 2 * width, stride=2, downsample=down)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def small_resnet(num_classes: int = 10, in_channels: int = 1, width: int = 16) -> SmallResNet:
    """The demo's network, :class:`SmallResNet`."""
    return SmallResNet(num_classes, in_channels, width)


def _features(net: SmallResNet) -> nn.Sequential:
    """The part of :class:`SmallResNet` before pooling, with the same parameter names (shared modules).

    Shape:
        - Input: ``(B, C, H, W)``; output: ``(B, 2 * width, H / 2, W / 2)``.
    """
    return nn.Sequential(OrderedDict((name, getattr(net, name)) for name in ("conv1", "bn1", "relu", "layer1",
                                                                             "layer2")))


# --------------------------------------------------------------------------------------------------
# The arms
# --------------------------------------------------------------------------------------------------


def _video_api() -> tuple[Callable[..., nn.Module], Callable[..., nn.Module]]:
    """``temporalize`` and ``wrap`` (issue 3), imported when a video arm needs them."""
    try:
        from .temporalize import temporalize
        from .wrap import wrap
    except ImportError as error:  # pragma: no cover - only while issue 3 is missing
        raise ImportError(f"the video arms need img2vid.temporalize and img2vid.wrap: {error}") from None
    return temporalize, wrap


def random_genotype(steps: int, seed: int) -> Genotype:
    """A random chain of ``steps`` affine-space ops at their default magnitudes, not all identity.

    Stands in for the paper's Table 8 "random" genotypes (found for other datasets): a motion chosen
    without looking at this task.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    rng = np.random.default_rng(10_000 + seed)
    while True:
        names = [AFFINE_SPACE[int(i)] for i in rng.integers(0, len(AFFINE_SPACE), size=steps)]
        if any(name != "identity" for name in names):
            return Genotype([(name, OPS[name].default) for name in names])


def _build_arm(arm: str, base: SmallResNet, genotype: Genotype, cfg: DemoConfig, seed: int) -> nn.Module:
    """The arm's model, from a copy of the seed's 2D network: images in, logits out."""
    net = copy.deepcopy(base)
    # Fusion parameters (GSF's gates) are drawn from the seed too, after the shared 2D weights.
    torch.manual_seed(seed)
    if arm == "baseline":
        return net
    _, wrap = _video_api()
    if arm == "augment":
        return wrap(net, genotype, cfg.T, fusion="none")
    if arm == "replica":
        return wrap(net, "identity", cfg.T, fusion="gsf")
    if arm == "das":
        return wrap(net, genotype, cfg.T, fusion="gsf")
    if arm == "random":
        return wrap(net, random_genotype(len(genotype), seed), cfg.T, fusion="gsf")
    raise ValueError(f"unknown arm {arm!r}; choose from {sorted(ARMS)}")


# --------------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------------

_T = TypeVar("_T")


def _progress(items: Iterable[_T], enabled: bool, desc: str, total: int | None = None) -> Iterable[_T]:
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, total=total, leave=False, dynamic_ncols=True)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def train_model(model: nn.Module, x: Tensor, y: Tensor, cfg: DemoConfig, seed: int, *, progress: bool = False,
                desc: str = "train") -> None:
    """SGD (Nesterov, momentum 0.9, cosine schedule) on ``(x, y)``; the data order comes from ``seed``.

    Shape:
        - x: ``(N, C, H, W)`` on the model's device; y: ``(N,)``.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                                weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(y) / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    model.train()
    for _ in _progress(range(cfg.epochs), progress, desc):
        for index in _batches(len(y), cfg.batch_size, generator):
            index = index.to(y.device)
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` in eval mode. Shape: ``x`` ``(N, C, H, W)``."""
    was_training = model.training
    model.eval()
    correct, loss = 0, 0.0
    for start in range(0, len(y), batch_size):
        logits = model(x[start:start + batch_size])
        target = y[start:start + batch_size]
        correct += int((logits.argmax(dim=1) == target).sum())
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
    model.train(was_training)
    return correct / len(y), loss / len(y)


# --------------------------------------------------------------------------------------------------
# DAS search
# --------------------------------------------------------------------------------------------------


def search_genotype(data: ClutteredDigits, cfg: DemoConfig, device: torch.device, *, progress: bool = True,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """DAS on the training / validation split; returns the genotypes, edge weights and selection scores.

    The weights ``w`` of a GSF-temporalized :func:`small_resnet` take SGD steps on training batches and
    the stem's ``tau`` takes first-order :class:`~img2vid.search.Architect` steps (Adam) on validation
    batches, alternately (Eq. 2). The genotype is then chosen by perturbation
    (:func:`~img2vid.derive_genotype`) with ``evaluate`` = validation accuracy (ties broken by the
    validation loss), and shown beside the naive arg-max of ``tau``.
    """
    try:
        from .search import Architect, derive_genotype, network_parameters, searchable_stem
    except ImportError as error:  # pragma: no cover - only while issue 4 is missing
        raise ImportError(f"the DAS search needs img2vid.search: {error}") from None
    temporalize, _ = _video_api()
    torch.manual_seed(cfg.search_seed)
    stem = searchable_stem("affine", T=cfg.T, nodes=cfg.nodes)
    model = nn.Sequential(stem, temporalize(small_resnet(width=cfg.width), fusion="gsf")).to(device)
    w_opt = torch.optim.SGD(network_parameters(model), lr=cfg.lr, momentum=0.9, nesterov=True,
                            weight_decay=cfg.weight_decay)
    a_opt = torch.optim.Adam(stem.arch_parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
    architect = Architect(model, F.cross_entropy, order="first", optimizer=a_opt)
    generator = torch.Generator().manual_seed(cfg.search_seed)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    steps = max(1, cfg.search_epochs * math.ceil(len(train_y) / cfg.batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=steps)
    model.train()
    for _ in _progress(range(cfg.search_epochs), progress, "DAS search"):
        val_order = _batches(len(val_y), cfg.batch_size, generator)
        for index in _batches(len(train_y), cfg.batch_size, generator):
            val_index = next(val_order, None)
            if val_index is None:
                val_order = _batches(len(val_y), cfg.batch_size, generator)
                val_index = next(val_order)
            index, val_index = index.to(device), val_index.to(device)
            # Upper level: tau on a validation batch; lower level: w on a training batch.
            architect.step((train_x[index], train_y[index]), (val_x[val_index], val_y[val_index]))
            w_opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(train_x[index]), train_y[index]).backward()
            w_opt.step()
            schedule.step()

    def score() -> float:
        accuracy, loss = evaluate(model, val_x, val_y)
        return accuracy - 1e-3 * loss

    unmasked = evaluate(model, val_x, val_y)[0]
    scores: list[list[float]] = []
    genotype = derive_genotype(stem, score, progress=progress, scores=scores)
    argmax = stem.genotype()
    log(f"DAS search ({cfg.search_epochs} epochs, {len(stem.edges)} edges): val accuracy {100 * unmasked:.1f} %")
    log(format_search(stem.ops, stem.weights().detach().cpu().tolist(), scores, genotype, argmax))
    return {
        "genotype": genotype,
        "argmax": argmax,
        "space": list(stem.ops),
        "edge_weights": stem.weights().detach().cpu().tolist(),
        "selection_scores": scores,
        "val_accuracy_unmasked": unmasked,
    }


def format_search(ops: Iterable[str], weights: list[list[float]], scores: list[list[float]], genotype: Genotype,
                  argmax: Genotype) -> str:
    """Per edge: softmax(tau) of each op and the score with that op masked; the kept op is starred."""
    ops = list(ops)
    lines = ["edge  " + "  ".join(f"{op:>19}" for op in ops) + "   (softmax tau / val score with op masked)"]
    for k, (row_w, row_s) in enumerate(zip(weights, scores)):
        kept = min(range(len(ops)), key=row_s.__getitem__)  # the removal that hurts most, ties to the first
        cells = []
        for t in range(len(ops)):
            star = "*" if t == kept else " "
            cells.append(f"{row_w[t]:6.3f} / {100 * row_s[t]:6.2f}{star}".rjust(19))
        lines.append(f"{k:>4}  " + "  ".join(cells))
    lines.append(f"perturbation-selected genotype: {genotype}")
    lines.append(f"arg-max genotype (for comparison): {argmax}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------------


def clip_strip(clips: Tensor, *, zoom: int = 4, gap: int = 2) -> Any:
    """Clips as a PIL image: one row per clip, frames left to right, ``gap`` grey pixels between.

    Shape:
        - clips: ``(T, C, H, W)`` or ``(N, T, C, H, W)``, float in ``[0, 1]`` or uint8; ``C`` is 1 or 3.
    """
    import PIL.Image

    if not isinstance(clips, Tensor) or clips.ndim not in (4, 5):
        raise ValueError(f"clips must be (T, C, H, W) or (N, T, C, H, W), got {getattr(clips, 'shape', clips)!r}")
    if clips.ndim == 4:
        clips = clips[None]
    n, t, c, h, w = clips.shape
    if c not in (1, 3):
        raise ValueError(f"clips need 1 or 3 channels to be drawn, got {c}")
    frames = clips.detach().cpu()
    frames = frames.float() / 255 if frames.dtype == torch.uint8 else frames.float()
    frames = frames.clamp(0, 1).expand(n, t, 3, h, w)
    frames = frames.repeat_interleave(zoom, dim=-2).repeat_interleave(zoom, dim=-1)
    hz, wz = h * zoom, w * zoom
    canvas = torch.full((3, n * hz + (n + 1) * gap, t * wz + (t + 1) * gap), 0.5)
    for i in range(n):
        for j in range(t):
            top, left = gap + i * (hz + gap), gap + j * (wz + gap)
            canvas[:, top:top + hz, left:left + wz] = frames[i, j]
    array = (canvas.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    return PIL.Image.fromarray(array)


def _erf_pictures(models: dict[str, nn.Module], cfg: DemoConfig, image_size: int, device: torch.device,
                  path: Path) -> dict[str, list[float]]:
    """ERFs of the trained seed-0 models' feature maps, drawn into ``path``; returns their spreads."""
    from .rf import empirical_rf, rf_spread, save_rf_figure

    erfs: dict[str, Tensor] = {}
    for arm, model in models.items():
        video = getattr(model, "image_to_video", None)
        if video is not None:
            # The trained weights in a per-frame feature extractor: same names, same sites (Sec. 3.2).
            temporalize, _ = _video_api()
            features = temporalize(_features(small_resnet(width=cfg.width)), model.temporal_fusion, reduce=None)
            state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
            features.load_state_dict(state)
            features.to(device)
            erfs[arm] = empirical_rf(features, (1, image_size, image_size), video=video, samples=cfg.erf_samples)
        else:
            assert isinstance(model, SmallResNet)
            erfs[arm] = empirical_rf(_features(model), (1, image_size, image_size), samples=cfg.erf_samples)
    save_rf_figure({f"{arm}": erf.cpu() for arm, erf in erfs.items()}, path,
                   title="Empirical receptive field of the central unit (trained, seed 0; Sec. 3.2)")
    return {arm: list(rf_spread(erf)) for arm, erf in erfs.items()}


# --------------------------------------------------------------------------------------------------
# The whole job
# --------------------------------------------------------------------------------------------------


def _genotype_of(model: nn.Module) -> str:
    video = getattr(model, "image_to_video", None)
    return str(video.genotype) if isinstance(video, ImageToVideo) else ""


def _machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_demo(
    config: DemoConfig = DemoConfig(),
    out: str | Path = "img2vid-demo",
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
    arms: Iterable[str] = tuple(ARMS),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the search, train every arm on every seed, and write the report into ``out``.

    Files: ``results.csv`` and ``results.json`` (the table; the JSON also holds the configuration,
    the machine, wall times, per-seed accuracies and the search), ``genotype.json`` (the DAS genotype,
    readable by :meth:`Genotype.from_json`), ``clips.png`` (test images as DAS and random clips) and
    ``receptive_fields.png`` (the ERF of each trained arm).

    Returns:
        The content of ``results.json`` as a dict.
    """
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {str(device)!r} is not a torch device; use e.g. cpu, cuda or cuda:1") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch.cuda.is_available() is False")
    arms = list(arms)
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown or "baseline" not in arms:
        raise ValueError(f"arms must include 'baseline' and come from {sorted(ARMS)}, got {arms}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    data = cluttered_digits(config.train_per_class, config.val_per_class, canvas=config.canvas,
                            digit_size=config.digit_size, clutter=config.clutter, seed=config.data_seed)
    if config.test_limit is not None:
        data = dataclasses.replace(data, test_x=data.test_x[:config.test_limit], test_y=data.test_y[:config.test_limit])
    sizes = data.sizes()
    log(f"data: cluttered digits {config.canvas}x{config.canvas}, {sizes['train']} train / {sizes['val']} val "
        f"(search only) / {sizes['test']} test images, data seed {config.data_seed}")

    search: dict[str, Any] = {}
    genotype = Genotype("identity")
    if any(arm in arms for arm in ("augment", "das", "random")):
        tick = time.perf_counter()
        search = search_genotype(data, config, device, progress=progress, log=log)
        genotype = search["genotype"]
        timings["search_s"] = time.perf_counter() - tick
    (out / "genotype.json").write_text(genotype.to_json() + "\n")

    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)
    per_seed: dict[str, dict[str, list[Any]]] = {arm: {"train": [], "test": [], "genotype": []} for arm in arms}
    seed0: dict[str, nn.Module] = {}
    tick = time.perf_counter()
    runs = [(seed, arm) for seed in range(config.seeds) for arm in arms]
    bar = _progress(runs, progress, "arms x seeds", total=len(runs))
    base: SmallResNet = small_resnet(width=config.width)
    for seed, arm in bar:
        if arm == arms[0]:
            # One initialisation per seed, shared by every arm: the differences are paired.
            torch.manual_seed(seed)
            base = small_resnet(width=config.width)
        model = _build_arm(arm, base, genotype, config, seed).to(device)
        train_model(model, train_x, train_y, config, seed)
        per_seed[arm]["train"].append(evaluate(model, train_x, train_y)[0])
        per_seed[arm]["test"].append(evaluate(model, test_x, test_y)[0])
        per_seed[arm]["genotype"].append(_genotype_of(model))
        if not progress:
            log(f"  seed {seed} {arm:<8} train {100 * per_seed[arm]['train'][-1]:5.1f} %  "
                f"test {100 * per_seed[arm]['test'][-1]:5.1f} %  ({time.perf_counter() - tick:.0f} s)")
        if seed == 0:
            seed0[arm] = model
    timings["arms_s"] = time.perf_counter() - tick

    rows = []
    baseline = per_seed["baseline"]["test"]
    for arm in arms:
        test = per_seed[arm]["test"]
        diffs = [a - b for a, b in zip(test, baseline)]
        mean, std = _mean_std(test)
        train_mean, _ = _mean_std(per_seed[arm]["train"])
        diff_mean, diff_std = _mean_std(diffs)
        genotypes = sorted(set(per_seed[arm]["genotype"]))
        rows.append({
            "arm": arm,
            "what": ARMS[arm],
            "genotype": genotypes[0] if len(genotypes) == 1 else "per seed",
            "train_acc": train_mean,
            "test_acc_mean": mean,
            "test_acc_std": std,
            "diff_vs_baseline_mean": diff_mean,
            "diff_vs_baseline_std": diff_std,
            "wins_vs_baseline": sum(d > 0 for d in diffs),
            "seeds": len(test),
        })

    tick = time.perf_counter()
    with torch.no_grad():
        examples = data.test_x[:4].to(device)
        clip_rows = [ImageToVideo(genotype, config.T)(examples)]
        if "random" in arms:
            clip_rows.append(ImageToVideo(random_genotype(len(genotype), 0), config.T)(examples))
    clip_strip(torch.cat(clip_rows)).save(out / "clips.png")
    spreads = _erf_pictures(seed0, config, config.canvas, device, out / "receptive_fields.png")
    timings["pictures_s"] = time.perf_counter() - tick
    timings["total_s"] = time.perf_counter() - started

    verdict = _verdict(rows)
    result: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "machine": _machine(device),
        "data": sizes,
        "timings": timings,
        "table": rows,
        "per_seed": per_seed,
        "erf_spread_yx_seed0": spreads,
        "search": {k: (str(v) if isinstance(v, Genotype) else v) for k, v in search.items()},
        "verdict": verdict,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    log(format_table(rows, config, timings))
    log(verdict)
    log(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")
    return result


def _verdict(rows: list[dict[str, Any]]) -> str:
    by_arm = {row["arm"]: row for row in rows}
    if "das" not in by_arm:
        return "DAS was not run."
    das = by_arm["das"]
    parts = []
    for other in ("baseline", "augment", "replica", "random"):
        if other not in by_arm:
            continue
        gap = das["test_acc_mean"] - by_arm[other]["test_acc_mean"]
        word = "beat" if gap > 0 else "did NOT beat"
        parts.append(f"{word} {other} ({100 * gap:+.1f} points)")
    return "DAS " + ", ".join(parts) + f" at this scale, over {das['seeds']} seeds (mean test accuracy)."


def format_table(rows: list[dict[str, Any]], config: DemoConfig, timings: dict[str, float]) -> str:
    """The printed table: accuracy mean +- std over seeds and the paired difference to the baseline."""
    lines = [
        f"{'arm':<9} {'train':>6} {'test acc (mean ± std)':>22} {'Δ vs baseline (paired)':>24} {'wins':>5}  genotype",
    ]
    for row in rows:
        lines.append(
            f"{row['arm']:<9} {100 * row['train_acc']:6.1f} "
            f"{100 * row['test_acc_mean']:14.1f} ± {100 * row['test_acc_std']:4.1f} "
            f"{100 * row['diff_vs_baseline_mean']:+15.1f} ± {100 * row['diff_vs_baseline_std']:4.1f} "
            f"{row['wins_vs_baseline']:>3}/{row['seeds']}  {row['genotype']}"
        )
    lines.append(f"({config.seeds} seeds, {config.epochs} epochs, T={config.T}; "
                 f"wall {timings.get('total_s', float('nan')):.0f} s)")
    return "\n".join(lines)
