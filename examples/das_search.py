"""DAS end to end: search the motion, select it by perturbation, save it, and retrain it on validation.

The benchmark's own code path (:mod:`img2vid.experiments`), step by step:

1. **Search** (the paper's Sec. 3.1, :func:`~img2vid.experiments.search_motion`): a ``searchable_stem``
   in front of a GSF-temporalized network; warm-up epochs train the weights alone, then ``τ`` takes
   first-order ``Architect`` steps on validation batches between weight steps (Eq. 2).
2. **Select**: ``derive_genotype`` masks each op of each edge in turn — BatchNorm re-estimated before
   each evaluation, the whole validation split scored, the network fine-tuned between decisions — and
   keeps the op whose removal hurts most. Each decision's margin is printed in validation images.
3. **Save** the genotype as JSON (``Genotype.to_json``).
4. **Retrain** with ``img2vid.wrap(model, genotype)`` from the same initialisation and data order as
   the arg-max genotype, an equal-steps random genotype and the 2D baseline, and compare them on the
   **validation** split (the test split is not read here: that is the benchmark's last step).

    python examples/das_search.py                                   # cluttered digits, CPU
    python examples/das_search.py --dataset fashion-mnist --seeds 3 # Fashion-MNIST, 100 images per class
    python examples/das_search.py --quick                           # smallest configuration (CI)
    python examples/das_search.py --dataset imagefolder --root ~/data/pets --network resnet18 --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

import img2vid as i2v
from img2vid.experiments import build_arm, build_network, evaluate, preset, search_motion, train
from img2vid.experiments.arms import move_magnitudes, non_identity_steps, random_genotype
from img2vid.experiments.benchmark import machine
from img2vid.experiments.statistics import paired_difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["digits", "fashion-mnist", "imagefolder"], default="digits")
    parser.add_argument("--root", default=None, help="Fashion-MNIST IDX folder, or an ImageFolder root with train/")
    parser.add_argument("--per-class", type=int, default=None, help="training (and validation) images per class")
    parser.add_argument("--network", choices=["small", "resnet18"], default=None)
    parser.add_argument("--magnitudes", choices=["default", "authors", "learn"], default=None)
    parser.add_argument("--fine-tune-epochs", type=int, default=None,
                        help="epochs of weight training between decisions, at a tenth of the lr (default 5)")
    parser.add_argument("--edge-order", choices=["chain", "random"], default=None)
    parser.add_argument("--search-epochs", type=int, default=None)
    parser.add_argument("--T", type=int, default=None, help="frames per clip (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="the search's seed")
    parser.add_argument("--seeds", type=int, default=2, help="retraining seeds per genotype")
    parser.add_argument("--out", default="das_search.json", help="the genotype and the comparison, as JSON")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smallest configuration: < 1 minute on CPU")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    try:
        config = preset(args.dataset, quick=args.quick, root=args.root, per_class=args.per_class,
                        network=args.network, magnitudes=args.magnitudes, fine_tune_epochs=args.fine_tune_epochs,
                        edge_order=args.edge_order, search_epochs=args.search_epochs, seeds=args.seeds, T=args.T)
        task = config.task()
    except (ValueError, OSError) as error:
        parser.error(str(error))
    device = torch.device(args.device)
    start = time.time()
    print(f"data: {task.description}")

    # 1-2. Search and selection.
    result = search_motion(task, config, device, seed=args.seed, progress=not args.no_progress)
    genotype, argmax = i2v.Genotype.parse(result["genotype"]), i2v.Genotype.parse(result["argmax"])
    random = random_genotype(non_identity_steps(genotype), move_magnitudes(result["magnitudes"]), seed=args.seed)

    # 3-4. Retrain each genotype from the same initialisation and data order; compare on validation.
    candidates = {"baseline": None, "perturbation": genotype, "arg-max": argmax, "random": random}
    val: dict[str, list[float]] = {name: [] for name in candidates}
    train_s: dict[str, list[float]] = {name: [] for name in candidates}
    for seed in range(config.seeds):
        torch.manual_seed(seed)
        base = build_network(config.network, task.num_classes, task.in_channels, config.width)
        for name, motion in candidates.items():
            arm = build_arm("baseline" if motion is None else "das", base, genotype=motion or genotype,
                            random=random, fixed=random, T=config.T, epochs=config.epochs, seed=seed)
            model = arm.model.to(device)
            tick = time.perf_counter()
            train(model, task.train_x.to(device), task.train_y.to(device), config.recipe(), seed)
            train_s[name].append(time.perf_counter() - tick)
            val[name].append(evaluate(model, task.val_x, task.val_y, config.batch_size)[0])
    result["time_ratio"] = result["search_s"] / train_s["perturbation"][0]
    print(f"search {result['search_s']:.0f} s = {result['time_ratio']:.2f} x one das-arm training run (the paper: "
          "under a GPU day; Faster AutoAugment 0.23 GPU-hours, DADA 0.1 on CIFAR-10)")
    print(f"retrained {config.seeds} seed(s), {config.epochs} epochs; validation accuracy (mean over seeds):")
    for name, motion in candidates.items():
        diff = paired_difference(val[name], val["baseline"])
        low, high = diff["ci"]
        interval = ("" if name == "baseline" or low != low
                    else f"  Δ vs baseline 95 % CI [{100 * low:+.1f}, {100 * high:+.1f}]")
        print(f"  {name:<13} {100 * sum(val[name]) / len(val[name]):5.1f} %{interval}   {motion or '2D'}")
    Path(args.out).write_text(json.dumps({"genotype": genotype.to_json(), "search": result, "val_accuracy": val,
                                          "train_s": train_s, "config": dataclasses.asdict(config),
                                          "machine": machine(device), "data": task.description,
                                          "candidates": {k: str(v) if v else None for k, v in candidates.items()}},
                                         indent=1, default=str) + "\n")
    print(f"saved {args.out}; i2v.Genotype.from_json(json.load(open({args.out!r}))['genotype']) is the motion")
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
