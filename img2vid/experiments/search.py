"""DAS as the benchmark runs it: warm-up, bi-level search, then a perturbation selection that holds up.

1. **Warm-up**: the search network's weights train alone (``τ`` frozen) for ``warmup_epochs``, as
   DARTS implementations do, so ``τ`` first moves once the network has learnt something.
2. **Search** (Eq. 2, first order): per training batch, one :class:`~img2vid.search.Architect` step of
   ``τ`` on a validation batch, then one weight step.
3. **Selection** (:func:`~img2vid.derive_genotype`, Sec. 3.1): every masked evaluation re-estimates
   BatchNorm statistics on training clips first (:func:`~img2vid.search.recalibrated_batchnorm`) and
   scores the *whole* validation split; between edge decisions the weights may train for
   ``fine_tune_epochs`` at a tenth of the learning rate with the decided edges fixed (darts-pt); edges
   are decided in chain or random order.

Reported beside the genotype: the search network's validation accuracy and the 2D network's after the
same number of epochs on the same data; the validation accuracy after each decision and its largest
fall; each edge's *margin* — how many more validation images the runner-up removal leaves correct —
with a McNemar check of whether that margin is within the validation split's sampling noise.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..search import Architect, derive_genotype, network_parameters, recalibrated_batchnorm, searchable_stem
from ..search.stem import SearchableStem
from ..temporalize import temporalize
from .config import MAGNITUDES, ExperimentConfig
from .datasets import Task
from .networks import build_network
from .training import Recipe, batches, correct, evaluate, train

__all__ = ["edge_margin", "search_motion", "space_magnitudes"]


class _NoGrad(nn.Module):
    """A module run under ``torch.no_grad()``: the stem as the network's weight steps see it."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.module(x)


def edge_margin(scores: list[float], hits: list[Tensor], ops: tuple[str, ...]) -> dict[str, Any]:
    """The lead of an edge's decision, in validation images, and whether it is within sampling noise.

    The kept op is the one whose removal leaves the fewest correct images (the lowest score); the
    runner-up is the next lowest. With ``b`` images right when the runner-up is masked but wrong when
    the kept op is, and ``c`` the other way round, the margin is ``b - c`` images (the accuracy gap
    times the number of images); McNemar's test (normal approximation) calls it within noise when
    ``|b - c| < 1.96 * sqrt(b + c)``.

    Args:
        scores: the score with each op masked (lower: that op matters more).
        hits: per-image correctness ``(N,)`` with each op masked, in the same order.
    """
    order = sorted(range(len(scores)), key=lambda t: scores[t])
    if len(order) < 2:
        return {"op": ops[order[0]], "runner_up": None, "margin_images": math.nan, "discordant": 0,
                "within_noise": True}
    best, second = order[0], order[1]
    b = int((hits[second] & ~hits[best]).sum())
    c = int((hits[best] & ~hits[second]).sum())
    margin, discordant = b - c, b + c
    return {"op": ops[best], "runner_up": ops[second], "margin_images": margin, "discordant": discordant,
            "within_noise": bool(abs(margin) < 1.96 * math.sqrt(discordant)) if discordant else True}


def space_magnitudes(stem: SearchableStem) -> dict[str, float]:
    """Each op's magnitude in the stem, averaged over edges (one value per op when not learnt)."""
    values = stem.op_magnitudes().detach().mean(dim=0).cpu().tolist()
    return {name: float(round(v, 6)) for name, v in zip(stem.ops, values)}


def _recalibration_batches(x: Tensor, images: int, batch_size: int = 128) -> list[Tensor]:
    x = x[:images]
    return [x[i:i + batch_size] for i in range(0, len(x), batch_size)]


