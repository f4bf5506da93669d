"""Search steps vs a fixed-genotype training step: time and peak memory, side by side.

Two settings, each with the default stem (``searchable_stem("affine")``: 10 edges x 5 ops, T=5) in
front of a GSF-temporalized network, against ``ImageToVideo`` of a fixed genotype (the stem's arg-max
chain, one warp per frame) in front of the same network:

- ``resnet18``: torchvision ResNet-18, ``(8, 3, 32, 32)`` images;
- ``small``: the demo's :class:`~img2vid.experiments.networks.SmallResNet` (width 12), ``(32, 1, 28, 28)`` images.

Rows (all forward + cross-entropy + backward, train mode):

- ``fixed``: the fixed genotype's training step, the unit of every ratio;
- ``search step``: the same with the stem in front (what a weight step of the search costs:
  autograd also reaches ``τ``);
- ``search, no recomputation``: the stem keeping every warped clip for backward instead of
  recomputing them (what ``torch.utils.checkpoint`` buys in memory);
- ``τ step``: ``Architect(order="first").step`` on a validation batch (gradients w.r.t. ``τ`` only);
- ``iteration``: one first-order search iteration, the ``τ`` step then the weight step;
- ``weight step, stem no_grad`` and ``iteration, stem no_grad``: the same with the weight step's clip
  made under ``torch.no_grad()`` (the weights' gradient does not pass through the stem, so nothing
  changes but the work autograd would spend on ``τ``'s gradient, which the weight step discards).

Targets (issue 13): search step <= 1.5x time and <= 1.5x peak memory; a whole first-order iteration on
the small network <= 2.3x.

Time: rows interleaved over ``--rounds`` rounds; the minimum over all blocks of
``torch.utils.benchmark.Timer.blocked_autorange``, wall clock and this process's CPU time (at one
thread, CPU time counts the work rather than the waiting on a shared machine). Peak memory is what the
step allocates above what was resident before it: ``torch.cuda.max_memory_allocated`` on CUDA, the
profiler's memory timeline on CPU.

    python benchmarks/bench_search.py [--threads 1] [--settings resnet18,small]
    python benchmarks/bench_search.py --device cuda --settings resnet18
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torch.utils.benchmark as benchmark
from torch import nn
from torchvision.models import resnet18

import img2vid as i2v
from img2vid.experiments.networks import SmallResNet
from img2vid.search import Architect, searchable_stem
from img2vid.temporalize import temporalize

# name: (network builder, image shape (B, C, H, W))
SETTINGS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (lambda: resnet18(num_classes=10), (8, 3, 32, 32)),
    "small": (lambda: SmallResNet(10, 1, 12), (32, 1, 28, 28)),
}
TARGETS = {"search step": 1.5, "iteration": 2.3, "iteration, stem no_grad": 2.3}
MEMORY_TARGET = 1.5


def make_steps(setting: str, T: int, device: torch.device, seed: int) -> dict[str, Callable[[], None]]:
    build, shape = SETTINGS[setting]
    torch.manual_seed(seed)
    net = temporalize(build(), "gsf").to(device).train()
    stem = searchable_stem("affine", T).to(device)
    plain = searchable_stem("affine", T).to(device)
    plain._checkpointed = lambda fn, *a: fn(*a)  # type: ignore[method-assign]
    fixed = i2v.ImageToVideo(stem.genotype(), T)
    x, x_val = torch.rand(shape, device=device), torch.rand(shape, device=device)
    y, y_val = torch.randint(0, 10, shape[:1], device=device), torch.randint(0, 10, shape[:1], device=device)
    model = nn.Sequential(stem, net)
    # lr 0: every row sees the same weights and τ however often it runs
    architect = Architect(model, F.cross_entropy, optimizer=torch.optim.SGD(stem.arch_parameters(), lr=0.0))

    def training_step(front: nn.Module) -> Callable[[], None]:
        full = nn.Sequential(front, net)

        def step() -> None:
            for p in full.parameters():
                p.grad = None
            F.cross_entropy(full(x), y).backward()

        return step

    weight_step = training_step(stem)

    def tau_step() -> None:
        architect.step((x, y), (x_val, y_val))

    def iteration() -> None:
        tau_step()
        weight_step()

    def weight_step_on_data() -> None:
        # The weights' gradient does not pass through the stem, so its clip can be made as data.
        for p in net.parameters():
            p.grad = None
        with torch.no_grad():
            clip = stem(x)
        F.cross_entropy(net(clip), y).backward()

    def iteration_on_data() -> None:
        tau_step()
        weight_step_on_data()

    return {"fixed": training_step(fixed), "search step": weight_step, "search, no recomputation":
            training_step(plain), "τ step": tau_step, "iteration": iteration,
            "weight step, stem no_grad": weight_step_on_data, "iteration, stem no_grad": iteration_on_data}


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


def timed_min(steps: dict[str, Callable[[], None]], rounds: int, min_run_time: float,
              device: torch.device) -> dict[str, tuple[float, float]]:
    """Per row: (minimum wall seconds, minimum CPU seconds) over interleaved rounds."""
    wall = {name: float("inf") for name in steps}
    cpu = {name: float("inf") for name in steps}

    def counted(name: str) -> Callable[[], None]:
        def run() -> None:
            start = time.process_time()
            steps[name]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            cpu[name] = min(cpu[name], time.process_time() - start)

        return run

    for _ in range(rounds):
        for name in steps:
            timer = benchmark.Timer(stmt="step()", globals={"step": counted(name)}, description=name)
            wall[name] = min(wall[name], min(timer.blocked_autorange(min_run_time=min_run_time).times))
    return {name: (wall[name], cpu[name]) for name in steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds per row and round")
    parser.add_argument("--rounds", type=int, default=5, help="rows timed in turn; minimum kept")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    judged_on_cpu = device.type == "cpu" and torch.get_num_threads() == 1
    print(f"device={device} threads={torch.get_num_threads()} T={args.T} seed={args.seed} rounds={args.rounds}; "
          f"stem: 10 edges x 5 ops; ratios judged on {'CPU' if judged_on_cpu else 'wall'} time")
    for setting in [s.strip() for s in args.settings.split(",") if s.strip()]:
        if setting not in SETTINGS:
            raise SystemExit(f"unknown setting {setting!r}; choose from {sorted(SETTINGS)}")
        steps = make_steps(setting, args.T, device, args.seed)
        measured = ("fixed", "search step", "search, no recomputation")
        peaks = {name: peak_bytes(steps[name], device) for name in measured}
        times = timed_min(steps, args.rounds, args.min_run_time, device)
        print(f"\n{setting}: images {SETTINGS[setting][1]}, GSF-temporalized network")
        print(f"{'':26s} {'wall ms':>8s} {'wall x':>7s} {'cpu ms':>8s} {'cpu x':>6s} {'peak MiB':>9s} {'mem x':>6s}"
              "  target")
        base_wall, base_cpu = times["fixed"]
        for name, (wall, cpu) in times.items():
            ratio = cpu / base_cpu if judged_on_cpu else wall / base_wall
            mem = f"{peaks[name] / 2**20:9.1f} {peaks[name] / peaks['fixed']:6.2f}" if name in peaks else " " * 16
            target = TARGETS.get(name)
            verdict = f"time <= {target:.2f}x {'met' if ratio <= target else 'MISSED'}" if target else ""
            if name.startswith("iteration") and setting != "small":
                verdict = ""
            if name == "search step":
                ok = peaks[name] / peaks["fixed"] <= MEMORY_TARGET
                verdict += f", memory <= {MEMORY_TARGET:.2f}x {'met' if ok else 'MISSED'}"
            print(f"{name:26s} {wall * 1e3:8.1f} {wall / base_wall:7.2f} {cpu * 1e3:8.1f} {cpu / base_cpu:6.2f} {mem}"
                  f"  {verdict}")


if __name__ == "__main__":
    main()
