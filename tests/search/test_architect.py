"""The bi-level update (Eq. 2): first order against autograd, second order against the exact
unrolled hypergradient."""

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.testing import assert_close

from img2vid.search import Architect, network_parameters, searchable_stem


def make_model(tiny_video_net, dtype=torch.float32, learn_magnitudes=False, smooth=False):
    stem = searchable_stem(["identity", "translate_x", "rotate", "brightness"], 3, nodes=2,
                           learn_magnitudes=learn_magnitudes)
    return nn.Sequential(stem, tiny_video_net(smooth=smooth)).to(dtype)


def batches(dtype=torch.float32, n=4):
    return [(torch.rand(n, 3, 8, 8, dtype=dtype), torch.randint(0, 3, (n,))) for _ in range(2)]


def test_first_order_step_is_gradient_of_validation_loss(tiny_video_net):
    model = make_model(tiny_video_net)
    train, val = batches()
    loss_fn = nn.CrossEntropyLoss()
    stem = model[0]
    tau0 = stem.tau.detach().clone()
    expected = torch.autograd.grad(loss_fn(model(val[0]), val[1]), stem.tau)[0]
    weights0 = [p.detach().clone() for p in network_parameters(model)]
    stats0 = model[1].bn.running_mean.clone()

    architect = Architect(model, loss_fn, optimizer=torch.optim.SGD(stem.arch_parameters(), lr=0.5))
    loss = architect.step(train, val)
    assert torch.equal(model[1].bn.running_mean, stats0)

    assert_close(loss, loss_fn(model(val[0]), val[1]).detach())
    assert_close(stem.tau.detach(), tau0 - 0.5 * expected)
    assert expected.abs().sum() > 0
    for p, p0 in zip(network_parameters(model), weights0):
        assert torch.equal(p, p0) and p.grad is None


@pytest.mark.parametrize(
    ("learn_magnitudes", "nesterov", "groups"),
    [(False, False, False), (True, False, False), (False, True, False), (False, False, True)],
    ids=["tau", "magnitudes", "nesterov", "two-lr-groups"],
)
def test_second_order_matches_exact_unrolled_hypergradient(tiny_video_net, learn_magnitudes, nesterov, groups,
                                                           one_thread):
    torch.manual_seed(1)
    dtype = torch.float64
    # A smooth network (tanh): a ReLU's kinks make any finite difference of its gradient jump.
    model = make_model(tiny_video_net, dtype, learn_magnitudes, smooth=True)
    model[1].bn.momentum = 0.0  # forward passes then leave the running stats alone (irrelevant in train mode)
    loss_fn = nn.CrossEntropyLoss()
    train, val = batches(dtype)
    net = network_parameters(model)
    # Fine-tuning style: the head learns faster than the body (two groups, two learning rates ξ).
    head = [p for p in net if any(p is q for q in model[1].head.parameters())]
    body = [p for p in net if not any(p is q for q in head)]
    param_groups = [{"params": body, "lr": 0.02}, {"params": head, "lr": 0.1}] if groups else net
    w_opt = torch.optim.SGD(param_groups, lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=nesterov)
    loss_fn(model(train[0]), train[1]).backward()  # one real step, so SGD holds momentum buffers
    w_opt.step()
    w_opt.zero_grad(set_to_none=True)
    arch = model[0].arch_parameters()

    # The exact gradient of L_val(w - ξ s, τ) with respect to τ, where s is SGD's step:
    # d = ∇w L_train(w, τ) + λ w, b = μ buf + d, s = b (or d + μ b with Nesterov).
    names = dict(model.named_parameters())
    arch_names = [n for n, p in names.items() if any(p is a for a in arch)]
    net_names = [n for n, p in names.items() if not any(p is a for a in arch)]
    mu, lam = 0.9, 1e-2
    xi = {n: 0.02 if groups and not any(names[n] is p for p in head) else 0.1 for n in net_names}

    def unrolled_val_loss(*arch_values):
        params = {n: names[n] for n in net_names} | dict(zip(arch_names, arch_values))
        train_loss = loss_fn(functional_call(model, params, (train[0],)), train[1])
        grads = torch.autograd.grad(train_loss, [params[n] for n in net_names], create_graph=True)
        unrolled = {}
        for n, g in zip(net_names, grads):
            d = g + lam * params[n]
            b = mu * w_opt.state[names[n]]["momentum_buffer"] + d
            unrolled[n] = params[n] - xi[n] * (d + mu * b if nesterov else b)
        return loss_fn(functional_call(model, unrolled | dict(zip(arch_names, arch_values)), (val[0],)), val[1])

    arch_values = [p.detach().clone().requires_grad_() for p in arch]
    with torch.random.fork_rng():
        exact = torch.autograd.grad(unrolled_val_loss(*arch_values), arch_values)

    architect = Architect(model, loss_fn, order="second", network_optimizer=w_opt)
    weights0 = [p.detach().clone() for p in net]
    approx, _ = architect.arch_gradients(train, val)
    for a, e in zip(approx, exact):
        assert_close(a, e, rtol=1e-3, atol=1e-7)
    # ... and the first-order gradient is measurably different, so the test can tell them apart.
    first, _ = Architect(model, loss_fn).arch_gradients(train, val)
    assert (first[0] - exact[0]).abs().max() > 10 * (approx[0] - exact[0]).abs().max()
    for p, p0 in zip(net, weights0):
        assert torch.equal(p, p0)


def test_a_few_searched_steps_lower_the_validation_loss(tiny_video_net):
    model = make_model(tiny_video_net)
    loss_fn = nn.CrossEntropyLoss()
    train, val = batches(n=8)
    architect = Architect(model, loss_fn, optimizer=torch.optim.Adam(model[0].arch_parameters(), lr=0.1))
    first = architect.step(train, val)
    for _ in range(10):
        last = architect.step(train, val)
    assert last < first


def test_bad_arguments(tiny_video_net):
    with pytest.raises(ValueError, match="order must be one of"):
        Architect(make_model(tiny_video_net), nn.CrossEntropyLoss(), order="third")
    with pytest.raises(ValueError, match="no searchable stem"):
        Architect(tiny_video_net(), nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="unrolled_lr"):
        Architect(make_model(tiny_video_net), nn.CrossEntropyLoss(), order="second")


def test_a_frozen_tau_is_refused_up_front_and_at_step(tiny_video_net):
    model = make_model(tiny_video_net)
    train, val = batches()
    model[0].tau.requires_grad_(False)
    with pytest.raises(ValueError, match=r"\['0\.tau'\] have requires_grad=False"):
        Architect(model, nn.CrossEntropyLoss())
    # Frozen after the architect was built: the step says so before any autograd call.
    model[0].tau.requires_grad_(True)
    architect = Architect(model, nn.CrossEntropyLoss())
    model[0].tau.requires_grad_(False)
    tau = model[0].tau.detach().clone()
    with pytest.raises(ValueError, match="requires_grad_\\(True\\)"):
        architect.step(train, val)
    assert torch.equal(model[0].tau, tau)


def test_second_order_with_every_weight_frozen_is_refused(tiny_video_net):
    model = make_model(tiny_video_net)
    for p in network_parameters(model):
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="every weight has requires_grad=False; use order='first'"):
        Architect(model, nn.CrossEntropyLoss(), order="second", unrolled_lr=0.1)
    # The first order needs no weight gradient, so frozen weights are fine there.
    train, val = batches()
    tau = model[0].tau.detach().clone()
    Architect(model, nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(model[0].arch_parameters(), lr=0.5)).step(
        train, val)
    assert not torch.equal(model[0].tau, tau)
