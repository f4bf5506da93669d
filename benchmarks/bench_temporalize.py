"""What temporal fusion costs on top of the 2D network: training steps and the fusion modules alone.

**Training steps** (forward + cross-entropy + backward, train mode, CPU), each against the plain 2D
network on the same ``B*T`` frames with logits averaged over each clip's ``T`` frames:

- ``small-12``, ``small-32``: the demo's :class:`~img2vid.experiments.networks.SmallResNet` (torchvision ``BasicBlock``,
  width 12 and 32), clips ``(32, 5, 1, 28, 28)``;
- ``resnet18``: torchvision ResNet-18, clips ``(8, 5, 3, 64, 64)``.

Variants: ``2d`` (the plain network on the 160 or 40 frames), ``2d again`` (a second, identical 2D
network: how far two copies of the same step read apart in this run, the noise floor of every ratio),
``none``, ``tsm``, ``gsf``
(``temporalize(net, fusion)`` on the clips), all eager. With ``--compile`` also, each whole model through
``torch.compile`` (Inductor, ``dynamic=False``): ``2d compiled``, ``2d again compiled`` (the noise floor of
the compiled ratios), ``tsm compiled``, ``gsf compiled``, judged against ``2d compiled``; and ``tsm modules
compiled``, ``gsf modules compiled``: only the fusion modules compiled, the network eager (judged against
the eager ``2d``, and compared with the whole model compiled). With ``--bounds`` also two lower bounds on
the eager steps, the same networks with each fusion module replaced by the part of its work no
implementation built on PyTorch's kernels avoids:

- ``tsm copy``: each shift replaced by a copy (``x * 1``), one pass over the clip forward and one
  backward, which any shift that returns a new tensor makes (the identity path still needs ``x``);
- ``gsf gate only``: each GSF module replaced by its gate's batch norm, ReLU and grouped convolution
  (PyTorch's kernels, forward and backward, in the layouts GSF uses) and one pass writing the output
  and one the input's gradient; the tanh, the temporal taps, the products, the pooling, the fusion
  convolutions and the shifts are left out (free). If a target sits below this row, meeting it in eager
  execution needs kernels other than PyTorch's (a fused extension, or Inductor's code for the elementwise
  chain) or a faster way to run the gate's convolution (its ``Conv3d`` and NCHW forms measured slower).

**Fusion modules alone** (forward + backward at the first fusion site of each network) against
implementations written in the reference layout from the definitions, as ``tests/fusion`` write
them: TSM as mit-han-lab's ``zeros`` plus slice assignment on ``(N, T, C, H, W)``; GSF as
swathikirans' ``(B, C, T, H, W)`` layout with ``BatchNorm3d``, a grouped ``Conv3d``, ``roll`` and zeroed
ends (with this library's two departures, so the outputs agree and are checked to).

Time: variants interleaved over ``--rounds`` rounds (the machine may be shared), each round a
``torch.utils.benchmark.Timer.blocked_autorange`` per variant, wall clock and this process's CPU time
(``time.process_time``; with ``--threads 1`` it counts the work, not the waiting). Every round builds
fresh networks (seed + round, the same for every variant of the round): one network instance can run
a steady few per cent slower than an identical one (an A/A test on the width-12 network read 1.05-1.07
with the same two instances every round, 1.01 with fresh ones), so a single pair of instances biases
a ratio. Printed: the minimum over rounds of each step (``wall x``, ``cpu x``: other processes only
ever slow a step down) and, judged against the targets, the median over rounds of the ratio of
the step to the 2D step of the same round (``paired x``). The ``2d again`` row is a second 2D
network: its ratio shows how far two copies of the same step read apart in the run.

Memory (``--memory``): the peak of one step's CPU allocations above what was held before it, from the
profiler's memory timeline (``torch.profiler``, ``profile_memory=True``).

Targets (issue 13, eager): small networks TSM <= 1.08x, GSF <= 1.15x; ResNet-18 TSM <= 1.05x, GSF <= 1.10x;
fusion modules >= 1.5x faster than the reference layout. (Issue 3, ResNet-18: memory TSM <= 1.15x,
GSF <= 1.35x.) Issue 19, compiled GSF against the compiled 2D step: ResNet-18 <= 1.10x, width 32 <= 1.15x,
width 12 <= 1.25x.

Compiling takes about 10-90 s per model and network at 2 threads the first time (Inductor caches its code
on disk; later rounds' fresh networks reuse the compiled graphs), printed beside the compiled rows.

Run: ``python benchmarks/bench_temporalize.py [--threads N] [--rounds R] [--min-run-time S]
[--networks small-12,small-32,resnet18] [--memory] [--compile] [--bounds]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision
from einops import rearrange
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile
from torch.utils import benchmark

from img2vid.experiments.networks import SmallResNet
from img2vid.fusion import GateShiftFuse, TemporalShift, temporal_shift
from img2vid.temporalize import temporalize

CLASSES = 10
VARIANTS = ("2d", "2d again", "none", "tsm", "gsf")  # "2d again": a second 2D network, the noise floor
BOUNDS = ("tsm copy", "gsf gate only")  # lower bounds: the fusion modules' unavoidable work alone
# whole models through torch.compile, judged against "2d compiled"; then only the fusion modules compiled
COMPILED = ("2d compiled", "2d again compiled", "tsm compiled", "gsf compiled", "tsm modules compiled",
            "gsf modules compiled")
# name: (builder, clip shape)
NETWORKS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int, int, int]]] = {
    "small-12": (lambda: SmallResNet(CLASSES, 1, 12), (32, 5, 1, 28, 28)),
    "small-32": (lambda: SmallResNet(CLASSES, 1, 32), (32, 5, 1, 28, 28)),
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=CLASSES), (8, 5, 3, 64, 64)),
}
STEP_TARGETS = {"small": {"tsm": 1.08, "gsf": 1.15}, "resnet18": {"tsm": 1.05, "gsf": 1.10}}
COMPILED_TARGETS = {"small-12": 1.25, "small-32": 1.15, "resnet18": 1.10}  # compiled GSF x compiled 2D
MEMORY_TARGETS = {"tsm": 1.15, "gsf": 1.35}
REFERENCE_TARGET = 1.5


# --------------------------------------------------------------------------------------------------
# Reference-layout implementations, from the definitions (as tests/fusion write them)
# --------------------------------------------------------------------------------------------------


def reference_shift(x: Tensor, fold_div: int = 8) -> Tensor:
    """mit-han-lab's ``shift``: ``zeros`` and three slice assignments on ``(N, T, C, H, W)``."""
    fold = x.shape[2] // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out


