"""The whole benchmark run: data, search, every arm on every seed, then the test set once, then the report.

The order is the protocol: every setting comes from the configuration (chosen on validation), the
search sees only the training and validation splits, all arms train on all seeds, and only then is the
test split read — once — and every trained model evaluated on it.

The searches and the arms' training runs are independent jobs (:mod:`~img2vid.experiments.jobs`): on a
CPU they run in worker processes at one thread each, the arms that need no searched motion beside the
search, the others once it has finished. Every job seeds itself, so a run gives the same numbers
whatever the number of workers (at the same threads per job).
"""

from __future__ import annotations

import dataclasses
import math
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
from ..rf import rf_spread, save_rf_figure
from ..video import ImageToVideo
from .arms import SEARCH_ARMS, VIDEO_ARMS, build_arm, move_magnitudes, non_identity_steps, random_genotype
from .config import ExperimentConfig
from .datasets import Task
from .jobs import Jobs, worker_count
from .networks import build_network
from .receptive_fields import arm_rf
from .report import (
    format_rf_table,
    format_table,
    rf_summary,
    save_chart,
    staged_output,
    summarize,
    verdict,
    write_results,
)
from .search import search_motion
from .training import evaluate, progress_bar, train

__all__ = ["agreement", "cpu_model", "machine", "run_benchmark", "source_commit"]


_SIMD = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sve", "SVE"), ("asimd", "NEON"))


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The CPU's model name and its widest vector extension, e.g. ``"AMD EPYC (AVX2)"``.

    Read from ``/proc/cpuinfo`` (Linux); ``None`` where it cannot be read. The CPU, its vector width
    above all, sets a run's time more than its number of cores: the same 2-core benchmark took 2 to 4
    times as long on one x86-64 machine as on another, so every timing on the results page names it.
    """
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    model = fields.get("model name") or fields.get("cpu model") or fields.get("hardware")
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    simd = next((name for flag, name in _SIMD if flag in flags), None)
    if model is None:
        return simd
    return f"{model} ({simd})" if simd else model


def machine(device: torch.device) -> dict[str, Any]:
    """Where the run happened: platform, CPU, threads, library versions, GPU, and which img2vid.

    ``img2vid`` is the package's version; ``commit`` is the git commit (``-dirty`` with uncommitted
    changes) only when the package runs from img2vid's own checkout (:func:`source_commit`), else ``None``.
    """
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_model(),
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


def _test_closed() -> tuple[torch.Tensor, torch.Tensor]:
    raise RuntimeError("the test split is read once, by the benchmark itself, after every job has finished")


def search_job(task: Task, config: ExperimentConfig, device: torch.device, seed: int) -> dict[str, Any]:
    """One DAS search (a job): its result, and the lines it logged under ``"log"``."""
    lines: list[str] = []
    result = search_motion(task, config, device, seed=seed, progress=False, log=lines.append)
    return {**result, "log": lines}


def arm_job(task: Task, config: ExperimentConfig, device: torch.device, seed: int, arm: str,
            motions: dict[str, str]) -> dict[str, Any]:
    """Train arm ``arm`` on seed ``seed`` (a job): the trained model (on the CPU), its training and
    validation accuracy, wall time, genotype, and its receptive field measured on validation images.

    ``motions`` holds the genotypes as strings: ``"das"`` and ``"random"`` (for the arms that need the
    search; ``identity`` otherwise, unused) and ``"fixed"``.
    """
    torch.manual_seed(seed)  # the seed's 2D network: the same initial weights in every arm of the seed
    base = build_network(config.network, task.num_classes, task.in_channels, config.width, config.depth)
    built = build_arm(arm, base, genotype=Genotype.parse(motions["das"]), random=Genotype.parse(motions["random"]),
                      fixed=Genotype.parse(motions["fixed"]), T=config.T, epochs=config.epochs, seed=seed)
    model = built.model.to(device)
    train_x, train_y = task.train_x.to(device), task.train_y.to(device)
    val_x, val_y = task.val_x.to(device), task.val_y.to(device)
    tick = time.perf_counter()
    train(model, train_x, train_y, config.recipe(built.epochs), seed, transform=built.transform)
    wall = time.perf_counter() - tick
    rf, maps = arm_rf(model, val_x[:config.erf_images])
    fit = _fit_sample(len(train_y), len(val_y), seed).to(train_y.device)
    return {"model": model.cpu(), "wall_s": wall,
            "train": evaluate(model, train_x[fit], train_y[fit], config.batch_size)[0],
            "val": evaluate(model, val_x, val_y, config.batch_size)[0], "genotype": built.genotype, "rf": rf,
            "maps": {view: erf.cpu() for view, erf in maps.items()}}


def _fit_sample(train: int, val: int, seed: int) -> torch.Tensor:
    """The training images an arm's fit (its training accuracy) is read on: all of them when there are no
    more than validation images, else as many as the validation split has, drawn with ``seed`` (on the
    full data a second pass over the whole training set would cost a fifth of the run)."""
    if train <= val:
        return torch.arange(train)
    return torch.randperm(train, generator=torch.Generator().manual_seed(seed))[:val]


def _cost(config: ExperimentConfig, arm: str) -> float:
    """A training run's rough cost, to start the longest jobs first: epochs times frames per image (5x5
    kernels: 1.6 times a 3x3 network's, measured on the digits preset)."""
    epochs = config.epochs * (config.T if arm == "baseline-xT" else 1)
    return epochs * (config.T if arm in VIDEO_ARMS else 1) * (1.6 if arm == "large-kernel" else 1.0)


