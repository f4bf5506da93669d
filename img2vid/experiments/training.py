"""One training loop and one evaluation, shared by every arm, the search and the examples.

Images live in memory as tensors; a seed fixes the data order (and, through :func:`torch.manual_seed`
called by the caller, the initialisation), so two arms trained with the same seed see the same
batches in the same order: their differences are paired.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Recipe", "batches", "correct", "evaluate", "progress_bar", "train"]

Transform = Callable[[Tensor], Tensor]
_T = TypeVar("_T")


@dataclass(frozen=True)
class Recipe:
    """SGD with Nesterov momentum 0.9 and a cosine schedule over all steps."""

    epochs: int = 50
    batch_size: int = 32
    lr: float = 0.05
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "epochs" else 1):
                raise ValueError(f"Recipe.{name} must be an integer >= {0 if name == 'epochs' else 1}, got {value!r}")
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise ValueError(f"Recipe needs lr > 0 and weight_decay >= 0, got {self.lr!r}, {self.weight_decay!r}")

    def optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.SGD:
        return torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=self.weight_decay)


def progress_bar(items: Iterable[_T], enabled: bool, desc: str, total: int | None = None) -> Iterable[_T]:
    """``items`` behind a tqdm bar when ``enabled`` and tqdm is installed."""
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is an optional extra
        return items
    return tqdm(items, desc=desc, total=total, leave=False, dynamic_ncols=True)


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """One epoch of index batches in a random order drawn from ``generator``."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def _apply(transform: Transform | None, images: Tensor) -> Tensor:
    """A per-sample transform (e.g. torchvision's ``v2.AutoAugment``) applied to each image on its own."""
    if transform is None:
        return images
    return torch.stack([transform(image) for image in images])


def train(model: nn.Module, x: Tensor, y: Tensor, recipe: Recipe, seed: int, *, transform: Transform | None = None,
          params: Iterable[nn.Parameter] | None = None, step: Callable[[Tensor, Tensor], None] | None = None,
          progress: bool = False, desc: str = "train") -> None:
    """Train ``model`` on ``(x, y)`` for ``recipe.epochs`` epochs; the batch order comes from ``seed``.

    Args:
        transform: applied to every training image on its own, on the fly, before each step (CPU).
        params: the parameters to optimise (default: all of the model's).
        step: called as ``step(x_batch, y_batch)`` before each weight step (the search's upper level).

    Shape:
        - x: ``(N, C, H, W)`` on the model's device (``transform`` runs where ``x`` is); y: ``(N,)``.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = recipe.optimizer(model.parameters() if params is None else params)
    steps = max(1, recipe.epochs * math.ceil(len(y) / recipe.batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    model.train()
    for _ in progress_bar(range(recipe.epochs), progress, desc):
        for index in batches(len(y), recipe.batch_size, generator):
            index = index.to(y.device)
            inputs, targets = _apply(transform, x[index]), y[index]
            if step is not None:
                step(inputs, targets)
            loss = F.cross_entropy(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()


@torch.no_grad()
def correct(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> tuple[Tensor, float]:
    """Per-image correctness ``(N,)`` (bool) and the mean cross-entropy of ``model`` in eval mode.

    ``x`` may live on the CPU while the model is elsewhere: batches are moved to the model's device.
    The benchmark evaluates in batches of its training batch size: on a CPU a batch of 256 five-frame
    clips no longer fits the caches, and reading the Fashion-MNIST test set was 2.6 times slower in
    batches of 256 images than of 32 (``docs/results.md``).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    hits, loss = [], 0.0
    for start in range(0, len(y), batch_size):
        inputs, target = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
        logits = model(inputs)
        hits.append((logits.argmax(dim=1) == target).cpu())
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
    model.train(was_training)
    return torch.cat(hits), loss / len(y)


def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> tuple[float, float]:
    """Accuracy (a fraction) and mean cross-entropy of ``model`` in eval mode. Shape: ``x`` ``(N, C, H, W)``."""
    hits, loss = correct(model, x, y, batch_size)
    return float(hits.float().mean()), loss
