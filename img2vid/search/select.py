"""Perturbation-based selection: discretise the searched cell by what each op contributes (Sec. 3.1).

The paper follows Wang et al. (ICLR 2021, "Rethinking architecture selection in differentiable NAS",
code ``ruocwang/darts-pt``) instead of taking the arg-max of ``τ``: on each edge, mask one op at a time
(all the others kept), re-evaluate the whole model, and keep the op whose removal hurts most. As in
darts-pt, edges are decided one after the other and a decided edge is fixed to its op (one-hot) for
the edges decided after it; an optional ``fine_tune`` callback may train the model between edges, and
the edges may be decided in a random order (both as in darts-pt).

Masking renormalises the remaining weights of the edge (softmax over the unmasked ops), so a masked
edge still produces an image of the same brightness. darts-pt multiplies the op's weight by zero
without renormalising, which is harmless on feature maps followed by BatchNorm but would darken the
clip here and make every removal look alike.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from torch import Tensor

from ..genotype import Genotype
from .stem import SearchableStem

__all__ = ["derive_genotype"]

Evaluate = Callable[[], object]
FineTune = Callable[[int], None]


def derive_genotype(
    stem: SearchableStem,
    evaluate: Evaluate,
    *,
    progress: bool = True,
    fine_tune: FineTune | None = None,
    scores: list[list[float]] | None = None,
    order: Literal["chain", "random"] = "chain",
    generator: torch.Generator | None = None,
) -> Genotype:
    """Choose one op per edge by perturbation and return the chain (the paper's Sec. 3.1).

    For each edge ``k`` (in chain order, or a random order as darts-pt does) and each of its ops ``t``:
    mask ``t`` (the edge mixes the other ops), call ``evaluate()``, unmask. The op whose removal gives
    the lowest score is kept and the edge is fixed to it for the edges decided after it. Ties go to the
    op listed first.

    Args:
        stem: the searched :class:`~img2vid.search.SearchableStem` (inside whatever model
            ``evaluate`` runs).
        evaluate: called with no arguments; returns a real number, higher is better (e.g. the
            validation accuracy of the whole model, with BatchNorm recalibrated by
            :func:`~img2vid.search.recalibrated_batchnorm`). Under ``DistributedDataParallel``, reduce
            it over the ranks inside ``evaluate`` so every rank makes the same choice.
        progress: show a tqdm bar (if tqdm is installed).
        fine_tune: called as ``fine_tune(k)`` after edge ``k`` is decided (except the last one
            decided), e.g. to train the network for a while with the decided edges fixed, as darts-pt
            does (its ``proj_intv``).
        scores: if a list is given, one row of scores per edge, *in chain order* (``scores[k][t]`` is
            the score with op ``t`` of edge ``k`` masked), is written into it.
        order: ``"chain"`` (edge 0 first) or ``"random"`` (a random permutation of the edges).
        generator: draws the random order (default: torch's global generator).

    Returns:
        A :class:`~img2vid.Genotype` with one step per edge, in chain order; ``ImageToVideo`` takes it.

    Raises:
        TypeError: ``evaluate`` returned something that is not a real number.
        ValueError: ``evaluate`` returned NaN or an infinity; an unknown ``order``.

    The stem is left exactly as it was (``τ``, magnitudes, no mask, no fixed edge), also when
    ``evaluate`` or ``fine_tune`` raises.
    """
    if not isinstance(stem, SearchableStem):
        raise TypeError(f"derive_genotype takes a SearchableStem, got {type(stem).__name__}")
    if not callable(evaluate):
        raise TypeError(f"evaluate must be a callable with no arguments, got {type(evaluate).__name__}")
    if order not in ("chain", "random"):
        raise ValueError(f"order must be 'chain' or 'random', got {order!r}")
    num_edges, num_ops = stem.tau.shape
    edges = list(range(num_edges)) if order == "chain" else torch.randperm(num_edges, generator=generator).tolist()
    choices: dict[int, int] = {}
    rows: dict[int, list[float]] = {}
    with _restored(stem), _progress_bar(num_edges * num_ops, progress) as bar:
        for position, k in enumerate(edges):
            row: list[float] = []
            for t in range(num_ops):
                if num_ops == 1:
                    row.append(math.nan)
                    break
                with stem.masked(k, t):
                    row.append(_score(evaluate(), k, stem.ops[t]))
                if bar is not None:
                    bar.update(1)
            best = 0 if num_ops == 1 else min(range(num_ops), key=lambda t: row[t])
            choices[k], rows[k] = best, row
            stem.fix(k, best)
            if bar is not None:
                bar.set_postfix_str(f"edge {k}: {stem.ops[best]}")
            if fine_tune is not None and position < num_edges - 1:
                fine_tune(k)
    if scores is not None:
        scores.extend(rows[k] for k in range(num_edges))
    return stem.genotype_of([choices[k] for k in range(num_edges)])


def _score(value: object, edge: int, op: str) -> float:
    where = f"evaluate() with op {op!r} of edge {edge} masked"
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{where} returned a tensor of shape {tuple(value.shape)} and dtype {value.dtype}; "
                            "expected one real number (higher is better)")
        value = value.detach().item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where} returned {value!r} ({type(value).__name__}); expected a real number "
                        "(higher is better)")
    score = float(value)
    if not math.isfinite(score):
        raise ValueError(f"{where} returned {score}; expected a finite number (higher is better)")
    return score


@contextlib.contextmanager
def _restored(stem: SearchableStem) -> Iterator[None]:
    saved = {name: value.detach().clone() for name, value in stem.state_dict(keep_vars=True).items()}
    try:
        yield
    finally:
        with torch.no_grad():
            stem.release()
            for name, value in stem.state_dict(keep_vars=True).items():
                value.copy_(saved[name])


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is an optional extra
        yield None
        return
    bar = tqdm(total=total, desc="perturbation selection", unit="eval")
    try:
        yield bar
    finally:
        bar.close()
