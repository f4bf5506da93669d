"""Render a benchmark run's ``results.json`` as the Markdown that ``docs/results.md`` shows.

    python benchmarks/results_markdown.py img2vid-demo/results.json > table.md

Prints the command's configuration, the machine and commit, the table (test accuracy mean ± std, the
paired difference to the baseline with its 95 % interval, the verdict, wins, wall time) and the search: a
table of its numbers per search seed, then each seed's genotypes in a list (they are too long for a column).
"""

from __future__ import annotations

import argparse
import json
import math


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def render(result: dict) -> str:
    config, machine = result["config"], result["machine"]
    lines = [
        f"Dataset `{config['dataset']}`, {config['per_class']} training + {config['per_class']} validation images "
        f"per class, {result['data']['test']} test images (read once, after all training); network "
        f"`{config['network']}` (width {config['width']}), T = {config['T']}, {config['epochs']} epochs, "
        f"lr {config['lr']}, batch {config['batch_size']}, {config['seeds']} seeds, "
        f"{config['search_seeds']} search seed(s). Commit `{machine.get('commit')}`, {machine['processor']}, "
        f"{machine['cpu_count']} cores, {machine['torch_threads']} torch threads, torch {machine['torch']}, "
        f"device {machine['device']}; wall time {result['wall_s'] / 60:.1f} min.",
        "",
        "| arm | test acc % (mean ± std) | Δ vs baseline, points [95 % CI] | verdict | wins | wall s (all seeds) |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["table"]:
        if row["arm"] == "baseline":
            diff, word, wins = "—", "—", "—"
        else:
            low, high = row["diff_vs_baseline_ci95"]
            ci = "" if math.isnan(low) else f" [{100 * low:+.1f}, {100 * high:+.1f}]"
            diff = f"{100 * row['diff_vs_baseline_mean']:+.1f}{ci}"
            word, wins = row["verdict_vs_baseline"], f"{row['wins_vs_baseline']}/{row['seeds']}"
        lines.append(f"| {row['arm']} | {_pct(row['test_acc_mean'])} ± {_pct(row['test_acc_std'])} | {diff} | "
                     f"{word} | {wins} | {row['wall_s']:.0f} |")
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
