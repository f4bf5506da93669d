"""Size the full-data Fashion-MNIST run with ResNet-18 for a GPU, from step costs measured here.

For every arm of the benchmark, one training step of its model (torchvision's ResNet-18, 3x3 stem,
no max-pool; Fashion-MNIST's ``(1, 28, 28)`` images) is timed on this machine's CPU and its floating
point operations are counted (:class:`torch.utils.flop_counter.FlopCounterMode`, forward + backward),
and so is one first-order search iteration (the τ step on a validation batch, then the weight step).
The run's total work is then

- every arm on every seed: epochs x training images x the arm's cost per image (baseline-xT: T times
  the epochs);
- the search: warm-up epochs of weight steps, bi-level epochs of search iterations, the 2D network
  trained as long for scale, ``fine_tune_epochs`` of weight steps after each edge decision
  and edges x ops masked evaluations (each a BatchNorm recalibration plus the whole validation split);
- after each training run, its accuracy on as many training images as the validation split holds, on
  the validation split, and on the test split, read once per arm and seed (a forward pass counted as
  a third of a training step).

A GPU's time is the total divided by a sustained throughput that this script cannot measure
(``--gpu-tflops``); the CPU's is the same total at the CPU seconds measured here. By default the GPU
is one A100 at its published rate, read with this script's counter: NVIDIA's DeepLearningExamples
train ResNet-50 v1.5 on one A100 80GB at 938 images/s in TF32 (the precision PyTorch's cuDNN
convolutions use by default; 2,470 images/s with mixed precision), and
:class:`~torch.utils.flop_counter.FlopCounterMode` counts 24.3 GFLOP per 224-px ResNet-50 training
image (:func:`resnet50_training_flops`), so 22.8 TFLOP/s. Fashion-MNIST's 28-px images keep a GPU
less busy than 224-px ones, so that rate is an upper bound more than an estimate. It prints the
largest number of epochs whose run fits ``--minutes`` and the sustained rate one epoch needs.

    python benchmarks/gpu_budget.py --minutes 10
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import torch
import torch.nn.functional as F
import torch.utils.benchmark as benchmark
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from img2vid.experiments import build_arm, build_network, preset
from img2vid.experiments.arms import VIDEO_ARMS
from img2vid.experiments.config import ExperimentConfig
from img2vid.genotype import Genotype
from img2vid.search import Architect, network_parameters, searchable_stem
from img2vid.search.stem import SPACES
from img2vid.temporalize import temporalize


A100_TF32_RESNET50_IMAGES_PER_S = 938  # NVIDIA DeepLearningExamples, ResNet-50 v1.5 for PyTorch, 1x A100 80GB


def resnet50_training_flops() -> float:
    """FLOPs of one training step of torchvision's ResNet-50 per 224-px image, counted on the meta device."""
    model = torchvision.models.resnet50().to("meta")
    x = torch.empty(2, 3, 224, 224, device="meta")
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), torch.zeros(2, dtype=torch.long, device="meta")).backward()
    return counter.get_total_flops() / 2


def measure(step, batch: int, min_run_time: float) -> tuple[float, float]:
    """(FLOPs, CPU seconds) per image of ``step`` (a whole training step on ``batch`` images)."""
    step()  # warm-up
    with FlopCounterMode(display=False) as counter:
        step()
    seconds = benchmark.Timer("step()", globals={"step": step}).blocked_autorange(min_run_time=min_run_time).median
    return counter.get_total_flops() / batch, seconds / batch


def arm_costs(config: ExperimentConfig, batch: int, min_run_time: float) -> dict[str, tuple[float, float]]:
    """Every arm's (FLOPs, CPU seconds) per training image, and the search iteration's as ``"search"``."""
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    motion = Genotype.parse(config.fixed)
    costs = {}
    for arm in config.arms:
        torch.manual_seed(0)
        base = build_network(config.network, 10, 1, config.width, config.depth)
        model = build_arm(arm, base, genotype=motion, random=motion, fixed=motion, T=config.T, epochs=1, seed=0).model

        def step(model: nn.Module = model) -> None:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()

        costs[arm] = measure(step, batch, min_run_time)
    torch.manual_seed(0)
    stem = searchable_stem("affine", T=config.T, nodes=config.nodes)
    net = temporalize(build_network(config.network, 10, 1, config.width, config.depth), "gsf")
    model = nn.Sequential(stem, net)
    architect = Architect(model, F.cross_entropy, order="first",
                          optimizer=torch.optim.SGD(stem.arch_parameters(), lr=0.0))
    weights = network_parameters(model)

    def iteration() -> None:
        architect.step((x, y), (x, y))
        for p in weights:
            p.grad = None
        with torch.no_grad():
            clip = stem(x)
        F.cross_entropy(net(clip), y).backward()

    costs["search"] = measure(iteration, batch, min_run_time)
    return costs


