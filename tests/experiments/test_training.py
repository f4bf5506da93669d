"""One training loop: seeded data order, per-sample transforms, the upper-level hook, evaluation."""

import pytest
import torch
from torch import nn

from img2vid.experiments import training
from img2vid.experiments.training import Recipe, correct, evaluate, train


class Recorder(nn.Module):
    """A linear model that records every batch it sees in train mode."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().clone())
        return self.fc(x.flatten(1))


def test_the_seed_fixes_the_data_order():
    x, y = torch.arange(40.0).view(10, 1, 2, 2), torch.arange(10) % 3
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        model = Recorder()
        train(model, x, y, Recipe(epochs=2, batch_size=4), seed)
        runs[name] = torch.cat(model.seen)
    assert torch.equal(runs["a"], runs["b"])
    assert not torch.equal(runs["a"], runs["c"])
    assert sorted(runs["a"][:10, 0, 0, 0].tolist()) == x[:, 0, 0, 0].tolist()  # each epoch is a permutation


def test_transform_and_step_hooks():
    x, y = torch.zeros(6, 1, 2, 2), torch.zeros(6, dtype=torch.long)
    model, calls = Recorder(), []
    train(model, x, y, Recipe(epochs=1, batch_size=4), 0, transform=lambda image: image + 1,
          step=lambda xb, yb: calls.append((xb.shape[0], float(xb.mean()))))
    assert calls == [(4, 1.0), (2, 1.0)]  # the hook sees the transformed batch, before each step
    assert all(float(batch.mean()) == 1.0 for batch in model.seen)


def test_only_the_given_params_move():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3))
    frozen = model[0].weight.detach().clone()
    train(model, torch.rand(8, 4), torch.randint(0, 3, (8,)), Recipe(epochs=1, batch_size=4), 0,
          params=model[1].parameters())
    assert torch.equal(model[0].weight, frozen)


def test_evaluate_matches_a_hand_count_and_restores_the_mode():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    y = torch.tensor([0, 0, 0, 1])  # predictions 0, 1, 0, 1: three right
    model.train()
    hits, _ = correct(model, x, y, batch_size=3)
    assert hits.tolist() == [True, False, True, True] and model.training
    accuracy, loss2 = evaluate(model, x, y)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(x), y).item()
    assert accuracy == 0.75 and loss2 == pytest.approx(expected)


def test_recipe_validation():
    with pytest.raises(ValueError, match="batch_size"):
        Recipe(batch_size=0)
    with pytest.raises(ValueError, match="lr > 0"):
        Recipe(lr=0.0)
    assert training.progress_bar([1, 2], False, "x") == [1, 2]
