"""Choose the benchmark's training settings on the validation split (the test split is never read).

For each setting in a small grid, train arms on a few seeds exactly as the benchmark does and record
their validation accuracy. The presets in ``img2vid/experiments/config.py`` come from this script's
output; ``docs/results.md`` quotes it.

    python benchmarks/validation_sweep.py --dataset fashion-mnist --arms baseline,fixed \
        --grid epochs=15,30,60 --grid lr=0.02,0.05,0.1 --seeds 2 --out sweep.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time

import torch

from img2vid.experiments import build_arm, build_network, evaluate, preset, train
from img2vid.genotype import Genotype


def _value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--arms", default="baseline")
    parser.add_argument("--grid", action="append", default=[], help="field=v1,v2,... (repeatable)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--motion", default="translate_x:0.05,rotate:5", help="the motion of video arms")
    parser.add_argument("--out", default="validation_sweep.json")
    args = parser.parse_args()
    grid = {}
    for item in args.grid:
        name, values = item.split("=", 1)
        grid[name] = [_value(v) for v in values.split(",")]
    base_config = preset(args.dataset)
    task = base_config.task()
    motion = Genotype.parse(args.motion)
    records = []
    for values in itertools.product(*grid.values()):
        config = dataclasses.replace(base_config, **dict(zip(grid, values)))
        for arm in args.arms.split(","):
            accuracies, tick = [], time.perf_counter()
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                net = build_network(config.network, task.num_classes, task.in_channels, config.width, config.depth)
                built = build_arm(arm, net, genotype=motion, random=motion, fixed=motion, T=config.T,
                                  epochs=config.epochs, seed=seed)
                train(built.model, task.train_x, task.train_y, config.recipe(built.epochs), seed,
                      transform=built.transform)
                accuracies.append(evaluate(built.model, task.val_x, task.val_y, config.batch_size)[0])
            record = {**dict(zip(grid, values)), "arm": arm, "val_acc": accuracies,
                      "val_acc_mean": sum(accuracies) / len(accuracies), "wall_s": time.perf_counter() - tick}
            records.append(record)
            print(json.dumps(record), flush=True)
    assert task.test_reads == 0, "the sweep must not read the test split"
    with open(args.out, "w") as handle:
        json.dump({"dataset": args.dataset, "per_class": base_config.per_class, "seeds": args.seeds,
                   "records": records}, handle, indent=1)


if __name__ == "__main__":
    main()