def reference_gsf(m: GateShiftFuse, x: Tensor) -> Tensor:
    """GSF in swathikirans' layout ``(B, C, T, H, W)``: BatchNorm3d, grouped Conv3d, roll + zeroed ends,
    per-half fusion; with this library's departures (no channel permutation, residual scale)."""
    cg, half = m.fused, m.fused // 2
    xg = x[:, :, :cg].permute(0, 2, 1, 3, 4)  # (B, Cg, T, H, W)
    normed = F.batch_norm(xg, m.norm.running_mean, m.norm.running_var, m.norm.weight, m.norm.bias,
                          training=m.training, momentum=m.norm.momentum, eps=m.norm.eps)
    weight3d = rearrange(m.gate.weight, "(g k) c h w -> g c k h w", k=3)
    gate = torch.tanh(F.conv3d(F.relu(normed), weight3d, m.gate_bias, padding=1, groups=2))
    x1, x2 = xg[:, :half], xg[:, half:]
    y1, y2 = gate[:, 0:1] * x1, gate[:, 1:2] * x2
    r1, r2 = x1 - y1, x2 - y2
    y1 = torch.roll(y1, shifts=-1, dims=2)
    y1[:, :, -1] = 0
    y2 = torch.roll(y2, shifts=1, dims=2)
    y2[:, :, 0] = 0

    def weights(y: Tensor, r: Tensor, conv: nn.Conv2d) -> Tensor:
        plane = torch.stack([y.mean((-1, -2)), r.mean((-1, -2))], dim=1)  # (B, 2, c, T)
        return torch.sigmoid(conv(plane))[:, 0, :, :, None, None]

    w1, w2 = weights(y1, r1, m.fuse_next), weights(y2, r2, m.fuse_previous)
    fused = torch.cat([y1 * w1 + r1 * (1 - w1), y2 * w2 + r2 * (1 - w2)], dim=1)
    out_g = xg + m.scale.view(cg, 1, 1, 1) * (fused - xg)
    return torch.cat([out_g.permute(0, 2, 1, 3, 4), x[:, :, cg:]], dim=2)


