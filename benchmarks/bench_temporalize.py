"""Speed and memory of a temporalized ResNet-18 training step against the plain 2D ResNet-18.

One training step (forward + cross-entropy + backward) on a clip batch ``(8, 5, 3, 64, 64)``, train
mode, CPU:

- ``2d``: the plain ResNet-18 on the same 40 frames ``(40, 3, 64, 64)``, logits averaged over the 5
  frames of each clip (what a temporalized model does, minus the fusion);
- ``none``, ``tsm``, ``gsf``: ``temporalize(resnet18(num_classes=10), fusion)`` on the clips
  ``(8, 5, 3, 64, 64)``.

Time: ``torch.utils.benchmark.Timer.blocked_autorange``, variants interleaved over several rounds (the
machine may be shared), median over all blocks (wall clock). On a shared machine wall clock mostly
measures the neighbours, so the CPU time of this process per step (``time.process_time``) is
reported too: with ``--threads 1`` it counts the work done, not the waiting.

Memory: the peak of the step's CPU allocations, from ``torch.profiler`` (``profile_memory=True``)
and its memory timeline, which replays every tensor allocation and free of the step; reported as
the peak above the memory held before the step (parameters and the previous step's gradients), the
part the fusion can change, and also in total.

Targets (issue #3): time TSM <= 1.10x, GSF <= 1.30x (aim 1.10x); memory TSM <= 1.15x, GSF <= 1.35x.

Run: ``python benchmarks/bench_temporalize.py [--threads N] [--rounds R] [--min-run-time S]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch.profiler import ProfilerActivity, profile
from torch.utils import benchmark

from img2vid.temporalize import temporalize

B, T, C, H, W = 8, 5, 3, 64, 64
CLASSES = 10
VARIANTS = ("2d", "none", "tsm", "gsf")
TARGETS = {"tsm": (1.10, 1.15), "gsf": (1.30, 1.35)}


def make_step(variant: str, seed: int) -> Callable[[], None]:
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=CLASSES)
    if variant != "2d":
        model = temporalize(model, variant)
    model.train()
    clip = torch.rand(B, T, C, H, W)
    targets = torch.randint(CLASSES, (B,))
    frames = clip.reshape(B * T, C, H, W)

    def step() -> None:
        if variant == "2d":
            logits = model(frames).view(B, T, CLASSES).mean(1)
        else:
            logits = model(clip)
        F.cross_entropy(logits, targets).backward()

    step()  # warm up, and allocate the gradients once, as in training
    return step


def peak_memory(step: Callable[[], None]) -> tuple[float, float]:
    """(peak above the memory held before the step, peak in total), in MiB, from the profiler's
    memory timeline of one step."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for CUDA snapshots; the CPU path works
        path = os.path.join(folder, "timeline.json")
        prof.export_memory_timeline(path, device="cpu")
        with open(path) as file:
            _, sizes = json.load(file)
    totals = [sum(per_category) for per_category in sizes]
    return (max(totals) - totals[0]) / 2**20, max(totals) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-run-time", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    steps = {variant: make_step(variant, args.seed) for variant in VARIANTS}
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cpu_times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}

    def timed(variant: str) -> Callable[[], None]:
        def step() -> None:
            start = time.process_time()
            steps[variant]()
            cpu_times[variant].append(time.process_time() - start)

        return step

    measurements = []
    for _ in range(args.rounds):  # interleaved, so load changes hit every variant alike
        for variant in VARIANTS:
            timer = benchmark.Timer(stmt="step()", globals={"step": timed(variant)}, label="ResNet-18 training step",
                                    sub_label=f"({B}, {T}, {C}, {H}, {W})", description=variant,
                                    num_threads=args.threads)
            measurement = timer.blocked_autorange(min_run_time=args.min_run_time)
            times[variant].extend(measurement.times)
            measurements.append(measurement)
    memory = {variant: peak_memory(step) for variant, step in steps.items()}

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {platform.platform()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"threads={args.threads}, seed={args.seed}, rounds={args.rounds}")
    benchmark.Compare(measurements).print()
    base_time = statistics.median(times["2d"])
    base_cpu = statistics.median(cpu_times["2d"])
    base_extra, base_total = memory["2d"]
    print(f"{'variant':8} {'wall ms':>8} {'wall x':>7} {'cpu ms':>8} {'cpu x':>6} {'peak MiB':>9} {'mem x':>6} "
          f"{'total MiB':>10} {'total x':>8}  targets (time judged on CPU time)")
    for variant in VARIANTS:
        median, cpu = statistics.median(times[variant]), statistics.median(cpu_times[variant])
        extra, total = memory[variant]
        target = TARGETS.get(variant)
        verdict = ""
        if target:
            ok_time, ok_mem = cpu / base_cpu <= target[0], extra / base_extra <= target[1]
            verdict = (f"time <= {target[0]:.2f}x {'met' if ok_time else 'MISSED'}, "
                       f"memory <= {target[1]:.2f}x {'met' if ok_mem else 'MISSED'}")
        print(f"{variant:8} {median * 1e3:8.1f} {median / base_time:7.3f} {cpu * 1e3:8.1f} {cpu / base_cpu:6.3f} "
              f"{extra:9.1f} {extra / base_extra:6.3f} {total:10.1f} {total / base_total:8.3f}  {verdict}")
    print("peak MiB: allocations above those held before the step (activations, temporaries); "
          "total MiB: with parameters and gradients")


if __name__ == "__main__":
    main()
