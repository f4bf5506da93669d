"""The benchmark's networks: a two-block ResNet for CPU runs, torchvision's ResNet-18 for a GPU.

Both are ordinary 2D classifiers built from torchvision's own ``BasicBlock``; the video arms turn
them into video networks with :func:`~img2vid.wrap` like any user model.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock

__all__ = ["NETWORKS", "SmallResNet", "build_network", "features"]

NETWORKS = ("small", "resnet18")


class SmallResNet(nn.Module):
    """A two-block ResNet from torchvision's ``BasicBlock``, for small images.

    ``conv1`` (3x3), ``bn1``, ``relu`` -> ``layer1`` (BasicBlock, ``width``) -> ``layer2`` (BasicBlock,
    ``2 * width``, stride 2) -> global average pool -> ``fc``. Its theoretical receptive field (Eq. 8
    along the longest path: 3x3, 3x3, 3x3, 3x3/2, 3x3) is 13 pixels, less than a 16-pixel digit or a
    28-pixel garment: each position of the last feature map sees only part of the object.

    Shape:
        - Input: ``(B, in_channels, H, W)``; output: ``(B, num_classes)``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(width, width)
        down = nn.Sequential(nn.Conv2d(width, 2 * width, 1, stride=2, bias=False), nn.BatchNorm2d(2 * width))
        self.layer2 = BasicBlock(width, 2 * width, stride=2, downsample=down)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_network(name: str, num_classes: int, in_channels: int, width: int = 16) -> nn.Module:
    """``"small"``: :class:`SmallResNet` of ``width``; ``"resnet18"``: torchvision's ResNet-18 with a 3x3
    stride-1 stem and no max-pool, as usual for 32-pixel images (CIFAR), random weights.

    The initialisation is drawn from torch's global generator: seed it first for paired arms.
    """
    if name == "small":
        return SmallResNet(num_classes, in_channels, width)
    if name == "resnet18":
        net = resnet18(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        return net
    raise ValueError(f"unknown network {name!r}; choose from {list(NETWORKS)}")


def features(net: nn.Module) -> nn.Sequential:
    """The part of a benchmark network before its global pooling, sharing modules and parameter names.

    Shape:
        - Input: ``(B, C, H, W)``; output: the last feature map ``(B, C', H', W')``.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for name, child in net.named_children():
        if name == "avgpool":
            return nn.Sequential(layers)
        layers[name] = child
    raise ValueError(f"{type(net).__name__} has no 'avgpool' child to stop at")
