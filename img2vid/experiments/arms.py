"""The arms of the benchmark: the paper's ablation (Tables 5-8) beside torchvision's own augmentations
and the ordinary ways of enlarging a receptive field (Table 4's dilated and larger kernels).

Every arm starts from a copy of the same seeded 2D network, so per seed the arms differ only in what
the arm is. Video arms go through :func:`~img2vid.wrap`, as a user would.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..genotype import Genotype
from ..ops import OPS
from ..wrap import wrap
from .networks import dilate_last_block, enlarge_kernels

__all__ = ["ARMS", "SEARCH_ARMS", "VIDEO_ARMS", "Arm", "build_arm", "check_arms", "move_magnitudes",
           "non_identity_steps",
           "random_genotype"]

#: Arm name (as spelled in ``--arms``) -> what it is.
ARMS: dict[str, str] = {
    "baseline": "2D network on the images (Table 5, Baseline)",
    "augment": "DAS clip, fusion 'none': frames independent, averaged (Table 5, Augment)",
    "replica": "identity clip + GSF (Table 5, Replica)",
    "das": "DAS clip + GSF (Tables 5 and 8, Ours)",
    "das-tsm": "DAS clip + TSM (Table 6)",
    "autoaugment": "2D network, torchvision v2.AutoAugment per sample (Table 7)",
    "randaugment": "2D network, torchvision v2.RandAugment per sample (Table 7)",
    "trivialaugment": "2D network, torchvision v2.TrivialAugmentWide per sample",
    "random": "random affine genotype, as many non-identity steps and the same magnitudes as DAS, + GSF (Table 8)",
    "fixed": "a hand-picked motion + GSF: does searching beat a guess?",
    "baseline-xT": "2D network trained T times as many epochs: the video arms' number of passes",
    "dilated": "2D network, its last block's 3x3 convolutions dilated by 2 (Table 4, dilated convolutions)",
    "large-kernel": "2D network with 5x5 kernels where it has 3x3 (Table 4, larger kernels)",
}

#: Arms whose input is a clip (T frames per image): they cost T times a 2D step.
VIDEO_ARMS = ("augment", "replica", "das", "das-tsm", "random", "fixed")

#: Arms whose motion comes from the search (``random`` draws its steps to match the searched genotype).
SEARCH_ARMS = ("augment", "das", "das-tsm", "random")

#: The affine ops a random genotype draws from (the paper's search space without identity).
_MOVES = ("translate_x", "translate_y", "scale", "rotate")

Transform = Callable[[Tensor], Tensor]


@dataclass
class Arm:
    """A model to train, how many epochs, and the per-sample transform of its training images."""

    name: str
    model: nn.Module
    epochs: int
    transform: Transform | None
    genotype: str


def non_identity_steps(genotype: Genotype) -> int:
    """How many steps of ``genotype`` move the image (are not ``identity``)."""
    return sum(name != "identity" for name, _ in genotype)


def move_magnitudes(magnitudes: Mapping[str, float]) -> dict[str, float]:
    """Every move's magnitude: ``magnitudes[op]`` where given (e.g. a search's), else ``OPS[op].default``."""
    return {op: float(magnitudes.get(op, OPS[op].default)) for op in _MOVES}


def random_genotype(steps: int, magnitudes: Mapping[str, float], seed: int) -> Genotype:
    """``steps`` random moves (translate_x/y, scale, rotate, uniformly), each at ``magnitudes[op]``.

    The Table 8 control with the DAS genotype's number of non-identity steps and its magnitudes: it
    measures *which* motion was chosen, not how much motion. ``steps=0`` gives ``identity``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    missing = [op for op in _MOVES if op not in magnitudes]
    if missing:
        raise ValueError(f"magnitudes must give every move {list(_MOVES)}; missing {missing}")
    if steps == 0:
        return Genotype("identity")
    generator = torch.Generator().manual_seed(10_000 + seed)
    picks = torch.randint(len(_MOVES), (steps,), generator=generator).tolist()
    return Genotype([(_MOVES[i], float(magnitudes[_MOVES[i]])) for i in picks])


def _torchvision_augment(name: str) -> Transform:
    from torchvision.transforms import v2

    if name == "autoaugment":
        return v2.AutoAugment()
    if name == "randaugment":
        return v2.RandAugment()
    return v2.TrivialAugmentWide()


def build_arm(name: str, base: nn.Module, *, genotype: Genotype, random: Genotype, fixed: Genotype, T: int,
              epochs: int, seed: int) -> Arm:
    """The arm ``name`` built on a deep copy of ``base`` (the seed's 2D network).

    Args:
        genotype: the searched (DAS) motion; ``random``: the equal-steps random motion; ``fixed``: the
            hand-picked one.
        T: frames per clip; also the epoch multiplier of ``baseline-xT``.
        epochs: the recipe's epochs.
        seed: seeds the fusion modules' initialisation and the ``large-kernel`` arm's 5x5 kernels (drawn
            after the shared 2D weights; every other weight of that arm is the shared one).
    """
    if name not in ARMS:
        raise ValueError(f"unknown arm {name!r}; choose from {list(ARMS)}")
    net = copy.deepcopy(base)
    torch.manual_seed(seed)
    if name in ("baseline", "baseline-xT"):
        return Arm(name, net, epochs * (T if name == "baseline-xT" else 1), None, "")
    if name in ("autoaugment", "randaugment", "trivialaugment"):
        return Arm(name, net, epochs, _torchvision_augment(name), "")
    if name == "dilated":
        return Arm(name, dilate_last_block(net), epochs, None, "")
    if name == "large-kernel":
        return Arm(name, enlarge_kernels(net, 5), epochs, None, "")
    motion, fusion = {
        "augment": (genotype, "none"),
        "replica": (Genotype("identity"), "gsf"),
        "das": (genotype, "gsf"),
        "das-tsm": (genotype, "tsm"),
        "random": (random, "gsf"),
        "fixed": (fixed, "gsf"),
    }[name]
    return Arm(name, wrap(net, motion, T, fusion=fusion), epochs, None, str(motion))


def check_arms(arms: Sequence[str]) -> list[str]:
    """``arms`` as a list, checked: known names, no repeats, ``baseline`` included (differences need it)."""
    arms = list(arms)
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; choose from {', '.join(ARMS)}")
    if len(set(arms)) != len(arms):
        raise ValueError(f"arms repeat: {arms}")
    if "baseline" not in arms:
        raise ValueError("arms must include 'baseline': every other arm is reported as a paired difference to it")
    return arms
