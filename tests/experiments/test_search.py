"""DAS as the benchmark runs it: warm-up, recalibrated selection, margins, and the reported fields."""

import dataclasses
import math

import pytest
import torch

from img2vid.experiments.config import ExperimentConfig
from img2vid.experiments.datasets import Task
from img2vid.experiments.search import edge_margin, search_motion
from img2vid.search import searchable_stem

OPS = ("identity", "translate_x", "rotate")


def _hits(pattern: str) -> torch.Tensor:
    return torch.tensor([c == "1" for c in pattern])


def test_margin_counts_discordant_images_by_hand():
    # Masking op 1 leaves 2 of 12 right, op 2 leaves 12, op 0 leaves 5: op 1 is kept, op 0 is the runner-up.
    hits = [_hits("111110000000"), _hits("110000000000"), _hits("111111111111")]
    scores = [5 / 12, 2 / 12, 1.0]
    m = edge_margin(scores, hits, OPS)
    # b = right without op 0 but wrong without op 1 = 3 (images 2-4); c = the other way round = 0.
    assert m == {"op": "translate_x", "runner_up": "identity", "margin_images": 3, "discordant": 3,
                 "within_noise": True}  # 3 < 1.96 * sqrt(3) = 3.39
    many = [_hits("1" * 10 + "0" * 10), _hits("0" * 20), _hits("1" * 20)]
    m = edge_margin([0.5, 0.0, 1.0], many, OPS)
    assert m["margin_images"] == 10 and m["discordant"] == 10 and not m["within_noise"]  # 10 > 6.2
    swapped = [_hits("10" * 10), _hits("01" * 10), _hits("1" * 20)]  # same accuracy, all discordant
    m = edge_margin([0.5, 0.5, 1.0], swapped, OPS)
    assert m["margin_images"] == 0 and m["discordant"] == 20 and m["within_noise"]


def _tiny_task(n=20, size=12):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2 * n, 1, size, size, generator=generator)
    y = torch.arange(2 * n) % 2
    x[y == 1, :, : size // 2] += 0.5  # a learnable cue

    def never():
        raise AssertionError("the search read the test split")

    return Task("tiny", x[:n], y[:n], x[n:], y[n:], 2, "tiny", never)


def _config(**kw):
    base = dict(dataset="digits", width=4, T=3, epochs=1, batch_size=8, seeds=1, nodes=1, warmup_epochs=1,
                search_epochs=1, fine_tune_epochs=1, recalibrate_images=16, arch_lr=0.5)
    return ExperimentConfig(**{**base, **kw})


def test_search_reports_every_field_and_never_reads_the_test_split(one_thread):
    task = _tiny_task()
    result = search_motion(task, _config(nodes=2), torch.device("cpu"), seed=3, progress=False, log=lambda _: None)
    assert task.test_reads == 0
    for name in ("network_val_accuracy", "baseline_val_accuracy", "selection_val_drop", "margins", "genotype",
                 "argmax", "search_s", "val_accuracy_after_decisions"):
        assert name in result
    assert len(result["margins"]) == 3 == len(result["val_accuracy_after_decisions"])
    assert sorted(m["edge"] for m in result["margins"]) == [0, 1, 2]
    drop = result["val_accuracy_before_selection"] - min(result["val_accuracy_after_decisions"])
    assert result["selection_val_drop"] == pytest.approx(max(0.0, drop))
    assert 0.0 <= result["network_val_accuracy"] <= 1.0 and len(result["genotype"].split(",")) == 3
    for m in result["margins"]:
        assert m["discordant"] >= abs(m["margin_images"])


def test_warm_up_leaves_tau_unchanged_then_the_search_moves_it(one_thread):
    cfg = _config(warmup_epochs=2, search_epochs=2)
    torch.manual_seed(5)
    initial = searchable_stem("affine", T=3, nodes=1).tau.detach().clone()  # the search draws the same tau first
    result = search_motion(_tiny_task(), cfg, torch.device("cpu"), seed=5, progress=False, log=lambda _: None)
    assert result["tau_unchanged_by_warmup"]
    assert not torch.allclose(torch.tensor(result["edge_weights"]), torch.softmax(initial, dim=1), atol=1e-4)
    only_warmup = search_motion(_tiny_task(), dataclasses.replace(cfg, search_epochs=0), torch.device("cpu"), seed=5,
                                progress=False, log=lambda _: None)
    torch.testing.assert_close(torch.tensor(only_warmup["edge_weights"]), torch.softmax(initial, dim=1))
    assert math.isfinite(only_warmup["baseline_val_accuracy"])


def test_fine_tuning_between_decisions_runs_at_a_tenth_of_the_learning_rate(one_thread, monkeypatch):
    import img2vid.experiments.search as search_module

    recipes = []
    real_train = search_module.train

    def recording_train(model, x, y, recipe, seed, **kw):
        recipes.append(recipe)
        return real_train(model, x, y, recipe, seed, **kw)

    monkeypatch.setattr(search_module, "train", recording_train)
    cfg = _config(nodes=2, fine_tune_epochs=2, lr=0.2)
    search_motion(_tiny_task(), cfg, torch.device("cpu"), seed=0, progress=False, log=lambda _: None)
    # Search (warm-up + bi-level), the 2D reference, then one fine-tune after each of the first two decisions.
    assert [r.epochs for r in recipes] == [2, 2, 2, 2]  # warm-up + search = 2, the 2D reference the same
    assert [r.lr for r in recipes] == [0.2, 0.2, pytest.approx(0.02), pytest.approx(0.02)]
    assert all(r.weight_decay == cfg.weight_decay and r.batch_size == cfg.batch_size for r in recipes)