# --------------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------------


class _GateOnly(torch.autograd.Function):
    """The ``gsf gate only`` bound: GSF's gate (BN, ReLU, grouped conv) forward and backward, one pass
    writing the output (a copy of the input) and one writing the input's gradient.

    Backward feeds the convolution its own output as the taps' gradient: same sizes and kernels as
    GSF's backward, values irrelevant here.
    """

    @staticmethod
    def forward(ctx, x, norm_weight, norm_bias, gate_weight, running_mean, running_var, momentum, eps):
        cg = norm_weight.shape[0]
        frames = x[:, :, :cg].flatten(0, 1)  # (B*T, Cg, H, W)
        normed, mean, invstd = torch.native_batch_norm(frames, norm_weight, norm_bias, running_mean, running_var,
                                                       True, momentum, eps)
        act = torch.clamp_min(normed, 0, out=torch.empty_like(frames, memory_format=torch.channels_last))
        weight = gate_weight.contiguous(memory_format=torch.channels_last)
        taps = F.conv2d(act, weight, padding=1, groups=2)
        ctx.save_for_backward(frames, act, taps, weight, norm_weight, mean, invstd)
        ctx.eps = eps
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        frames, act, taps, weight, norm_weight, mean, invstd = ctx.saved_tensors
        dact, dweight, _ = torch.ops.aten.convolution_backward(
            taps, act, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 2, [True, True, False])
        dnorm = torch.ops.aten.threshold_backward(dact, act, 0)
        dframes, dnorm_weight, dnorm_bias = torch.ops.aten.native_batch_norm_backward(
            dnorm, frames, norm_weight, None, None, mean, invstd, True, ctx.eps, [True, True, True])
        dx = grad.clone()
        dxg = dx[:, :, : frames.shape[1]]
        dxg += dframes.view_as(dxg)
        return dx, dnorm_weight, dnorm_bias, dweight.contiguous(), None, None, None, None


def _gate_only(module: GateShiftFuse, x: Tensor) -> Tensor:
    norm = module.norm
    return _GateOnly.apply(x, norm.weight, norm.bias, module.gate.weight, norm.running_mean, norm.running_var,
                           norm.momentum, norm.eps)


def _copy(x: Tensor) -> Tensor:
    return x * 1  # one pass forward, one backward: what a shift returning a new tensor writes


def make_step(network: str, variant: str, seed: int) -> Callable[[], None]:
    build, (B, T, C, H, W) = NETWORKS[network]
    torch.manual_seed(seed)
    model = build()
    if not variant.startswith("2d"):
        model = temporalize(model, variant.split()[0])
    for module in model.modules():
        if not isinstance(module, (GateShiftFuse, TemporalShift)):
            continue
        if variant.endswith(" modules compiled"):  # the fusion modules alone, through Inductor; the network eager
            module.compile(dynamic=False)
        elif variant in BOUNDS:  # an instance attribute: nn.Module.__call__ runs it instead of the method
            module.forward = _copy if variant == "tsm copy" else functools.partial(_gate_only, module)
    model.train()
    run = model
    if variant.startswith("2d") and variant.endswith(" compiled"):
        # The plain network compiled through a function of its own: Dynamo does not guard on module
        # hooks, so code it compiled for the plain class's forward would be reused for the temporalized
        # model of the same class on frames of the same shape (img2vid refuses to run it). Inlined into
        # this function's graph, the plain forward never gets an entry of its own.
        run = torch.compile(lambda x: model(x), dynamic=False)
    elif variant.endswith(" compiled") and not variant.endswith(" modules compiled"):
        model.compile(dynamic=False)  # the whole model, forward and backward, through Inductor
    clip = torch.rand(B, T, C, H, W)
    targets = torch.randint(CLASSES, (B,))
    frames = clip.reshape(B * T, C, H, W)

    def step() -> None:
        for p in model.parameters():
            p.grad = None
        logits = run(frames).view(B, T, CLASSES).mean(1) if variant.startswith("2d") else run(clip)
        F.cross_entropy(logits, targets).backward()

    step()  # warm up
    return step


