"""Speed and memory of a temporalized vision transformer training step against the plain 2D one.

One training step (forward + cross-entropy + backward) on a clip batch ``(B, T, 3, H, W)``, train mode,
CPU, side by side:

- ``2d``: the plain transformer on the same ``B*T`` frames, logits averaged over each clip's frames
  (what a temporalized model does, minus the fusion);
- ``none``, ``tsm``, ``gsf``: ``temporalize(model, fusion)`` on the clips: token shift (``tsm``) and the
  gated token shift (``gsf``, with a non-zero scale so its whole path runs) on the input of the norm
  before each block's attention.

Models: ``--model vit`` (default) is torchvision's ``VisionTransformer`` at a small size (64 x 64 images,
patch 8, 4 layers, width 192, 3 heads: 65 tokens per frame); ``--model vit_b_16`` is the real ViT-B/16
at 224 x 224 (slow on a CPU); ``--model swin`` a small torchvision ``SwinTransformer``.

Time: ``torch.utils.benchmark.Timer.blocked_autorange``, variants interleaved over several rounds, median
wall clock; and the CPU time of this process per step (``time.process_time``), which on a shared
machine with ``--threads 1`` counts the work done, not the waiting. Memory: the step's peak CPU
allocations above those held before it, from the profiler's memory timeline (``peak_memory`` of
``bench_temporalize.py``).

Target (issue #12): time ``tsm`` <= 1.10x the ``2d`` step.

Run: ``python benchmarks/bench_transformer.py [--model vit|vit_b_16|swin] [--threads N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision
from bench_temporalize import peak_memory  # the same memory measurement as the CNN benchmark
from torch import nn
from torch.utils import benchmark

from img2vid.fusion import GatedTokenShift
from img2vid.temporalize import temporalize

CLASSES = 10
VARIANTS = ("2d", "none", "tsm", "gsf")
TARGETS = {"tsm": 1.10}


def build(name: str) -> tuple[nn.Module, int]:
    """The model and its image size."""
    if name == "vit":
        return torchvision.models.VisionTransformer(image_size=64, patch_size=8, num_layers=4, num_heads=3,
                                                    hidden_dim=192, mlp_dim=768, num_classes=CLASSES), 64
    if name == "vit_b_16":
        return torchvision.models.vit_b_16(num_classes=CLASSES), 224
    if name == "swin":
        return torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=48, depths=[2, 2, 2],
                                                  num_heads=[3, 6, 12], window_size=[4, 4],
                                                  num_classes=CLASSES), 64
    raise ValueError(f"unknown model {name!r}; choose one of ['swin', 'vit', 'vit_b_16']")


def make_step(name: str, variant: str, batch: int, T: int, seed: int) -> Callable[[], None]:
    torch.manual_seed(seed)
    model, size = build(name)
    if variant != "2d":
        model = temporalize(model, variant)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, GatedTokenShift):
                    m.scale.normal_()
    model.train()
    clip = torch.rand(batch, T, 3, size, size)
    targets = torch.randint(CLASSES, (batch,))
    frames = clip.reshape(batch * T, 3, size, size)

    def step() -> None:
        if variant == "2d":
            logits = model(frames).view(batch, T, CLASSES).mean(1)
        else:
            logits = model(clip)
        F.cross_entropy(logits, targets).backward()

    step()  # warm up, and allocate the gradients once, as in training
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit", choices=["vit", "vit_b_16", "swin"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-run-time", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    steps = {variant: make_step(args.model, variant, args.batch, args.T, args.seed) for variant in VARIANTS}
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
            timer = benchmark.Timer(stmt="step()", globals={"step": timed(variant)},
                                    label=f"{args.model} training step", sub_label=f"B={args.batch}, T={args.T}",
                                    description=variant, num_threads=args.threads)
            measurement = timer.blocked_autorange(min_run_time=args.min_run_time)
            times[variant].extend(measurement.times)
            measurements.append(measurement)
    memory = {variant: peak_memory(step) for variant, step in steps.items()}

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {platform.platform()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"threads={args.threads}, seed={args.seed}, rounds={args.rounds}, model={args.model}")
    benchmark.Compare(measurements).print()
    base_time = statistics.median(times["2d"])
    base_cpu = statistics.median(cpu_times["2d"])
    base_extra = memory["2d"]
    print(f"{'variant':8} {'wall ms':>8} {'wall x':>7} {'cpu ms':>8} {'cpu x':>6} {'peak MiB':>9} {'mem x':>6}"
          "  target (judged on CPU time)")
    for variant in VARIANTS:
        median, cpu = statistics.median(times[variant]), statistics.median(cpu_times[variant])
        extra = memory[variant]
        target = TARGETS.get(variant)
        verdict = f"time <= {target:.2f}x {'met' if cpu / base_cpu <= target else 'MISSED'}" if target else ""
        print(f"{variant:8} {median * 1e3:8.1f} {median / base_time:7.3f} {cpu * 1e3:8.1f} {cpu / base_cpu:6.3f} "
              f"{extra:9.1f} {extra / base_extra:6.3f}  {verdict}")
    print("peak MiB: allocations above those held before the step (activations, temporaries, gradients)")


if __name__ == "__main__":
    main()
