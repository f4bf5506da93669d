"""Search step vs fixed-genotype training step: time and peak memory, side by side.

A *search step* is forward + backward of ``searchable_stem() -> temporalized ResNet-18`` (10 edges x 5
ops, T=5); the *fixed step* is the same with ``ImageToVideo`` of a fixed genotype in front. Targets
(issue #4): time ratio <= 2.0, peak-memory ratio <= 1.5. A third row shows the stem without
recomputation (every op's clip kept for backward), to show what ``torch.utils.checkpoint`` buys.

Peak memory is what the step allocates on top of what was resident before it (parameters, inputs):
``torch.cuda.max_memory_allocated`` on CUDA, the profiler's memory timeline on CPU.

    python benchmarks/bench_search.py                # CPU, defaults of issue #4
    python benchmarks/bench_search.py --device cuda --batch 64
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Callable

import torch
import torch.utils.benchmark as benchmark
from torch import nn
from torchvision.models import resnet18

import img2vid as i2v
from img2vid.search import searchable_stem

try:
    from img2vid.temporalize import temporalize
except ImportError:  # pragma: no cover - temporalize lands separately
    temporalize = None


def make_step(front: nn.Module, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    model = nn.Sequential(front, net)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        for p in model.parameters():
            p.grad = None
        loss_fn(model(x), y).backward()

    return step


def peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated during one step, above what was allocated before it."""
    step()  # warm-up: lazy allocations, cuDNN plans
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(device)
    return max(sum(row) for row in sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=2.0, help="seconds per timed row and round")
    parser.add_argument("--rounds", type=int, default=3, help="rows timed in turn; best median kept")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if temporalize is None:
        raise SystemExit("img2vid.temporalize is not available yet")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    net = temporalize(resnet18(num_classes=10)).to(device)
    stem = searchable_stem("affine", args.T).to(device)
    plain = searchable_stem("affine", args.T).to(device)
    plain._checkpointed = lambda fn, *a: fn(*a)  # type: ignore[method-assign]
    fixed = i2v.ImageToVideo(stem.genotype(), args.T)  # the arg-max chain: 10 steps, one warp per frame

    rows = {
        "fixed genotype (ImageToVideo)": make_step(fixed, net, x, y),
        "search (searchable_stem)": make_step(stem, net, x, y),
        "search, no recomputation": make_step(plain, net, x, y),
    }
    print(f"device={device} threads={torch.get_num_threads()} B={args.batch} T={args.T} "
          f"{args.size}x{args.size} stem: {len(stem.edges)} edges x {len(stem.ops)} ops, temporalized ResNet-18")
    peaks = {name: peak_bytes(step, device) for name, step in rows.items()}
    # Rows take turns, and each keeps its best median: other processes on a shared CPU only slow down.
    times = {name: float("inf") for name in rows}
    for _ in range(args.rounds):
        for name, step in rows.items():
            timer = benchmark.Timer(stmt="step()", globals={"step": step}, label="search step",
                                    sub_label=name, description="forward + backward")
            with contextlib.redirect_stdout(None):
                times[name] = min(times[name], timer.blocked_autorange(min_run_time=args.min_run_time).median)
    base = "fixed genotype (ImageToVideo)"
    print(f"{'':32s} {'time (ms)':>10s} {'x fixed':>8s} {'peak (MiB)':>11s} {'x fixed':>8s}")
    for name in rows:
        print(f"{name:32s} {1e3 * times[name]:10.1f} {times[name] / times[base]:8.2f} "
              f"{peaks[name] / 2**20:11.1f} {peaks[name] / peaks[base]:8.2f}")
    search = "search (searchable_stem)"
    print(f"time ratio {times[search] / times[base]:.2f} (target <= 2.0), "
          f"peak-memory ratio {peaks[search] / peaks[base]:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
