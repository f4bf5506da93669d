"""Perturbation-based selection: it finds what arg-max cannot, and always restores the stem."""

import math

import pytest
import torch
from torch.testing import assert_close

import img2vid as i2v
from img2vid.search import derive_genotype, searchable_stem

PLANTED = ["translate_x", "rotate", "scale", "translate_y", "identity", "rotate"]


def planted_task(nodes=2):
    """A stem with equal τ and an evaluate() that scores how close its clip is to a planted motion."""
    stem = searchable_stem("affine", 5, nodes=nodes)
    with torch.no_grad():
        stem.tau.zero_()  # equal τ: arg-max cannot tell the ops apart
    planted = i2v.Genotype([(n, i2v.OPS[n].default) if n != "identity" else n for n in PLANTED[: len(stem.edges)]])
    x = torch.rand(4, 3, 24, 24)
    target = i2v.ImageToVideo(planted, 5)(x)

    @torch.no_grad()
    def evaluate():
        return -torch.mean((stem(x) - target) ** 2)

    return stem, planted, evaluate


def test_finds_the_planted_chain_that_arg_max_cannot():
    # Three edges. (With six, small translations and rotations nearly commute and greedy
    # selection finds the same ops in another order; see docs/search.md.)
    stem, planted, evaluate = planted_task(nodes=2)
    assert stem.genotype() != planted
    assert {name for name, _ in stem.genotype()} == {"identity"}  # equal τ: the first op everywhere
    found = derive_genotype(stem, evaluate, progress=False)
    assert found == planted
    assert i2v.ImageToVideo(found, 5)(torch.rand(1, 3, 8, 8)).shape == (1, 5, 3, 8, 8)


def test_picks_the_op_whose_removal_hurts_most_and_records_scores():
    stem = searchable_stem(["identity", "translate_x", "rotate"], 3, nodes=2)
    planted = [2, 0, 1]

    def evaluate():  # the planted op carries the score; masking it hurts most
        w = stem.weights().detach()
        return sum(float(w[k, t]) for k, t in enumerate(planted))

    scores = []
    found = derive_genotype(stem, evaluate, progress=False, scores=scores)
    assert [name for name, _ in found] == ["rotate", "identity", "translate_x"]
    assert len(scores) == 3 and all(len(row) == 3 for row in scores)
    # Edge 0 was scored with nothing fixed: removing op t renormalises the other two ops' weights.
    w = torch.softmax(stem.tau.detach()[0], 0)
    w1 = torch.softmax(stem.tau.detach()[1], 0)[0]  # edges 1 and 2 still mixed: their planted weights
    w2 = torch.softmax(stem.tau.detach()[2], 0)[1]
    for t in range(3):
        keep = [s for s in range(3) if s != t]
        mixed = w[2] / w[keep].sum() if t != 2 else torch.tensor(0.0)
        assert scores[0][t] == pytest.approx(float(mixed + w1 + w2), abs=1e-6)


def test_fixes_decided_edges_before_fine_tuning():
    stem = searchable_stem(["identity", "translate_x"], 3, nodes=2)
    seen = []

    def fine_tune(k):
        w = stem.weights().detach()
        seen.append(k)
        assert torch.equal(w[: k + 1].max(1).values, torch.ones(k + 1))  # decided: one-hot
        assert (w[k + 1:] < 1).all()  # not yet decided: still a mixture

    derive_genotype(stem, lambda: float(stem.weights().detach()[:, 1].sum()), progress=False, fine_tune=fine_tune)
    assert seen == [0, 1]


