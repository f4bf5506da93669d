"""The depth sweep: the benchmark run once per depth of the small ResNet, read side by side.

The paper's Fig. 5 claims that the video network "experiences a less steep performance drop" when the
depth is reduced: mixing neighbouring frames enlarges the receptive field most where the network's own
is smallest. Each depth is an ordinary :func:`~img2vid.experiments.run_benchmark` run (its own folder,
files and protocol: the test split read once, after all training); this module puts the runs' tables
side by side (:func:`depth_rows`) and draws test accuracy and each arm's paired differences against
depth (:func:`save_depth_charts`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .benchmark import run_benchmark
from .config import ExperimentConfig
from .networks import DEPTHS
from .report import EQUAL_COMPUTE
from .statistics import mean_interval

__all__ = ["DEPTH_ARMS", "depth_rows", "run_depth_sweep", "save_depth_charts"]

#: The sweep's default arms: the baseline, its compute-matched and dilated peers, the hand-picked motion
#: and the replica (identity clip + GSF: fusion without motion), none of which needs a search per depth.
DEPTH_ARMS = ("baseline", "baseline-xT", "dilated", "fixed", "replica")


def run_depth_sweep(config: ExperimentConfig, depths: Sequence[int], out: str | Path, *, device: str = "cpu",
                    progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``config`` at each depth into ``out/depth-D`` and write ``out/sweep.json`` and the two charts.

    Returns:
        ``{"config", "depths", "rows", "wall_s"}``: ``rows`` from :func:`depth_rows`.
    """
    depths = list(depths)
    bad = [d for d in depths if d not in DEPTHS]
    if not depths or bad or len(set(depths)) != len(depths):
        raise ValueError(f"depths must be distinct values among {list(DEPTHS)}, got {depths}")
    if config.network != "small":
        raise ValueError(f"the depth sweep varies the small ResNet; got network {config.network!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for depth in depths:
        log(f"depth {depth}")
        results[depth] = run_benchmark(dataclasses.replace(config, depth=depth), out / f"depth-{depth}",
                                       device=device, progress=progress, log=log)
    rows = depth_rows(results)
    summary = {"config": dataclasses.asdict(config), "depths": depths, "rows": rows,
               "wall_s": sum(r["wall_s"] for r in results.values()),
               "machine": results[depths[0]]["machine"]}
    (out / "sweep.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    save_depth_charts(rows, out, title=f"{config.dataset}: {config.seeds} seeds per depth")
    return summary


def depth_rows(results: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per depth and arm: test accuracy (mean and 95 % interval of the mean over seeds), the paired
    difference to the baseline and, for a video arm, to ``baseline-xT``, the theoretical receptive field
    and the whole clip's ERF radius ``r90``, from each depth's ``results.json`` content."""
    rows = []
    for depth, result in sorted(results.items()):
        rf = {row["arm"]: row for row in result["receptive_fields"]}
        for row in result["table"]:
            accuracy = mean_interval(result["per_seed"][row["arm"]]["test"])
            rows.append({
                "depth": depth,
                "arm": row["arm"],
                "test_acc_mean": accuracy["mean"],
                "test_acc_ci95": accuracy["ci"],
                "diff_vs_baseline_mean": row["diff_vs_baseline_mean"],
                "diff_vs_baseline_ci95": row["diff_vs_baseline_ci95"],
                "verdict_vs_baseline": row["verdict_vs_baseline"],
                "diff_vs_baseline_xT_mean": row["diff_vs_baseline_xT_mean"],
                "diff_vs_baseline_xT_ci95": row["diff_vs_baseline_xT_ci95"],
                "verdict_vs_baseline_xT": row["verdict_vs_baseline_xT"],
                "theoretical_rf": rf[row["arm"]]["theoretical_rf"],
                "clip_r90_mean": rf[row["arm"]]["clip_r90_mean"],
                "seeds": row["seeds"],
                "wall_s": row["wall_s"],
            })
    return rows


def save_depth_charts(rows: list[dict[str, Any]], out: str | Path, *, title: str = "") -> list[Path]:
    """``accuracy_vs_depth.png`` (each arm's test accuracy, mean and 95 % interval) and
    ``difference_vs_depth.png`` (each arm's paired difference to the baseline and, dashed, a video arm's to
    ``baseline-xT``), against depth. Drawn without touching matplotlib's global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    arms = list(dict.fromkeys(row["arm"] for row in rows))
    depths = sorted({row["depth"] for row in rows})
    offsets = {arm: 0.06 * (i - (len(arms) - 1) / 2) for i, arm in enumerate(arms)}  # bars side by side
    paths = []
    for name, ylabel in (("accuracy_vs_depth.png", "test accuracy % (mean, 95 % CI)"),
                         ("difference_vs_depth.png", "paired Δ, points (mean, 95 % CI)")):
        figure = Figure(figsize=(7, 4.2))
        FigureCanvasAgg(figure)
        axes = figure.subplots()
        for index, arm in enumerate(arms):
            colour = f"C{index}"
            series = [("test_acc", "-", arm)] if name.startswith("accuracy") else \
                [("diff_vs_baseline", "-", f"{arm} − baseline"),
                 ("diff_vs_baseline_xT", "--", f"{arm} − {EQUAL_COMPUTE}")]
            for field, style, label in series:
                points = [row for row in rows if row["arm"] == arm and row[f"{field}_mean"] is not None]
                if not points or (field == "diff_vs_baseline" and arm == "baseline"):
                    continue
                xs = [row["depth"] + offsets[arm] for row in points]
                ys = [100 * row[f"{field}_mean"] for row in points]
                errors = [[0.0 if math.isnan(row[f"{field}_ci95"][0]) else 100 * (row[f"{field}_mean"]
                                                                                   - row[f"{field}_ci95"][0])
                           for row in points],
                          [0.0 if math.isnan(row[f"{field}_ci95"][1]) else 100 * (row[f"{field}_ci95"][1]
                                                                                   - row[f"{field}_mean"])
                           for row in points]]
                axes.errorbar(xs, ys, yerr=errors, fmt="o", linestyle=style, color=colour, capsize=3, label=label)
        if name.startswith("difference"):
            axes.axhline(0.0, color="black", linewidth=1)
        axes.set_xticks(depths, [f"{d}" for d in depths])
        axes.set_xlabel("residual blocks of the small ResNet")
        axes.set_ylabel(ylabel)
        axes.legend(fontsize=7, loc="best")
        if title:
            axes.set_title(title, fontsize=9)
        figure.tight_layout()
        path = out / name
        figure.savefig(path, dpi=110)
        paths.append(path)
    return paths
