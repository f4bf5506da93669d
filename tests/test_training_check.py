"""The warning for an optimizer built before wrap/temporalize: fusion parameters with gradients that
never change. It must fire in the mistaken loop and never in the correct one."""

import warnings

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from img2vid.training_check import PATIENCE
from img2vid.wrap import wrap

pytestmark = pytest.mark.usefixtures("one_thread")


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> list[warnings.WarningMessage]:
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(steps):
            images, labels = torch.rand(4, 3, 8, 8), torch.randint(0, 3, (4,))
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return [w for w in caught if "fusion parameters" in str(w.message)]


def test_an_optimizer_built_before_wrap_is_caught():
    net = small_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)  # the mistake: before wrap
    model = wrap(net, "translate_x:0.1", T=3, fusion="gsf", where=["2"])
    caught = train(model, optimizer, 20)
    assert len(caught) == 1  # once
    message = str(caught[0].message)
    assert f"SGD has taken {PATIENCE} steps" in message and "Build the optimizer after wrap" in message
    assert model[2].fusion.scale.abs().sum() == 0  # what the warning is about: GSF never trained


def test_an_optimizer_built_after_wrap_is_never_warned():
    model = wrap(small_net(), "translate_x:0.1", T=3, fusion="gsf", where=["2"])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    assert train(model, optimizer, 20) == []
    assert model[2].fusion.scale.abs().sum() > 0


def test_fusion_trained_by_a_second_optimizer_is_never_warned():
    model = wrap(small_net(), "translate_x:0.1", T=3, fusion="gsf", where=["2"])
    fusion = [p for n, p in model.named_parameters() if ".fusion." in n]
    others = [p for n, p in model.named_parameters() if ".fusion." not in n]
    backbone, head = torch.optim.SGD(others, lr=0.1), torch.optim.SGD(fusion, lr=0.1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(10):
            loss = model(torch.rand(4, 3, 8, 8)).square().sum()
            backbone.zero_grad()
            head.zero_grad()
            loss.backward()
            head.step()
            backbone.step()
    assert not [w for w in caught if "fusion parameters" in str(w.message)]


def test_tsm_has_no_fusion_parameters_to_watch():
    net = tvm.resnet18(num_classes=3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    model = wrap(net, "identity", T=2, fusion="tsm")
    assert train(model, optimizer, PATIENCE + 1) == []
