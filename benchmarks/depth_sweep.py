"""The paper's Fig. 5 on our data: the benchmark at each depth of the small ResNet (1 to 4 residual blocks).

    python benchmarks/depth_sweep.py --depths 1,2,3,4 --seeds 3 --out depth-sweep

Each depth is an ordinary ``python -m img2vid demo`` run (``DIR/depth-D``: its table, receptive fields,
files; the test split read once per depth, after all training), with the arms baseline, baseline-xT,
dilated, fixed and replica by default (none needs a search per depth). ``DIR/sweep.json`` puts them side by
side, ``DIR/accuracy_vs_depth.png`` and ``DIR/difference_vs_depth.png`` draw them, and the script prints a
Markdown table. Fig. 5's claim reads: the video arms' gain over the baseline grows as depth shrinks.
"""

from __future__ import annotations

import argparse
import math

from results_markdown import interval  # the same interval text as the results page

from img2vid.experiments import preset
from img2vid.experiments.depth import DEPTH_ARMS, run_depth_sweep


def markdown(rows: list[dict]) -> str:
    lines = ["| depth | RF (Eq. 8) | arm | test acc % [95 % CI] | Δ vs baseline [95 % CI] | Δ vs baseline-xT [95 % CI] "
             "| clip r90 px |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        low, high = row["test_acc_ci95"]
        accuracy = f"{100 * row['test_acc_mean']:.1f}"
        if not math.isnan(low):
            accuracy += f" [{100 * low:.1f}, {100 * high:.1f}]"
        diff = "—" if row["arm"] == "baseline" else f"{100 * row['diff_vs_baseline_mean']:+.1f}" + interval(
            row["diff_vs_baseline_ci95"])
        matched = "—" if row["diff_vs_baseline_xT_mean"] is None else \
            f"{100 * row['diff_vs_baseline_xT_mean']:+.1f}" + interval(row["diff_vs_baseline_xT_ci95"])
        lines.append(f"| {row['depth']} | {row['theoretical_rf'][0]} | {row['arm']} | {accuracy} | {diff} | {matched} "
                     f"| {row['clip_r90_mean']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist", "imagefolder"])
    parser.add_argument("--root", default=None)
    parser.add_argument("--depths", default="1,2,3,4")
    parser.add_argument("--arms", default=",".join(DEPTH_ARMS))
    parser.add_argument("--seeds", type=int, default=None, help="training seeds per depth (default: the preset's)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="the smallest configuration: a smoke run")
    parser.add_argument("--out", default="depth-sweep")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    try:
        depths = [int(d) for d in args.depths.split(",")]
    except ValueError:
        parser.error(f"--depths must be comma-separated integers, got {args.depths!r}")
    config = preset(args.dataset, quick=args.quick, root=args.root, seeds=args.seeds, workers=args.workers,
                    arms=tuple(a.strip() for a in args.arms.split(",") if a.strip()))
    summary = run_depth_sweep(config, depths, args.out, progress=not args.no_progress)
    print(markdown(summary["rows"]))
    print(f"sweep wall time {summary['wall_s'] / 60:.1f} min; wrote {args.out}/sweep.json and the charts")


if __name__ == "__main__":
    main()
