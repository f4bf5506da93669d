"""Do independent DAS searches agree, and does what they select hold up when retrained? (validation only)

Reads the JSON files that ``examples/das_search.py`` writes — one per search seed (or per thread
count), each with its genotypes retrained on the same training seeds — and prints Markdown:

- one row per search: threads, the perturbation and arg-max genotypes, the search network's validation
  accuracy beside the 2D network's, the largest fall while edges were decided, how many decisions were
  within sampling noise, the search time and its ratio to one das-arm training run;
- agreement: per edge, the share of searches choosing the most common op, and each genotype's motion
  (how far the top-left corner pixel moves per frame), for the perturbation and the arg-max genotypes;
- the retrained genotypes on validation: the mean over every (search, training seed) pair, and the
  difference to the 2D baseline with a 95 % interval whose unit is the *search* (each search's mean
  difference over its training seeds), so the spread across search seeds is part of the uncertainty;
  when every search chose the same genotype (nothing varies across searches), the interval is over
  the training seeds instead.

    for s in 0 1 2; do python examples/das_search.py --dataset fashion-mnist --seed $s --out s$s.json; done
    python benchmarks/search_agreement.py s0.json s1.json s2.json
"""

from __future__ import annotations

import argparse
import json
import statistics

from img2vid.experiments.benchmark import agreement
from img2vid.experiments.statistics import paired_difference, verdict_word


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def check_comparable(runs: list[dict], names: list[str]) -> None:
    """Refuse runs that are not repeats of one experiment: their configurations must agree (only the
    search seed and the machine may differ) and every run must retrain the same candidates."""
    for name, run in zip(names, runs):
        missing = {"search", "val_accuracy", "config"} - set(run)
        if missing:
            raise ValueError(f"{name} is not a file written by examples/das_search.py "
                             f"(no {', '.join(sorted(missing))})")
    first = runs[0]
    for name, run in zip(names[1:], runs[1:]):
        differ = sorted(k for k in set(first["config"]) | set(run["config"])
                        if first["config"].get(k) != run["config"].get(k))
        if differ:
            raise ValueError(f"{name} and {names[0]} are different experiments: their configurations differ in "
                             f"{', '.join(differ)}; compare runs that differ only in the search seed or thread count")
        if set(run["val_accuracy"]) != set(first["val_accuracy"]):
            raise ValueError(f"{name} and {names[0]} retrained different candidates")


def render(runs: list[dict], names: list[str]) -> str:
    check_comparable(runs, names)
    size = runs[0]["config"]["image_size"]
    lines = ["| file | search seed | threads | perturbation genotype | arg-max | search net val % | 2D val % | "
             "largest fall while deciding (points) | decisions within noise | search s | × one das run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, run in zip(names, runs):
        s = run["search"]
        noisy = sum(m["within_noise"] for m in s["margins"])
        ratio = s.get("time_ratio")
        threads = run.get("machine", {}).get("torch_threads", "?")
        lines.append(f"| {name} | {s['seed']} | {threads} | `{s['genotype']}` | `{s['argmax']}` | "
                     f"{_pct(s['network_val_accuracy'])} | {_pct(s['baseline_val_accuracy'])} | "
                     f"{_pct(s['selection_val_drop'])} | {noisy}/{len(s['margins'])} | {s['search_s']:.0f} | "
                     f"{'—' if ratio is None else f'{ratio:.1f}'} |")
    if len(runs) > 1:
        for label, key in (("perturbation", "genotype"), ("arg-max", "argmax")):
            agreed = agreement([run["search"][key] for run in runs], size)
            shares = ", ".join(f"e{e['edge']} {e['most_common']} {e['share']:.0%}" for e in agreed["per_edge"])
            motion = ", ".join(f"{m:.2f}" for m in agreed["corner_motion_px"])
            lines += ["", f"**{label.capitalize()} genotypes across {len(runs)} searches**: the most common op's share "
                          f"per edge averages {agreed['mean_share']:.0%} ({shares}); corner motion per frame "
                          f"{motion} px{'; all identical' if agreed['identical'] else ''}."]
    candidates = [c for c in runs[0]["val_accuracy"] if c != "baseline"]
    seeds = len(runs[0]["val_accuracy"]["baseline"])
    lines += ["", f"Retrained on {seeds} training seed(s) per search; validation accuracy %, and the difference to "
                  "the 2D baseline with a 95 % interval (over searches, or over training seeds where every search "
                  "chose the same genotype):", "",
              "| genotype | val % (mean ± std over all runs) | std of the search means | Δ vs baseline, points "
              "[95 % CI] | interval over | verdict |", "|---|---|---|---|---|---|"]
    base_all = [v for run in runs for v in run["val_accuracy"]["baseline"]]
    lines.append(f"| baseline (2D) | {_pct(statistics.mean(base_all))} ± "
                 f"{_pct(statistics.stdev(base_all)) if len(base_all) > 1 else '—'} | — | — | — | — |")
    base_means = [statistics.mean(run["val_accuracy"]["baseline"]) for run in runs]
    for c in candidates:
        flat = [v for run in runs for v in run["val_accuracy"][c]]
        means = [statistics.mean(run["val_accuracy"][c]) for run in runs]
        chosen = {run.get("candidates", {}).get(c) for run in runs}
        if len(runs) > 1 and len(chosen) == 1 and None not in chosen:
            # Every search chose the same genotype: nothing varies across searches, so the interval is
            # over the training seeds of one of them (the others repeat it exactly).
            diff = paired_difference(runs[0]["val_accuracy"][c], runs[0]["val_accuracy"]["baseline"])
            unit = f"{len(runs[0]['val_accuracy'][c])} training seeds (one genotype)"
        else:
            diff = paired_difference(means, base_means)
            unit = f"{len(runs)} searches"
        low, high = diff["ci"]
        ci = "" if low != low else f" [{100 * low:+.1f}, {100 * high:+.1f}]"
        word = verdict_word(diff["ci"])
        spread = _pct(statistics.stdev(means)) if len(means) > 1 else "—"
        std = _pct(statistics.stdev(flat)) if len(flat) > 1 else "—"
        lines.append(f"| {c} | {_pct(statistics.mean(flat))} ± {std} | {spread} | "
                     f"{100 * diff['mean']:+.1f}{ci} | {unit} | {word} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="JSON files written by examples/das_search.py")
    args = parser.parse_args()
    runs = []
    for path in args.files:
        with open(path) as f:
            runs.append(json.load(f))
    try:
        print(render(runs, args.files))
    except ValueError as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
