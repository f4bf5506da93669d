"""The benchmark behind ``python -m img2vid demo``: one code path for data, arms, training, search and report.

* :mod:`~img2vid.experiments.datasets` — cluttered digits (:mod:`~img2vid.experiments.digits`),
  Fashion-MNIST, ``ImageFolder`` trees, as a :class:`~img2vid.experiments.datasets.Task` whose test
  split is read once, at the end;
* :mod:`~img2vid.experiments.networks` — the small ResNet of 1 to 4 blocks (CPU), torchvision's
  ResNet-18 (GPU), the dilated and large-kernel peers and Eq. 8 read from the network;
* :mod:`~img2vid.experiments.arms` — the paper's ablation arms beside torchvision's AutoAugment,
  RandAugment and TrivialAugment and the receptive-field peers;
* :mod:`~img2vid.experiments.training` — one training loop and one evaluation;
* :mod:`~img2vid.experiments.search` — DAS with warm-up, recalibrated selection and margins;
* :mod:`~img2vid.experiments.receptive_fields` — each trained arm's receptive field, measured;
* :mod:`~img2vid.experiments.statistics` — paired differences and Student-t intervals;
* :mod:`~img2vid.experiments.report` — files, tables, chart and verdict;
* :mod:`~img2vid.experiments.jobs` — searches and training runs in worker processes or in this one;
* :mod:`~img2vid.experiments.benchmark` — the whole run, in protocol order;
* :mod:`~img2vid.experiments.depth` — the run at each depth, side by side (the paper's Fig. 5).
"""

from .arms import ARMS, build_arm, random_genotype
from .benchmark import run_benchmark
from .config import ExperimentConfig, preset
from .datasets import Task, load_task
from .networks import SmallResNet, build_network
from .search import search_motion
from .training import Recipe, evaluate, train

__all__ = [
    "ARMS",
    "ExperimentConfig",
    "Recipe",
    "SmallResNet",
    "Task",
    "build_arm",
    "build_network",
    "evaluate",
    "load_task",
    "preset",
    "random_genotype",
    "run_benchmark",
    "search_motion",
    "train",
]