def test_stem_is_restored_afterwards_and_after_an_exception():
    stem, _, evaluate = planted_task(nodes=2)
    x = torch.rand(2, 3, 16, 16)
    before, tau = stem(x).detach(), stem.tau.detach().clone()
    derive_genotype(stem, evaluate, progress=False, fine_tune=lambda k: stem.tau.data.add_(1.0))
    assert torch.equal(stem.tau, tau)
    assert_close(stem(x), before)

    calls = []

    def failing():
        calls.append(1)
        if len(calls) == 7:  # mid-way through edge 1, with edge 0 already fixed
            raise KeyboardInterrupt
        return 0.0

    with pytest.raises(KeyboardInterrupt):
        derive_genotype(stem, failing, progress=False)
    assert stem._keep.all() and (stem._fixed == -1).all()
    assert_close(stem(x), before)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (math.nan, ValueError, "returned nan; expected a finite number"),
        (torch.tensor(float("inf")), ValueError, "returned inf"),
        ("0.9", TypeError, "returned '0.9' \\(str\\); expected a real number"),
        (None, TypeError, "returned None"),
        (True, TypeError, "returned True"),
        (torch.ones(2), TypeError, "tensor of shape \\(2,\\)"),
    ],
)
def test_bad_scores_are_clear_errors_and_leave_the_stem_unmasked(value, error, match):
    stem = searchable_stem(nodes=1)
    with pytest.raises(error, match="op 'identity' of edge 0 masked returned"):
        derive_genotype(stem, lambda: value, progress=False)
    with pytest.raises(error, match=match):
        derive_genotype(stem, lambda: value, progress=False)
    assert stem._keep.all() and (stem._fixed == -1).all()


def test_accepts_numbers_of_any_real_kind_and_shows_progress(capsys):
    import numpy as np

    stem = searchable_stem(["identity", "rotate"], 3, nodes=1)
    values = iter([np.float32(0.5), torch.tensor(0.2)])
    found = derive_genotype(stem, lambda: next(values), progress=True)
    assert str(found) == "rotate:5.0"
    assert "perturbation selection" in capsys.readouterr().err


def test_rejects_what_is_not_a_stem():
    with pytest.raises(TypeError, match="SearchableStem"):
        derive_genotype(torch.nn.Identity(), lambda: 0.0)


def test_planted_chain_is_still_found_with_fine_tuning_between_decisions():
    stem, planted, _ = planted_task(nodes=2)
    x = torch.rand(4, 3, 24, 24)
    target = i2v.ImageToVideo(planted, 5)(x)
    gain = torch.nn.Parameter(torch.full((1, 1, 3, 1, 1), 0.5))  # the "network": a per-channel gain, off at first
    optimizer = torch.optim.SGD([gain], lr=0.5)

    def evaluate():
        with torch.no_grad():
            return -torch.mean((gain * stem(x) - target) ** 2)

    calls = []

    def fine_tune(edge):
        weights = stem.weights().detach()
        calls.append((edge, [k for k in range(len(stem.edges)) if weights[k].max().item() == 1.0]))
        for _ in range(20):  # train the network with the decided edges fixed
            loss = torch.mean((gain * stem(x).detach() - target) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    found = derive_genotype(stem, evaluate, progress=False, fine_tune=fine_tune)
    assert found == planted
    assert 0.9 < gain.mean().item() < 1.1  # fine-tuning did train the network
    decided = [edge for edge, _ in calls]
    assert decided == [0, 1]  # after every decision but the last
    for i, (_, fixed_now) in enumerate(calls):
        assert sorted(fixed_now) == sorted(decided[: i + 1])  # exactly the edges decided so far are fixed
    assert stem.weights().max().item() < 1.0  # and the stem is restored afterwards


def test_random_order_is_drawn_from_the_generator_and_bad_order_is_refused():
    stem = searchable_stem(["identity", "translate_x"], 3, nodes=3)  # six edges
    orders = []
    for seed in (0, 0, 1):
        seen = []
        derive_genotype(stem, lambda: 0.0, progress=False, order="random",
                        fine_tune=seen.append, generator=torch.Generator().manual_seed(seed))
        orders.append(seen)
    assert orders[0] == orders[1] != orders[2]
    assert len(set(orders[0])) == 5 and set(orders[0]) <= set(range(6))
    with pytest.raises(ValueError, match="order must be"):
        derive_genotype(stem, lambda: 0.0, progress=False, order="backwards")
