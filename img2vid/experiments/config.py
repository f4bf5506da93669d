"""Everything a benchmark run depends on, in one frozen dataclass, with one preset per dataset.

The presets' training settings were chosen on the *validation* split only (``docs/results.md`` says
how); the test split is read once per arm and seed, after every arm has finished training.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from ..genotype import Genotype
from .arms import ARMS, SEARCH_ARMS, check_arms
from .datasets import DATASETS, Task, load_task
from .networks import DEPTHS, NETWORKS
from .training import Recipe

__all__ = ["MAGNITUDES", "ExperimentConfig", "preset"]

#: Magnitude sets the search can start from: ours (``OPS`` defaults), the authors' larger ones
#: (casarinsof/TRAS: translation up to 0.12 of the size, rotation up to 20 degrees, zoom up to 1.3),
#: or ours made learnable (``learn_magnitudes=True``).
MAGNITUDES: dict[str, dict[str, float]] = {
    "default": {},
    "authors": {"translate_x": 0.12, "translate_y": 0.12, "rotate": 20.0, "scale": 1.3},
    "learn": {},
}


@dataclass(frozen=True)
class ExperimentConfig:
    """One benchmark run. Defaults are the cluttered-digits preset (the README's main job).

    Attributes:
        dataset, root, per_class, val_per_class, data_seed, image_size: the data
            (:func:`~img2vid.experiments.datasets.load_task`); ``val_per_class`` defaults to ``per_class``.
        network, width, depth: ``"small"`` (:class:`~img2vid.experiments.networks.SmallResNet` of ``width``
            and ``depth`` residual blocks, 1 to 4) or ``"resnet18"`` (torchvision's, for a GPU).
        T: frames per clip.
        epochs, batch_size, lr, weight_decay: every arm's :class:`~img2vid.experiments.training.Recipe`.
        seeds: training seeds; seed ``s`` fixes the initialisation and the data order of every arm.
        arms: the arms to run (``baseline`` always among them).
        fixed: the ``fixed`` arm's hand-picked motion.
        search_seeds: independent searches (seeds ``search_seed``, ``search_seed + 1``, ...); training
            seed ``s`` retrains the genotype of search ``s mod search_seeds``.
        warmup_epochs: epochs that train the search network's weights alone before ``τ`` moves.
        search_epochs: bi-level epochs after the warm-up (Eq. 2, first order).
        nodes, arch_lr, magnitudes: the stem (``nodes * (nodes + 1) / 2`` edges), the Adam learning
            rate of ``τ``, and the magnitude set (:data:`MAGNITUDES`).
        fine_tune_epochs: epochs of weight training between two edge decisions, at a tenth of ``lr``
            (darts-pt); 0: none. The default, 5, was chosen on validation (``docs/search.md``).
        edge_order: ``"chain"`` or ``"random"``: the order in which edges are decided.
        recalibrate_images: training images (as clips) that re-estimate BatchNorm statistics before
            every masked evaluation.
        erf_images: validation images each arm's receptive field is measured on
            (:mod:`~img2vid.experiments.receptive_fields`).
        workers: worker processes that run the searches and training runs side by side, at
            ``threads // workers`` threads each (:mod:`~img2vid.experiments.jobs`); 1: every job here, one
            after the other; 0 (the default): one per CPU core on a CPU, one thread each, and 1 on a GPU.
            On a 2-core AMD EPYC (AVX2) two workers at one thread trained 1.3 times as many epochs per
            second as one process at two threads; on another 2-core x86-64 machine they were as fast.
            The numbers do not depend on the number of workers at the same threads per job (one thread
            computes its convolutions in another order than two, so they differ in the last bits).
        test_limit: test on the first ``test_limit`` test images only (for tests); ``None``: all.
    """

    dataset: str = "digits"
    root: str | None = None
    per_class: int = 10
    val_per_class: int | None = None
    data_seed: int = 0
    image_size: int = 32
    network: str = "small"
    width: int = 12
    depth: int = 2
    T: int = 5
    epochs: int = 60
    batch_size: int = 16
    lr: float = 0.05
    weight_decay: float = 5e-4
    seeds: int = 5
    arms: tuple[str, ...] = tuple(ARMS)
    fixed: str = "translate_x:0.05,rotate:5"
    search_seeds: int = 1
    search_seed: int = 0
    warmup_epochs: int = 15
    search_epochs: int = 45
    nodes: int = 4
    arch_lr: float = 0.01
    magnitudes: str = "default"
    fine_tune_epochs: int = 5
    edge_order: str = "chain"
    recalibrate_images: int = 512
    erf_images: int = 32
    workers: int = 0
    test_limit: int | None = None

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(ExperimentConfig)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if hints[field.name] is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{field.name} must be an integer, got {value!r}")
        for name in ("per_class", "T", "seeds", "search_seeds", "nodes", "width", "recalibrate_images",
                     "erf_images", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("warmup_epochs", "search_epochs", "fine_tune_epochs", "data_seed", "search_seed", "workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose from {list(DATASETS)}")
        if self.network not in NETWORKS:
            raise ValueError(f"unknown network {self.network!r}; choose from {list(NETWORKS)}")
        if self.depth not in DEPTHS:
            raise ValueError(f"depth must be one of {list(DEPTHS)} (the small ResNet's residual blocks), got "
                             f"{self.depth!r}")
        if self.magnitudes not in MAGNITUDES:
            raise ValueError(f"unknown magnitudes {self.magnitudes!r}; choose from {list(MAGNITUDES)}")
        if self.edge_order not in ("chain", "random"):
            raise ValueError(f"edge_order must be 'chain' or 'random', got {self.edge_order!r}")
        if self.arch_lr <= 0:
            raise ValueError(f"arch_lr must be > 0, got {self.arch_lr!r}")
        if self.val_per_class is not None and (isinstance(self.val_per_class, bool)
                                               or not isinstance(self.val_per_class, int) or self.val_per_class < 1):
            raise ValueError(f"val_per_class must be None or an integer >= 1, got {self.val_per_class!r}")
        if self.test_limit is not None and (isinstance(self.test_limit, bool) or not isinstance(self.test_limit, int)
                                            or self.test_limit < 1):
            raise ValueError(f"test_limit must be None or an integer >= 1, got {self.test_limit!r}")
        object.__setattr__(self, "arms", tuple(check_arms(self.arms)))
        Genotype.parse(self.fixed)
        self.recipe()  # checks epochs, batch_size, lr, weight_decay

    def task(self) -> Task:
        """The data this configuration names (the test split still closed)."""
        return load_task(self.dataset, root=self.root, per_class=self.per_class, val_per_class=self.val_per_class,
                         data_seed=self.data_seed, image_size=self.image_size)

    def recipe(self, epochs: int | None = None) -> Recipe:
        """The training recipe of every arm (``epochs`` overrides the number of epochs)."""
        return Recipe(self.epochs if epochs is None else epochs, self.batch_size, self.lr, self.weight_decay)

    @property
    def needs_search(self) -> bool:
        return any(arm in self.arms for arm in SEARCH_ARMS)


_PRESETS: dict[str, dict[str, object]] = {
    # Chosen on the validation split (benchmarks/validation_sweep.py; docs/results.md quotes the sweeps).
    "digits": {},
    "fashion-mnist": {"per_class": 50, "width": 16, "epochs": 30, "batch_size": 32, "lr": 0.1, "warmup_epochs": 10,
                      "search_epochs": 20},
    "imagefolder": {"per_class": 50, "width": 16, "epochs": 30, "batch_size": 32, "lr": 0.1, "warmup_epochs": 10,
                    "search_epochs": 20},
}

_QUICK: dict[str, object] = {"seeds": 2, "epochs": 3, "warmup_epochs": 1, "search_epochs": 1, "nodes": 2,
                             "fine_tune_epochs": 0, "recalibrate_images": 64, "erf_images": 8}


def preset(dataset: str = "digits", *, quick: bool = False, **overrides: object) -> ExperimentConfig:
    """The documented configuration for ``dataset``; ``quick`` shrinks it to a smoke run (figures
    meaningless, every step exercised); ``overrides`` replace single fields (``None`` values are ignored)."""
    if dataset not in _PRESETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {list(DATASETS)}")
    fields: dict[str, object] = {"dataset": dataset, **_PRESETS[dataset]}
    if quick:
        fields.update(_QUICK)
        if dataset != "digits":
            fields["per_class"] = 20
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return ExperimentConfig(**fields)  # type: ignore[arg-type]