def first_site_shape(network: str) -> tuple[int, ...]:
    """The clip shape ``(B, T, C, H, W)`` at the network's first fusion site."""
    build, (B, T, _, H, W) = NETWORKS[network]
    if network == "resnet18":
        return (B, T, 64, H // 4, W // 4)  # layer1: after the stride-2 conv and the max pool
    return (B, T, build().layer1.conv1.in_channels, H, W)


def make_module_steps(network: str, seed: int) -> dict[str, Callable[[], None]]:
    shape = first_site_shape(network)
    torch.manual_seed(seed)
    x = torch.randn(shape, requires_grad=True)
    grad = torch.randn(shape)
    gsf = GateShiftFuse(shape[2]).train()
    with torch.no_grad():
        gsf.scale.normal_()  # a trained, non-zero residual scale: every term counts
    torch.testing.assert_close(temporal_shift(x), reference_shift(x))
    torch.testing.assert_close(gsf(x), reference_gsf(gsf, x), rtol=1e-4, atol=1e-5)

    def run(fn: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def step() -> None:
            x.grad = None
            fn(x).backward(grad)

        return step

    return {"tsm": run(temporal_shift), "tsm ref": run(reference_shift),
            "gsf": run(gsf), "gsf ref": run(lambda v: reference_gsf(gsf, v))}


def timed_rounds(build: Callable[[int], dict[str, Callable[[], None]]], rounds: int, min_run_time: float,
                 threads: int, label: str) -> dict[str, list[tuple[float, float]]]:
    """Per step and round: (minimum wall seconds, minimum CPU seconds) of that round's blocks.

    ``build(r)`` makes round ``r``'s steps; the variants of a round run one after the other, so their
    times can be paired within the round.
    """
    times: dict[str, list[tuple[float, float]]] = {}
    for r in range(rounds):
        steps = build(r)
        for name, step in steps.items():
            cpu = [float("inf")]

            def run(step: Callable[[], None] = step, cpu: list[float] = cpu) -> None:
                start = time.process_time()
                step()
                cpu[0] = min(cpu[0], time.process_time() - start)

            timer = benchmark.Timer(stmt="step()", globals={"step": run}, label=label, description=name,
                                    num_threads=threads)
            wall = min(timer.blocked_autorange(min_run_time=min_run_time).times)
            times.setdefault(name, []).append((wall, cpu[0]))
    return times


def minimum(rounds: list[tuple[float, float]]) -> tuple[float, float]:
    """(minimum wall, minimum CPU) over rounds."""
    return min(w for w, _ in rounds), min(c for _, c in rounds)


def paired(rounds: list[tuple[float, float]], base: list[tuple[float, float]], which: int) -> float:
    """The median over rounds of the round's ratio to the base step (``which``: 0 wall, 1 CPU)."""
    return statistics.median(r[which] / b[which] for r, b in zip(rounds, base))


def peak_memory(step: Callable[[], None]) -> float:
    """Peak MiB of one step above the memory held before it, from the profiler's memory timeline."""
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
    return (max(totals) - totals[0]) / 2**20


def verdict(ratio: float, target: float | None, at_most: bool = True) -> str:
    if target is None:
        return ""
    ok = ratio <= target if at_most else ratio >= target
    return f"{'<=' if at_most else '>='} {target:.2f}x {'met' if ok else 'MISSED'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds per variant and round")
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--memory", action="store_true", help="also the peak step memory (profiler)")
    parser.add_argument("--compile", action="store_true",
                        help="also the whole models through torch.compile (Inductor, needs a C++ compiler) and "
                             "the fusion modules alone compiled, the network eager (see the module docstring)")
    parser.add_argument("--bounds", action="store_true",
                        help="also 'tsm copy' and 'gsf gate only': lower bounds on the fusion modules' cost with "
                             "PyTorch's kernels (see the module docstring)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = sorted(set(networks) - set(NETWORKS))
    if unknown:
        raise SystemExit(f"unknown networks {unknown}; choose from {sorted(NETWORKS)}")

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {platform.platform()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads={args.threads}, "
          f"seed={args.seed}, rounds={args.rounds}; fresh networks each round: minimum over rounds, paired median")
    variants = VARIANTS + (BOUNDS if args.bounds else ()) + (COMPILED if args.compile else ())
    print("\nTraining step x the 2D network on the same frames")
    print(f"{'network':9} {'variant':20} {'wall ms':>8} {'wall x':>7} {'cpu ms':>8} {'cpu x':>6} {'paired x':>9}"
          f"{' peak MiB':>10}{' mem x':>7}  target (judged on the paired ratio: CPU at 1 thread, wall otherwise)")
    judged = 1 if args.threads == 1 else 0
    for network in networks:
        compile_s: dict[str, float] = {}

        def build(r: int, network: str = network, compile_s: dict[str, float] = compile_s
                  ) -> dict[str, Callable[[], None]]:
            steps = {}
            for variant in variants:  # fresh networks every round (seed + round), the same for every variant
                start = time.perf_counter()
                steps[variant] = make_step(network, variant, args.seed + r)
                compile_s.setdefault(variant, time.perf_counter() - start)  # first round: the warm-up compiles
            return steps

        rounds = timed_rounds(build, args.rounds, args.min_run_time, args.threads, f"{network} training step")
        memory = {variant: peak_memory(step) for variant, step in build(0).items()} if args.memory else {}
        targets = STEP_TARGETS["resnet18" if network == "resnet18" else "small"]
        for variant in variants:
            whole = variant.endswith(" compiled") and not variant.endswith(" modules compiled")
            base = "2d compiled" if whole else "2d"  # each ratio against the 2D step run the same way
            wall, cpu = minimum(rounds[variant])
            base_wall, base_cpu = minimum(rounds[base])
            ratio = paired(rounds[variant], rounds[base], judged)
            mem = (f"{memory[variant]:10.1f}{memory[variant] / memory[base]:7.3f}" if memory else f"{'':10}{'':7}")
            fusion = variant.split()[0]
            line = verdict(ratio, targets.get(fusion)) if variant in VARIANTS else ""
            if variant in BOUNDS:
                where = "above: out of reach of" if ratio > targets[fusion] else "under: within reach of"
                line = f"bound on {fusion}, {where} PyTorch's eager kernels ({fusion} <= {targets[fusion]:.2f}x)"
            if variant == "gsf compiled":
                line = f"x 2d compiled, {verdict(ratio, COMPILED_TARGETS[network])}"
            elif whole:
                line = "x 2d compiled"
            if variant.endswith(" modules compiled"):
                whole_model = f"{fusion} compiled"
                line = f"{paired(rounds[variant], rounds[whole_model], judged):.3f}x the step of {whole_model} (paired)"
            if variant.endswith(" compiled"):
                line += f" (built and compiled in {compile_s[variant]:.0f} s)"
            if memory and network == "resnet18" and variant in MEMORY_TARGETS:
                line += f"; memory {verdict(memory[variant] / memory['2d'], MEMORY_TARGETS[variant])}"
            print(f"{network:9} {variant:20} {wall * 1e3:8.1f} {wall / base_wall:7.3f} {cpu * 1e3:8.1f} "
                  f"{cpu / base_cpu:6.3f} {ratio:9.3f}{mem}  {line}")

    print("\nFusion module alone (forward + backward at the first fusion site) x the reference layout")
    print(f"{'network':9} {'site (B, T, C, H, W)':24} {'module':6} {'ours ms':>8} {'ref ms':>8} {'faster':>7}  target")
    for network in networks:
        rounds = timed_rounds(lambda r, network=network: make_module_steps(network, args.seed + r), args.rounds,
                              args.min_run_time / 2, args.threads, f"{network} fusion module")
        for module in ("tsm", "gsf"):  # minimum CPU time at one thread, wall clock otherwise
            ours, ref = minimum(rounds[module])[judged], minimum(rounds[f"{module} ref"])[judged]
            print(f"{network:9} {first_site_shape(network)!s:24} {module:6} {ours * 1e3:8.2f} {ref * 1e3:8.2f} "
                  f"{ref / ours:7.2f}  {verdict(ref / ours, REFERENCE_TARGET, at_most=False)}")


if __name__ == "__main__":
    main()