def _run(config: ExperimentConfig, out: Path, device: torch.device, progress: bool,
         log: Callable[[str], None]) -> dict[str, Any]:
    """The run itself, in protocol order, writing its files into ``out``."""
    started = time.perf_counter()
    arms = list(config.arms)
    task = config.task()
    log(f"data: {task.description}; {len(task.train_y)} train / {len(task.val_y)} val images")
    workers = worker_count(config.workers, device, jobs=config.search_seeds + len(arms) * config.seeds)
    threads = max(1, torch.get_num_threads() // workers) if workers > 1 else torch.get_num_threads()
    if workers > 1:
        log(f"{workers} worker processes at {threads} thread(s) each")
    # What the jobs see: the training and validation splits; the test split stays closed.
    closed = dataclasses.replace(task, load_test=_test_closed)
    fixed = Genotype.parse(config.fixed)
    needs_search = [arm for arm in arms if arm in SEARCH_ARMS]
    runs = [(seed, arm) for seed in range(config.seeds) for arm in arms]

    # 1-2. The searches (training and validation splits only) and every arm on every seed, as jobs.
    searches: dict[int, dict[str, Any]] = {}
    trained: dict[tuple[int, str], dict[str, Any]] = {}
    genotypes: list[Genotype] = [Genotype("identity")]
    randoms: list[Genotype] = [Genotype("identity")]
    magnitudes: dict[str, float] = {}

    def motions(seed: int) -> dict[str, str]:
        which = seed % len(genotypes)
        return {"das": str(genotypes[which]), "random": str(randoms[which]), "fixed": str(fixed)}

    bar = progress_bar(None, progress, "jobs", total=len(runs) + (config.search_seeds if config.needs_search else 0))
    with Jobs(workers, threads) as jobs:
        if config.needs_search:
            for i in range(config.search_seeds):
                jobs.submit(("search", i), math.inf, search_job, closed, config, device, config.search_seed + i)
        for seed, arm in runs:
            if arm not in needs_search:
                jobs.submit((seed, arm), _cost(config, arm), arm_job, closed, config, device, seed, arm, motions(seed))
        for key, value in jobs.results():
            if bar is not None:
                bar.update()
            if key[0] == "search":
                for line in value.pop("log"):
                    log(line)
                searches[key[1]] = value
                if len(searches) == config.search_seeds:  # every search done: the arms that need one
                    ordered = [searches[i] for i in range(config.search_seeds)]
                    genotypes = [Genotype.parse(s["genotype"]) for s in ordered]
                    magnitudes = ordered[0]["magnitudes"]
                    randoms = [random_genotype(non_identity_steps(g), move_magnitudes(magnitudes), seed=i)
                               for i, g in enumerate(genotypes)]
                    for seed, arm in runs:
                        if arm in needs_search:
                            jobs.submit((seed, arm), _cost(config, arm), arm_job, closed, config, device, seed,
                                        arm, motions(seed))
                continue
            trained[key] = value
            if not progress:
                log(f"  seed {key[0]} {key[1]:<15} val {100 * value['val']:5.1f} %  ({value['wall_s']:.0f} s)")
    if bar is not None:
        bar.close()
    searches_list = [searches[i] for i in range(len(searches))]
    (out / "genotype.json").write_text(genotypes[0].to_json() + "\n")

    # 3. The test split, read once, after all training.
    test_x, test_y = task.test()
    if config.test_limit is not None:
        test_x, test_y = test_x[:config.test_limit], test_y[:config.test_limit]
    per_seed: dict[str, dict[str, list[Any]]] = {
        arm: {"test": [], "val": [], "train": [], "wall_s": [], "genotype": [], "rf": []} for arm in arms}
    for seed, arm in runs:
        job = trained[(seed, arm)]
        model = job["model"].to(device)
        per_seed[arm]["test"].append(evaluate(model, test_x, test_y, config.batch_size)[0])
        job["model"] = model.cpu()
        for field in ("val", "train", "wall_s", "genotype", "rf"):
            per_seed[arm][field].append(job[field])

    rows = summarize(per_seed, arms)
    rf_rows = rf_summary(per_seed, arms)
    closing = verdict(rows)
    search_summary: Any = None
    if searches_list:
        das_wall = per_seed["das"]["wall_s"][0] if "das" in per_seed else None
        for s in searches_list:
            s["time_ratio"] = s["search_s"] / das_wall if das_wall else None
        if len(searches_list) == 1:
            search_summary = searches_list[0]
        else:
            search_summary = {"searches": searches_list,
                              "agreement": agreement([s["genotype"] for s in searches_list], task.image_size)}
        for s in searches_list:
            if s["time_ratio"] is not None:
                log(f"search seed {s['seed']}: {s['search_s']:.0f} s = {s['time_ratio']:.2f} x one das-arm training "
                    "run (the paper: under a GPU day; Faster AutoAugment 0.23 GPU-hours, DADA 0.1 on CIFAR-10)")

    # 4. Pictures (validation images) and files.
    with torch.no_grad():
        examples = task.val_x[:4]
        rows_of_clips = [ImageToVideo(g, config.T)(examples) for g in [genotypes[0], randoms[0], fixed]]
    clip_strip(torch.cat(rows_of_clips)).save(out / "clips.png")
    pictured = [arm for arm in PICTURED if arm in arms]
    erfs = {arm: trained[(0, arm)]["maps"]["clip"] for arm in pictured}
    if erfs:
        save_rf_figure(erfs, out / "receptive_fields.png",
                       title="Empirical receptive field of the central unit (trained, seed 0, validation images; "
                             "video arms: the frame average, on the image)")
    save_chart(rows, out / "arms.png", title=f"{task.name}: {config.seeds} seeds, {config.per_class} images per class")
    result: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "machine": {**machine(device), "workers": workers, "threads_per_worker": threads},
        "data": {**task.sizes(), "test": len(test_y), "description": task.description, "test_reads": task.test_reads},
        "table": rows,
        "receptive_fields": rf_rows,
        "search": search_summary,
        "genotypes": {"das": [str(g) for g in genotypes], "random": [str(g) for g in randoms], "fixed": str(fixed)},
        "per_seed": per_seed,
        "erf_spread_yx_seed0": {arm: list(rf_spread(erf)) for arm, erf in erfs.items()},
        "video_arms": [arm for arm in arms if arm in VIDEO_ARMS],
        "verdict": closing,
        "wall_s": time.perf_counter() - started,
    }
    write_results(result, out)
    log(format_table(rows))
    log(format_rf_table(rf_rows))
    log(closing)
    return result


#: The arms whose seed-0 receptive field ``receptive_fields.png`` draws.
PICTURED = ("baseline", "dilated", "large-kernel", "baseline-xT", "replica", "das", "fixed")
