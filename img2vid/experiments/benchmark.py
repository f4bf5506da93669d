"""The whole benchmark run: data, search, every arm on every seed, then the test set once, then the report.

The order is the protocol: every setting comes from the configuration (chosen on validation), the
search sees only the training and validation splits, all arms train on all seeds, and only then is the
test split read — once — and every trained model evaluated on it.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..genotype import Genotype
from ..pictures import clip_strip
from ..video import ImageToVideo
from .arms import VIDEO_ARMS, build_arm, move_magnitudes, non_identity_steps, random_genotype
from .config import ExperimentConfig
from .networks import build_network
from .pictures import save_rf_pictures
from .report import format_table, save_chart, staged_output, summarize, verdict, write_results
from .search import search_motion
from .training import evaluate, progress_bar, train

__all__ = ["agreement", "machine", "run_benchmark", "source_commit"]


def machine(device: torch.device) -> dict[str, Any]:
    """Where the run happened: platform, processor, threads, library versions, GPU, and which img2vid.

    ``img2vid`` is the package's version; ``commit`` is the git commit (``-dirty`` with uncommitted
    changes) only when the package runs from img2vid's own checkout (:func:`source_commit`), else ``None``.
    """
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "img2vid": __version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    info["commit"] = source_commit(Path(__file__).resolve().parent.parent)
    return info


def source_commit(package: Path) -> str | None:
    """The commit of img2vid's checkout that ``package`` (the ``img2vid`` folder) sits in, else ``None``.

    A checkout is a git work tree whose top level holds ``package`` and a ``pyproject.toml`` naming the
    project ``img2vid``. An img2vid installed into a virtual environment inside some other repository
    is not in one, so that repository's commit is never reported as img2vid's.
    """
    root = package.parent
    try:
        pyproject = (root / "pyproject.toml").read_text()
    except OSError:
        return None
    # The project's own name line (no TOML reader in Python 3.10's standard library).
    if not re.search(r'(?m)^name\s*=\s*"img2vid"\s*$', pyproject):
        return None
    git = ["git", "-C", str(root)]
    try:
        top = subprocess.run([*git, "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=5)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
            return None
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("-dirty" if dirty else "")) or None


def _corner_motion(genotype: Genotype, size: int) -> float:
    """How far the top-left corner pixel moves in one frame step (pixels) under ``genotype`` at ``size``."""
    matrix = ImageToVideo(genotype, T=2, frames="forward").matrices(size, size)[0].double()
    corner = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    return float((matrix @ corner - corner)[:2].norm())


def agreement(genotypes: list[str], size: int) -> dict[str, Any]:
    """How much independent searches agree: per edge, the share of searches choosing the most common op,
    and each genotype's per-frame corner motion (the top-left pixel's displacement, pixels)."""
    chains = [Genotype.parse(g) for g in genotypes]
    per_edge = []
    for k in range(max(len(c) for c in chains)):
        names = [list(c)[k][0] if k < len(c) else "—" for c in chains]
        top = max(set(names), key=names.count)
        per_edge.append({"edge": k, "most_common": top, "share": names.count(top) / len(names), "ops": names})
    motions = [_corner_motion(c, size) for c in chains]
    return {"per_edge": per_edge, "mean_share": sum(e["share"] for e in per_edge) / len(per_edge),
            "corner_motion_px": motions,
            "identical": len(set(genotypes)) == 1}


def run_benchmark(config: ExperimentConfig, out: str | Path, *, device: str | torch.device = "cpu",
                  progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``config`` and write its files into ``out``; returns the content of ``results.json``.

    ``out`` is new, empty, or a previous run's folder (:data:`~img2vid.experiments.report.OUTPUT_FILES`
    only). The files are written beside it and moved into place together at the end
    (:func:`~img2vid.experiments.report.staged_output`): a run stopped early (Ctrl-C) or failing leaves
    ``out`` as it was, and a complete run replaces the previous one's files all at once.
    """
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {str(device)!r} is not a torch device; use e.g. cpu, cuda or cuda:1") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch.cuda.is_available() is False")
    with staged_output(out, log) as staging:
        result = _run(config, staging, device, progress, log)
    log(f"wall time {result['wall_s']:.0f} s; wrote {', '.join(sorted(p.name for p in Path(out).iterdir()))} "
        f"to {out}")
    return result