def search_motion(task: Task, cfg: ExperimentConfig, device: torch.device, *, seed: int, progress: bool = True,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """One DAS search on ``task``'s training / validation split; never reads the test split.

    Returns a dict with the names the results file keeps: ``genotype`` and ``argmax`` (strings),
    ``network_val_accuracy``, ``baseline_val_accuracy``, ``selection_val_drop``, ``margins``,
    ``val_accuracy_after_decisions``, ``edge_weights``, ``selection_scores``, ``magnitudes``,
    ``search_s`` and ``seed``.
    """
    started = time.perf_counter()
    train_x, train_y = task.train_x.to(device), task.train_y.to(device)
    val_x, val_y = task.val_x.to(device), task.val_y.to(device)

    torch.manual_seed(seed)
    stem = searchable_stem("affine", T=cfg.T, nodes=cfg.nodes, learn_magnitudes=cfg.magnitudes == "learn",
                           magnitudes=MAGNITUDES[cfg.magnitudes])
    base = build_network(cfg.network, task.num_classes, task.in_channels, cfg.width, cfg.depth)
    reference_2d = copy.deepcopy(base)
    model = nn.Sequential(stem, temporalize(base, "gsf")).to(device)
    weights = network_parameters(model)
    # The weight steps see the same clips without a graph back to tau: their gradient never needs it.
    weight_model = nn.Sequential(_NoGrad(stem), model[1])

    # 1-2. warm-up, then bi-level search: one cosine schedule over both phases.
    architect = Architect(model, F.cross_entropy, order="first", optimizer=torch.optim.Adam(
        stem.arch_parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3))
    val_generator = torch.Generator().manual_seed(seed + 1)
    val_order = iter(())

    def arch_step(x: Tensor, y: Tensor) -> None:
        nonlocal val_order
        index = next(val_order, None)
        if index is None:
            val_order = batches(len(val_y), cfg.batch_size, val_generator)
            index = next(val_order)
        index = index.to(device)
        architect.step((x, y), (val_x[index], val_y[index]))

    recipe = cfg.recipe(cfg.warmup_epochs + cfg.search_epochs)
    warmup_steps = cfg.warmup_epochs * math.ceil(len(train_y) / cfg.batch_size)
    steps_taken = 0
    tau_initial = stem.tau.detach().clone()
    tau_after_warmup = tau_initial

    def step(x: Tensor, y: Tensor) -> None:
        nonlocal steps_taken, tau_after_warmup
        if steps_taken == warmup_steps:
            tau_after_warmup = stem.tau.detach().clone()
        steps_taken += 1
        if steps_taken > warmup_steps:
            arch_step(x, y)

    train(weight_model, train_x, train_y, recipe, seed, params=weights, step=step, progress=progress,
          desc="DAS warm-up + search")
    network_val = evaluate(model, val_x, val_y, cfg.batch_size)[0]

    # The 2D network after the same epochs on the same data, for scale.
    reference_2d.to(device)
    train(reference_2d, train_x, train_y, recipe, seed)
    baseline_val = evaluate(reference_2d, val_x, val_y, cfg.batch_size)[0]

    # 3. selection: every evaluation recalibrates BatchNorm and scores the whole validation split.
    calibration = _recalibration_batches(train_x, cfg.recalibrate_images)
    hits: list[Tensor] = []

    def validation_hits() -> tuple[Tensor, float]:
        with recalibrated_batchnorm(model, calibration):
            return correct(model, val_x, val_y, cfg.batch_size)

    def scored() -> float:
        right, loss = validation_hits()
        hits.append(right)
        return float(right.float().mean()) - 1e-4 * loss  # the loss only breaks ties

    def accuracy_now() -> float:
        return float(validation_hits()[0].float().mean())

    before_selection = accuracy_now()
    after_decisions: list[float] = []
    decision_order: list[int] = []

    # darts-pt fine-tunes at a tenth of the search's learning rate: restarting at the full rate after the
    # cosine schedule has annealed undoes the search network's convergence and costs more accuracy than the
    # decision it is meant to absorb.
    fine_tune_recipe = Recipe(cfg.fine_tune_epochs, cfg.batch_size, cfg.lr / 10, cfg.weight_decay)

    def fine_tune(edge: int) -> None:
        decision_order.append(edge)
        if cfg.fine_tune_epochs > 0:
            train(weight_model, train_x, train_y, fine_tune_recipe, seed + 2 + len(decision_order), params=weights)
        after_decisions.append(accuracy_now())

    scores: list[list[float]] = []
    order_generator = torch.Generator().manual_seed(seed + 3)
    saved_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    genotype = derive_genotype(stem, scored, progress=progress, fine_tune=fine_tune, scores=scores,
                               order=cfg.edge_order, generator=order_generator)
    choices = [stem.ops.index(name) for name, _ in genotype]
    # The last decision: every edge fixed.
    with stem.fixed(choices):
        after_decisions.append(accuracy_now())
    decided = decision_order + [k for k in range(len(stem.edges)) if k not in decision_order]
    num_ops = len(stem.ops)
    margins = [{"edge": k, **edge_margin(scores[k], hits[slot * num_ops:(slot + 1) * num_ops], stem.ops)}
               for slot, k in enumerate(decided)]
    argmax = stem.genotype()
    result = {
        "seed": seed,
        "tau_unchanged_by_warmup": bool(torch.equal(tau_initial, tau_after_warmup)),
        "genotype": str(genotype),
        "argmax": str(argmax),
        "network_val_accuracy": network_val,
        "baseline_val_accuracy": baseline_val,
        "val_accuracy_before_selection": before_selection,
        "val_accuracy_after_decisions": after_decisions,
        "selection_val_drop": max(0.0, before_selection - min(after_decisions)),
        "margins": margins,
        "edge_order": decided,
        "edge_weights": stem.weights().detach().cpu().tolist(),
        "selection_scores": scores,
        "space": list(stem.ops),
        "magnitudes": space_magnitudes(stem),
        "search_s": time.perf_counter() - started,
    }
    # Fine-tuning changed the search network's weights; put them back so the returned model is the searched one.
    model.load_state_dict(saved_weights)
    log(format_search(result, len(val_y)))
    return result


def format_search(result: dict[str, Any], val_images: int) -> str:
    """A few lines: accuracies, the genotype beside the arg-max, and each decision's margin."""
    noisy = sum(m["within_noise"] for m in result["margins"])
    lines = [
        f"DAS search (seed {result['seed']}, {result['search_s']:.0f} s): search network val accuracy "
        f"{100 * result['network_val_accuracy']:.1f} % (2D network, same epochs: "
        f"{100 * result['baseline_val_accuracy']:.1f} %); while deciding edges val accuracy "
        f"{100 * result['val_accuracy_before_selection']:.1f} % -> "
        + " -> ".join(f"{100 * a:.1f}" for a in result["val_accuracy_after_decisions"])
        + f" (largest fall {100 * result['selection_val_drop']:.1f} points)",
        f"  perturbation genotype: {result['genotype']}",
        f"  arg-max genotype:      {result['argmax']}",
        "  margins (validation images; * within sampling noise): "
        + ", ".join(f"e{m['edge']} {m['op']} +{m['margin_images']}{'*' if m['within_noise'] else ''}"
                    for m in result["margins"])
        + f"  [{noisy}/{len(result['margins'])} within noise, {val_images} val images]",
    ]
    return "\n".join(lines)

