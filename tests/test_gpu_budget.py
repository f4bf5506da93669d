"""benchmarks/gpu_budget.py: FLOP counts against the networks' own arithmetic, and the run's total by hand."""

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torchvision

from img2vid.experiments import preset

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_budget.py"
spec = importlib.util.spec_from_file_location("gpu_budget", SCRIPT)
gpu_budget = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_budget)


def test_clip_steps_count_T_frames_and_the_2d_arms_one(one_thread):
    config = preset("fashion-mnist", arms=("baseline", "baseline-xT", "dilated", "fixed", "augment"), width=4)
    costs = gpu_budget.arm_costs(config, batch=2, min_run_time=0.01)
    flops = {arm: cost[0] for arm, cost in costs.items()}
    assert flops["baseline-xT"] == flops["baseline"] == flops["dilated"]  # dilation moves taps, adds none
    # augment is T frames through the 2D network; fixed adds GSF's gate and fusion convolutions
    assert flops["augment"] == pytest.approx(config.T * flops["baseline"], rel=1e-6)
    assert config.T * flops["baseline"] < flops["fixed"] < 1.5 * config.T * flops["baseline"]
    assert flops["search"] > flops["fixed"]  # the τ step comes on top of the weight step
    assert all(seconds > 0 for _, seconds in costs.values())


def test_the_total_by_hand():
    costs = {"baseline": (1.0, 0.0), "baseline-xT": (1.0, 0.0), "fixed": (6.0, 0.0), "search": (20.0, 0.0)}
    config = dataclasses.replace(preset("fashion-mnist", arms=("baseline", "baseline-xT", "fixed")), seeds=2,
                                 epochs=3, warmup_epochs=1, search_epochs=2, fine_tune_epochs=1,
                                 recalibrate_images=8)
    train, val, test = 100, 10, 50
    arms = 2 * 3 * train * (1 + 5 * 1 + 6)  # baseline-xT: T = 5 times the epochs
    testing = 2 * (val + val + test) * (1 + 1 + 6) / 3  # fit (val-many training images), val, test
    search = (1 * train * 6 + 2 * train * 20 + 3 * train * 1  # warm-up, bi-level, the 2D reference
              + 10 * 1 * train * 6 + 10 * 5 * (8 + val) * 6 / 3)  # fine-tuning, masked evaluations
    assert gpu_budget.total(costs, config, 0, train, val, test) == pytest.approx(arms + testing + search)


def test_the_published_gpu_rate_is_read_with_torchvisions_own_flop_count_of_resnet50():
    # torchvision lists ResNet-50's forward pass as 4.089 G multiply-adds; a training step is a forward
    # and a backward pass of twice its work, at 2 FLOPs per multiply-add: about 6x that.
    macs = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["_ops"] * 1e9
    assert gpu_budget.resnet50_training_flops() == pytest.approx(6 * macs, rel=0.02)