def total(costs: dict[str, tuple[float, float]], config: ExperimentConfig, which: int, train: int, val: int,
          test: int) -> float:
    """The run's total FLOPs (``which=0``) or CPU seconds (``which=1``) at ``config``'s epochs."""
    arms = sum(config.seeds * config.epochs * (config.T if arm == "baseline-xT" else 1) * train * costs[arm][which]
               for arm in config.arms)
    testing = sum(config.seeds * (min(train, val) + val + test) * costs[arm][which] / 3 for arm in config.arms)
    das = costs["fixed"][which]  # a GSF clip step: what the search's weight steps cost
    edges, ops = config.nodes * (config.nodes + 1) // 2, len(SPACES["affine"])  # the stem's edges and ops
    search = config.search_seeds * (
        config.warmup_epochs * train * das + config.search_epochs * train * costs["search"][which]
        + (config.warmup_epochs + config.search_epochs) * train * costs["baseline"][which]
        + edges * config.fine_tune_epochs * train * das
        + edges * ops * (min(config.recalibrate_images, train) + val) * das / 3)
    return arms + testing + search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu-tflops", type=float, default=None,
                        help="assumed sustained TFLOP/s of the GPU on these steps (default: one A100's published "
                             "TF32 ResNet-50 training rate, about 23)")
    parser.add_argument("--minutes", type=float, default=10.0, help="the GPU run's budget (default: 10)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="images per measured step (default: 32)")
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--search-epochs", type=int, default=1)
    parser.add_argument("--fine-tune-epochs", type=int, default=0)
    parser.add_argument("--min-run-time", type=float, default=2.0, help="seconds per timed step (default: 2)")
    args = parser.parse_args()
    if args.gpu_tflops is None:
        resnet50 = resnet50_training_flops()
        args.gpu_tflops = A100_TF32_RESNET50_IMAGES_PER_S * resnet50 / 1e12
        print(f"GPU: {args.gpu_tflops:.1f} TFLOP/s sustained, one A100's published TF32 ResNet-50 training rate "
              f"({A100_TF32_RESNET50_IMAGES_PER_S} images/s x {resnet50 / 1e9:.1f} GFLOP)")
    config = preset("fashion-mnist", per_class=5400, val_per_class=600, network="resnet18", seeds=args.seeds,
                    warmup_epochs=args.warmup_epochs, search_epochs=args.search_epochs,
                    fine_tune_epochs=args.fine_tune_epochs)
    train, val, test = 54_000, 6_000, 10_000
    costs = arm_costs(config, args.batch, args.min_run_time)
    print(f"CPU: {torch.get_num_threads()} threads, batch {args.batch}, ResNet-18 on (1, 28, 28) images")
    print("| step | GFLOP per image | CPU ms per image | CPU GFLOP/s |")
    print("|---|---|---|---|")
    for name, (flops, seconds) in costs.items():
        kind = " (clip)" if name in VIDEO_ARMS else ""
        print(f"| {name}{kind} | {flops / 1e9:.2f} | {1e3 * seconds:.1f} | {flops / seconds / 1e9:.0f} |")
    budget = args.minutes * 60 * args.gpu_tflops * 1e12
    fitting = 0
    for epochs in range(1, 201):
        run = dataclasses.replace(config, epochs=epochs)
        flops = total(costs, run, 0, train, val, test)
        if epochs <= 3 or flops <= budget:
            print(f"{epochs} epoch(s): {flops / 1e15:.1f} PFLOP = {flops / (args.gpu_tflops * 1e12) / 60:.1f} GPU-min "
                  f"at {args.gpu_tflops:.3g} TFLOP/s; "
                  f"{total(costs, run, 1, train, val, test) / 3600:.1f} CPU-hours here")
        if flops > budget:
            break
        fitting = epochs
    search = config.warmup_epochs, config.search_epochs, config.fine_tune_epochs
    print(f"fits {args.minutes:g} min at {args.gpu_tflops:.3g} TFLOP/s: {fitting} epoch(s) (search: {search[0]} "
          f"warm-up + {search[1]} bi-level epochs, {search[2]} fine-tuning epochs per decision)"
          + ("" if fitting else f"; not even one: {math.ceil(flops / budget)}x the budget"))
    one = total(costs, dataclasses.replace(config, epochs=1), 0, train, val, test)
    print(f"one epoch in {args.minutes:g} min needs {one / (args.minutes * 60) / 1e12:.0f} TFLOP/s sustained")


if __name__ == "__main__":
    main()