def _run(config: ExperimentConfig, out: Path, device: torch.device, progress: bool,
         log: Callable[[str], None]) -> dict[str, Any]:
    """The run itself, in protocol order, writing its files into ``out``."""
    started = time.perf_counter()
    arms = list(config.arms)

    task = config.task()
    log(f"data: {task.description}; {len(task.train_y)} train / {len(task.val_y)} val images")

    # 1. Search (training and validation splits only).
    searches: list[dict[str, Any]] = []
    if config.needs_search:
        for i in range(config.search_seeds):
            searches.append(search_motion(task, config, device, seed=config.search_seed + i, progress=progress,
                                          log=log))
    genotypes = [Genotype.parse(s["genotype"]) for s in searches] or [Genotype("identity")]
    magnitudes = searches[0]["magnitudes"] if searches else {}
    randoms = [random_genotype(non_identity_steps(g), move_magnitudes(magnitudes), seed=i)
               for i, g in enumerate(genotypes)]
    fixed = Genotype.parse(config.fixed)
    (out / "genotype.json").write_text(genotypes[0].to_json() + "\n")

    # 2. Every arm on every seed, same initialisation and data order per seed.
    train_x, train_y = task.train_x.to(device), task.train_y.to(device)
    val_x, val_y = task.val_x.to(device), task.val_y.to(device)
    per_seed: dict[str, dict[str, list[Any]]] = {
        arm: {"test": [], "val": [], "train": [], "wall_s": [], "genotype": []} for arm in arms}
    trained: dict[tuple[int, str], torch.nn.Module] = {}
    runs = [(seed, arm) for seed in range(config.seeds) for arm in arms]
    fresh = build_network(config.network, task.num_classes, task.in_channels, config.width)
    for seed, arm in progress_bar(runs, progress, "arms x seeds", total=len(runs)):
        if arm == arms[0]:
            torch.manual_seed(seed)
            base = build_network(config.network, task.num_classes, task.in_channels, config.width)
        which = seed % len(genotypes)
        built = build_arm(arm, base, genotype=genotypes[which], random=randoms[which], fixed=fixed, T=config.T,
                          epochs=config.epochs, seed=seed)
        model = built.model.to(device)
        tick = time.perf_counter()
        train(model, train_x, train_y, config.recipe(built.epochs), seed, transform=built.transform)
        per_seed[arm]["wall_s"].append(time.perf_counter() - tick)
        per_seed[arm]["train"].append(evaluate(model, train_x, train_y)[0])
        per_seed[arm]["val"].append(evaluate(model, val_x, val_y)[0])
        per_seed[arm]["genotype"].append(built.genotype)
        trained[(seed, arm)] = model.cpu()
        if not progress:
            log(f"  seed {seed} {arm:<15} val {100 * per_seed[arm]['val'][-1]:5.1f} %  "
                f"({per_seed[arm]['wall_s'][-1]:.0f} s)")

    # 3. The test split, read once, after all training.
    test_x, test_y = task.test()
    if config.test_limit is not None:
        test_x, test_y = test_x[:config.test_limit], test_y[:config.test_limit]
    for seed, arm in runs:
        model = trained[(seed, arm)].to(device)
        per_seed[arm]["test"].append(evaluate(model, test_x, test_y)[0])
        trained[(seed, arm)] = model.cpu()

    rows = summarize(per_seed, arms)
    closing = verdict(rows)
    search_summary: Any = None
    if searches:
        das_wall = per_seed["das"]["wall_s"][0] if "das" in per_seed else None
        for s in searches:
            s["time_ratio"] = s["search_s"] / das_wall if das_wall else None
        if len(searches) == 1:
            search_summary = searches[0]
        else:
            search_summary = {"searches": searches,
                              "agreement": agreement([s["genotype"] for s in searches], task.image_size)}
        for s in searches:
            if s["time_ratio"] is not None:
                log(f"search seed {s['seed']}: {s['search_s']:.0f} s = {s['time_ratio']:.2f} x one das-arm training "
                    "run (the paper: under a GPU day; Faster AutoAugment 0.23 GPU-hours, DADA 0.1 on CIFAR-10)")

    # 4. Pictures (validation images) and files.
    with torch.no_grad():
        examples = task.val_x[:4]
        rows_of_clips = [ImageToVideo(g, config.T)(examples) for g in [genotypes[0], randoms[0], fixed]]
    clip_strip(torch.cat(rows_of_clips)).save(out / "clips.png")
    rf_models = {arm: trained[(0, arm)] for arm in arms if arm in ("baseline", "replica", "das", "das-tsm",
                                                                   "augment", "trivialaugment")}
    spreads = save_rf_pictures(rf_models, fresh, (task.in_channels, task.image_size, task.image_size),
                               out / "receptive_fields.png", samples=config.erf_samples)
    save_chart(rows, out / "arms.png", title=f"{task.name}: {config.seeds} seeds, {config.per_class} images per class")
    result: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "machine": machine(device),
        "data": {**task.sizes(), "test": len(test_y), "description": task.description, "test_reads": task.test_reads},
        "table": rows,
        "search": search_summary,
        "genotypes": {"das": [str(g) for g in genotypes], "random": [str(g) for g in randoms], "fixed": str(fixed)},
        "per_seed": per_seed,
        "erf_spread_yx_seed0": spreads,
        "video_arms": [arm for arm in arms if arm in VIDEO_ARMS],
        "verdict": closing,
        "wall_s": time.perf_counter() - started,
    }
    write_results(result, out)
    log(format_table(rows))
    log(closing)
    return result

