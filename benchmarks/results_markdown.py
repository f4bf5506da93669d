"""Render a benchmark run's ``results.json`` as the Markdown that ``docs/results.md`` shows.

    python benchmarks/results_markdown.py img2vid-demo/results.json > table.md

Prints the command's configuration, the machine and commit, the table (test accuracy mean ± std, the
paired difference to the baseline with its 95 % interval, the verdict, wins, and for video arms the paired
difference to the compute-matched baseline-xT; wall time), the receptive fields (Eq. 8 and the measured
ERF radii and anisotropy, means over seeds with 95 % intervals) and the search: a table of its numbers
per search seed, then each seed's genotypes in a list (they are too long for a column).
"""

from __future__ import annotations

import argparse
import json
import math


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def interval(ci: list[float] | None, scale: float = 100.0, digits: int = 1, signed: bool = True) -> str:
    """`` [low, high]`` of a 95 % interval (fractions shown as points by default); empty without one."""
    if ci is None or math.isnan(ci[0]):
        return ""
    sign = "+" if signed else ""
    return f" [{scale * ci[0]:{sign}.{digits}f}, {scale * ci[1]:{sign}.{digits}f}]"


def render(result: dict) -> str:
    config, machine = result["config"], result["machine"]
    workers = machine.get("workers")
    threads = (f"{workers} worker processes at {machine['threads_per_worker']} torch thread(s) each"
               if workers and workers > 1 else f"{machine['torch_threads']} torch threads")
    lines = [
        f"Dataset `{config['dataset']}`, {config['per_class']} training + "
        f"{config.get('val_per_class') or config['per_class']} validation images per class, {result['data']['test']} "
        f"test images (read once, after all training); network `{config['network']}` (width {config['width']}, "
        f"depth {config.get('depth', 2)}), T = {config['T']}, {config['epochs']} epochs, lr {config['lr']}, batch "
        f"{config['batch_size']}, {config['seeds']} seeds, {config['search_seeds']} search seed(s). Commit "
        f"`{machine.get('commit')}`, {machine.get('cpu') or machine['processor']}, {machine['cpu_count']} cores, "
        f"{threads}, torch {machine['torch']}, device {machine['device']}; wall time {result['wall_s'] / 60:.1f} min.",
        "",
        "| arm | test acc % (mean ± std) | Δ vs baseline, points [95 % CI] | verdict | wins "
        "| Δ vs baseline-xT (equal compute) [95 % CI] | verdict | wall s (all seeds) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["table"]:
        if row["arm"] == "baseline":
            diff, word, wins = "—", "—", "—"
        else:
            diff = f"{100 * row['diff_vs_baseline_mean']:+.1f}{interval(row['diff_vs_baseline_ci95'])}"
            word, wins = row["verdict_vs_baseline"], f"{row['wins_vs_baseline']}/{row['seeds']}"
        if row.get("diff_vs_baseline_xT_mean") is None:
            matched, matched_word = "—", "—"
        else:
            matched = f"{100 * row['diff_vs_baseline_xT_mean']:+.1f}{interval(row['diff_vs_baseline_xT_ci95'])}"
            matched_word = row["verdict_vs_baseline_xT"]
        lines.append(f"| {row['arm']} | {_pct(row['test_acc_mean'])} ± {_pct(row['test_acc_std'])} | {diff} | "
                     f"{word} | {wins} | {matched} | {matched_word} | {row['wall_s']:.0f} |")
    if result.get("receptive_fields"):
        lines += ["", "Receptive fields (pixels; empirical: the central unit's gradient on validation images, means "
                      "over seeds [95 % CI]; frame: the middle frame's unit, clip: the frame average's, both on the "
                      "image):", "",
                  "| arm | Eq. 8 | frame r50 | frame r90 | frame anisotropy | clip r50 | clip r90 | clip anisotropy "
                  "| clip r90 Δ vs baseline |", "|---|---|---|---|---|---|---|---|---|"]
        for row in result["receptive_fields"]:
            cells = [f"{row[f'{view}_{metric}_mean']:.2f}{interval(row[f'{view}_{metric}_ci95'], 1, 2, signed=False)}"
                     for view in ("frame", "clip") for metric in ("r50", "r90", "anisotropy")]
            diff = "—" if row["arm"] == "baseline" else (
                f"{row['clip_r90_diff_vs_baseline_mean']:+.2f}{interval(row['clip_r90_diff_vs_baseline_ci95'], 1, 2)}")
            lines.append(f"| {row['arm']} | {row['theoretical_rf'][0]} | " + " | ".join(cells) + f" | {diff} |")
    search = result.get("search")
    if search:
        searches = search.get("searches", [search])
        # the genotypes are too long for a table column: the table holds the numbers, a list the chains
        lines += ["", "| search seed | search net val % | 2D val % (same epochs) | largest val fall while deciding "
                      "| decisions within noise | search s | × one das run |",
                  "|---|---|---|---|---|---|---|"]
        for s in searches:
            noisy = sum(m["within_noise"] for m in s["margins"])
            ratio = s.get("time_ratio")
            lines.append(f"| {s['seed']} | {_pct(s['network_val_accuracy'])} | {_pct(s['baseline_val_accuracy'])} | "
                         f"{_pct(s['selection_val_drop'])} | {noisy}/{len(s['margins'])} | {s['search_s']:.0f} | "
                         f"{'—' if ratio is None else f'{ratio:.2f}'} |")
        lines += ["", "Genotypes, per search seed (perturbation-based selection; arg-max of τ):", ""]
        lines += [f"- {s['seed']}: `{s['genotype']}`; arg-max `{s['argmax']}`" for s in searches]
        if "agreement" in search:
            agreement = search["agreement"]
            lines += ["", f"Search seeds agree on {100 * agreement['mean_share']:.0f} % of edges on average; "
                          "corner motion per frame (px): "
                      + ", ".join(f"{m:.2f}" for m in agreement["corner_motion_px"]) + "."]
    lines += ["", result["verdict"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="a results.json written by python -m img2vid demo")
    args = parser.parse_args()
    with open(args.results) as handle:
        print(render(json.load(handle)))


if __name__ == "__main__":
    main()
