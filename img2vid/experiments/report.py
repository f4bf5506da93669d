"""What a benchmark run writes: the table, its files, the chart and the verdict.

Files: ``results.json`` (everything), ``results.csv`` (one row per arm), ``per_seed.csv`` (one row per
arm and seed), ``genotype.json`` (the searched genotype of the first search seed), ``arms.png`` (the
chart), ``clips.png`` and ``receptive_fields.png`` (the pictures).

A run writes them into a fresh folder beside ``--out`` and moves that folder into place only once it is
complete (:func:`staged_output`): an interrupted or failed run leaves ``--out`` as it was, and a
complete one replaces the previous run's files all at once, so the folder never mixes two runs.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .arms import ARMS, VIDEO_ARMS
from .receptive_fields import METRICS, VIEWS
from .statistics import mean_interval, mean_std, paired_difference, verdict_word

__all__ = ["OUTPUT_FILES", "format_rf_table", "format_table", "rf_summary", "save_chart", "staged_output", "summarize",
           "verdict", "write_results"]

#: The compute-matched 2D arm each video arm is also compared with (same forward and backward passes).
EQUAL_COMPUTE = "baseline-xT"

#: The files a run writes into its output folder.
OUTPUT_FILES = ("results.json", "results.csv", "per_seed.csv", "genotype.json", "arms.png", "clips.png",
                "receptive_fields.png")


def summarize(per_seed: dict[str, dict[str, list[Any]]], arms: list[str]) -> list[dict[str, Any]]:
    """One row per arm with the names ``results.json`` keeps (accuracies as fractions).

    ``per_seed[arm]`` holds lists over seeds: ``test``, ``val``, ``train`` (accuracies), ``wall_s``
    and ``genotype``. Every arm gets its paired difference to ``baseline``; a video arm also to
    ``baseline-xT`` (equal compute) when that arm ran (``diff_vs_baseline_xT_*``; ``None`` otherwise).
    """
    baseline = per_seed["baseline"]["test"]
    equal = per_seed[EQUAL_COMPUTE]["test"] if EQUAL_COMPUTE in per_seed else None
    rows = []
    for arm in arms:
        runs = per_seed[arm]
        mean, std = mean_std(runs["test"])
        diff = paired_difference(runs["test"], baseline)
        matched = paired_difference(runs["test"], equal) if equal is not None and arm in VIDEO_ARMS else None
        genotypes = sorted(set(runs["genotype"]))
        rows.append({
            "arm": arm,
            "what": ARMS[arm],
            "test_acc_mean": mean,
            "test_acc_std": std,
            "diff_vs_baseline_mean": diff["mean"],
            "diff_vs_baseline_ci95": diff["ci"],
            "diff_vs_baseline_std": diff["std"],
            "verdict_vs_baseline": "—" if arm == "baseline" else verdict_word(diff["ci"]),
            "wins_vs_baseline": diff["wins"],
            "diff_vs_baseline_xT_mean": None if matched is None else matched["mean"],
            "diff_vs_baseline_xT_ci95": None if matched is None else matched["ci"],
            "verdict_vs_baseline_xT": None if matched is None else verdict_word(matched["ci"]),
            "wins_vs_baseline_xT": None if matched is None else matched["wins"],
            "seeds": diff["n"],
            "val_acc_mean": mean_std(runs["val"])[0],
            "train_acc_mean": mean_std(runs["train"])[0],
            "wall_s": sum(runs["wall_s"]),
            "wall_s_per_seed": mean_std(runs["wall_s"])[0],
            "genotype": "; ".join(genotypes) if genotypes != [""] else "",
        })
    return rows


def rf_summary(per_seed: dict[str, dict[str, list[Any]]], arms: list[str]) -> list[dict[str, Any]]:
    """One row per arm: its theoretical receptive field (Eq. 8) and, per view of the empirical one
    (:data:`~img2vid.experiments.receptive_fields.VIEWS`), each metric's mean over seeds with its 95 %
    Student-t interval, plus the paired difference of the whole clip's ``r90`` to the baseline's.

    ``per_seed[arm]["rf"]`` holds one :func:`~img2vid.experiments.receptive_fields.arm_rf` result per seed.
    """
    baseline_r90 = [rf["clip"]["r90"] for rf in per_seed["baseline"]["rf"]]
    rows = []
    for arm in arms:
        measured = per_seed[arm]["rf"]
        row: dict[str, Any] = {"arm": arm, "theoretical_rf": measured[0]["theoretical"]}
        for view in VIEWS:
            for metric in METRICS:
                stats = mean_interval([rf[view][metric] for rf in measured])
                row[f"{view}_{metric}_mean"], row[f"{view}_{metric}_ci95"] = stats["mean"], stats["ci"]
        diff = paired_difference([rf["clip"]["r90"] for rf in measured], baseline_r90)
        row["clip_r90_diff_vs_baseline_mean"], row["clip_r90_diff_vs_baseline_ci95"] = diff["mean"], diff["ci"]
        row["clip_r90_verdict_vs_baseline"] = "—" if arm == "baseline" else verdict_word(diff["ci"], "larger",
                                                                                           "smaller")
        rows.append(row)
    return rows


def _interval(ci: list[float] | None, scale: float = 100.0, digits: int = 1) -> str:
    if ci is None or math.isnan(ci[0]):
        return ""
    return f"[{scale * ci[0]:+.{digits}f}, {scale * ci[1]:+.{digits}f}]"


def _verdict_part(row: dict[str, Any], against: str) -> str:
    """``"arm: verdict ([low, high] points)"`` against ``baseline`` or ``baseline_xT``."""
    ci = _interval(row[f"diff_vs_{against}_ci95"]) or "no interval"
    return f"{row['arm']}: {row[f'verdict_vs_{against}']} ({ci} points)"


def verdict(rows: list[dict[str, Any]]) -> str:
    """The closing sentences, worded from each arm's paired 95 % interval against the baseline and, for
    the video arms, against the compute-matched ``baseline-xT`` (with one seed there is no interval: the
    sentence gives each arm's difference and says so)."""
    seeds = rows[0]["seeds"]
    others = [row for row in rows if row["arm"] != "baseline"]
    if not others:
        return "Only the baseline ran: no arm to compare with it."
    if seeds == 1:
        return ("Against the baseline, on one seed (no interval; two or more seeds give paired 95 % intervals), "
                "test-accuracy difference: "
                + "; ".join(f"{row['arm']}: {100 * row['diff_vs_baseline_mean']:+.1f} points" for row in others) + ".")
    sentence = (f"Against the baseline, paired over {seeds} seeds (95 % Student-t interval of the test-accuracy "
                "difference): " + "; ".join(_verdict_part(row, "baseline") for row in others) + ".")
    matched = [row for row in rows if row["diff_vs_baseline_xT_mean"] is not None]
    if matched:
        sentence += (f" At equal compute, against {EQUAL_COMPUTE}: "
                     + "; ".join(_verdict_part(row, "baseline_xT") for row in matched) + ".")
    return sentence


def format_table(rows: list[dict[str, Any]]) -> str:
    """The printed table."""
    lines = [f"{'arm':<15} {'test acc %':>15} {'Δ vs baseline [95 % CI]':>27} {'wins':>5} "
             f"{'Δ vs baseline-xT [95 % CI]':>29} {'wall s':>8}  genotype"]
    for row in rows:
        diff = "—" if row["arm"] == "baseline" else \
            f"{100 * row['diff_vs_baseline_mean']:+5.1f} {_interval(row['diff_vs_baseline_ci95'])}"
        wins = "" if row["arm"] == "baseline" else f"{row['wins_vs_baseline']}/{row['seeds']}"
        matched = "" if row["diff_vs_baseline_xT_mean"] is None else \
            f"{100 * row['diff_vs_baseline_xT_mean']:+5.1f} {_interval(row['diff_vs_baseline_xT_ci95'])}"
        lines.append(f"{row['arm']:<15} {100 * row['test_acc_mean']:8.1f} ± {100 * row['test_acc_std']:4.1f} "
                     f"{diff:>27} {wins:>5} {matched:>29} {row['wall_s']:8.0f}  {row['genotype']}")
    return "\n".join(lines)


def format_rf_table(rows: list[dict[str, Any]]) -> str:
    """The printed receptive-field table: Eq. 8, then per view r50 / r90 (pixels) and anisotropy, means over seeds."""
    lines = [f"{'arm':<15} {'RF Eq. 8':>8}  {'frame r50':>9} {'r90':>5} {'aniso':>5}  {'clip r50':>8} {'r90':>5} "
             f"{'aniso':>5}  clip r90 Δ vs baseline [95 % CI] px"]
    for row in rows:
        height, width = row["theoretical_rf"]
        rf = f"{height}" if height == width else f"{height}x{width}"
        diff = "—" if row["arm"] == "baseline" else \
            f"{row['clip_r90_diff_vs_baseline_mean']:+.2f} {_interval(row['clip_r90_diff_vs_baseline_ci95'], 1, 2)}"
        lines.append(f"{row['arm']:<15} {rf:>8}  {row['frame_r50_mean']:9.2f} {row['frame_r90_mean']:5.2f} "
                     f"{row['frame_anisotropy_mean']:5.2f}  {row['clip_r50_mean']:8.2f} {row['clip_r90_mean']:5.2f} "
                     f"{row['clip_anisotropy_mean']:5.2f}  {diff}")
    return "\n".join(lines)


def save_chart(rows: list[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Per arm: test accuracy (mean, 95 % interval of the mean) and the paired difference to the baseline
    (mean, 95 % interval), the baseline marked. Drawn without touching matplotlib's global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .statistics import student_t_quantile

    arms = [row["arm"] for row in rows]
    ys = list(range(len(arms)))[::-1]
    figure = Figure(figsize=(10, 0.45 * len(arms) + 1.6))
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, sharey=True)
    for y, row in zip(ys, rows):
        n = row["seeds"]
        half = student_t_quantile(0.975, n - 1) * row["test_acc_std"] / math.sqrt(n) if n > 1 else 0.0
        colour = "black" if row["arm"] == "baseline" else "tab:blue"
        left.errorbar(100 * row["test_acc_mean"], y, xerr=100 * half, fmt="o", color=colour, capsize=3)
        if row["arm"] != "baseline":
            low, high = row["diff_vs_baseline_ci95"]
            mean = row["diff_vs_baseline_mean"]
            err = [[100 * (mean - low)], [100 * (high - mean)]] if not math.isnan(low) else None
            colour = {"better": "tab:green", "worse": "tab:red"}.get(row["verdict_vs_baseline"], "tab:blue")
            right.errorbar(100 * mean, y, xerr=err, fmt="o", color=colour, capsize=3)
    baseline = next(row for row in rows if row["arm"] == "baseline")
    left.axvline(100 * baseline["test_acc_mean"], color="black", linestyle="--", linewidth=1, label="baseline")
    right.axvline(0.0, color="black", linestyle="--", linewidth=1)
    left.set_yticks(ys, arms)
    left.set_xlabel("test accuracy % (mean, 95 % CI)")
    right.set_xlabel("paired Δ vs baseline, points (mean, 95 % CI)")
    left.legend(loc="best", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path


def _csv_pair(values: list[float]) -> str:
    return " ".join(f"{v:.6f}" for v in values)


def write_results(result: dict[str, Any], out: Path) -> None:
    """``results.json``, ``results.csv`` and ``per_seed.csv`` into ``out``."""
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    rows = result["table"]
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            matched = row["diff_vs_baseline_xT_ci95"]
            writer.writerow({**row, "diff_vs_baseline_ci95": _csv_pair(row["diff_vs_baseline_ci95"]),
                             "diff_vs_baseline_xT_ci95": "" if matched is None else _csv_pair(matched)})
    with open(out / "per_seed.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arm", "seed", "test_acc", "val_acc", "train_acc", "diff_vs_baseline", "wall_s", "genotype"])
        per_seed = result["per_seed"]
        for arm, runs in per_seed.items():
            for seed, test in enumerate(runs["test"]):
                writer.writerow([arm, seed, test, runs["val"][seed], runs["train"][seed],
                                 test - per_seed["baseline"]["test"][seed], runs["wall_s"][seed],
                                 runs["genotype"][seed]])


def _check_output_folder(out: Path) -> list[str]:
    """The previous run's files in ``out`` (none when it does not exist); refuses any other folder."""
    if not out.exists():
        return []
    if not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder (new, empty, or a previous run's)")
    if out == Path.cwd().resolve():
        raise ValueError(f"--out {str(out)!r} is the current folder, which a run would replace; give a sub-folder")
    present = sorted(p.name for p in out.iterdir())
    foreign = [name for name in present if name not in OUTPUT_FILES]
    if foreign:
        raise ValueError(
            f"--out {str(out)!r} holds files a run does not write ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}); a run replaces its output folder whole, so give a new or "
            f"empty folder, or a previous run's (which holds only {', '.join(OUTPUT_FILES)})"
        )
    return present


@contextlib.contextmanager
def staged_output(out: str | Path, log: Callable[[str], None] = print) -> Iterator[Path]:
    """A fresh folder beside ``out`` to write a run into, moved into place as ``out`` when the run completes.

    If the ``with`` block raises (Ctrl-C's ``KeyboardInterrupt`` included), the partial folder is removed
    and ``out`` is left exactly as it was. If it completes, ``out`` is replaced whole by the new folder and
    the log says which of the previous run's files were replaced. ``out`` must be new, empty, or hold only
    :data:`OUTPUT_FILES` (a previous run's); any other folder is refused before the run starts, since
    replacing it would delete files the run did not write. A process killed outright (``SIGKILL``, a
    power cut) cannot clean up: its hidden ``.NAME.partial-*`` folder stays beside ``out``, to be deleted.

    Yields:
        The folder to write into (a hidden sibling of ``out``, on the same file system).
    """
    out = Path(out).resolve()
    previous = _check_output_folder(out)
    if previous:
        log(f"{out} holds a previous run's files; they are replaced once this run completes, and kept as they are "
            "if it stops early")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}-{time.time_ns()}")
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        log(f"the run stopped early; {out} is left as it was")
        raise
    if out.exists():
        written = datetime.datetime.fromtimestamp(max(((out / n).stat().st_mtime for n in previous),
                                                      default=out.stat().st_mtime))
        replaced = out.with_name(f".{out.name}.replaced-{os.getpid()}-{time.time_ns()}")
        out.rename(replaced)  # from here until the next line, ``out`` is briefly absent, never mixed
        staging.rename(out)
        shutil.rmtree(replaced, ignore_errors=True)
        if previous:
            log(f"replaced the previous run in {out} (written {written:%Y-%m-%d %H:%M}): {', '.join(previous)}")
    else:
        staging.rename(out)
