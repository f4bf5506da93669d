"""The benchmark's networks: a small ResNet of 1 to 4 blocks for CPU runs, torchvision's ResNet-18 for a GPU.

Both are ordinary 2D classifiers built from torchvision's own ``BasicBlock``; the video arms turn
them into video networks with :func:`~img2vid.wrap` like any user model. The ordinary ways of
enlarging a receptive field, the paper's Table 4 peers, are edits of such a network
(:func:`dilate_last_block`, :func:`enlarge_kernels`), and :func:`receptive_field` reads the result's
theoretical receptive field (Eq. 8) off the network.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock

from ..rf import network_rf

__all__ = ["DEPTHS", "NETWORKS", "SmallResNet", "build_network", "dilate_last_block", "enlarge_kernels", "features",
           "receptive_field"]

NETWORKS = ("small", "resnet18")

#: The small ResNet's numbers of residual blocks.
DEPTHS = (1, 2, 3, 4)


class SmallResNet(nn.Module):
    """A ResNet of ``depth`` torchvision ``BasicBlock`` s, for small images.

    ``conv1`` (3x3), ``bn1``, ``relu`` -> ``layer1`` (``width``) -> ``layer2`` (``2 * width``, stride 2)
    -> ... -> ``layer{depth}`` (``2 ** (depth - 1) * width``, stride 2) -> global average pool -> ``fc``.
    Its theoretical receptive field (Eq. 8 along the longest path, :func:`receptive_field`) is 7, 13,
    25 and 49 pixels at depth 1, 2, 3 and 4: at the default depth 2 less than a 16-pixel digit or a
    28-pixel garment, so each position of the last feature map sees only part of the object.

    Shape:
        - Input: ``(B, in_channels, H, W)``; output: ``(B, num_classes)``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16, depth: int = 2) -> None:
        super().__init__()
        if isinstance(depth, bool) or depth not in DEPTHS:
            raise ValueError(f"depth must be one of {list(DEPTHS)} (residual blocks), got {depth!r}")
        self.depth = depth
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        channels = width
        for index in range(1, depth + 1):
            if index == 1:
                block = BasicBlock(width, width)
            else:
                down = nn.Sequential(nn.Conv2d(channels, 2 * channels, 1, stride=2, bias=False),
                                     nn.BatchNorm2d(2 * channels))
                block = BasicBlock(channels, 2 * channels, stride=2, downsample=down)
                channels *= 2
            self.add_module(f"layer{index}", block)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for index in range(1, self.depth + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_network(name: str, num_classes: int, in_channels: int, width: int = 16, depth: int = 2) -> nn.Module:
    """``"small"``: :class:`SmallResNet` of ``width`` and ``depth``; ``"resnet18"``: torchvision's ResNet-18
    with a 3x3 stride-1 stem and no max-pool, as usual for 32-pixel images (CIFAR), random weights
    (``width`` and ``depth`` do not apply).

    The initialisation is drawn from torch's global generator: seed it first for paired arms.
    """
    if name == "small":
        return SmallResNet(num_classes, in_channels, width, depth)
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


def _longest_path(module: nn.Module) -> list[nn.Module]:
    """The layers on the longest input-to-output path of ``module``: a residual block's two convolutions
    (its shortcut, a 1x1 convolution or nothing, is shorter), containers entered in order."""
    if isinstance(module, BasicBlock):
        return [module.conv1, module.conv2]
    if isinstance(module, nn.Sequential):
        return [layer for child in module.children() for layer in _longest_path(child)]
    return [module]


def receptive_field(net: nn.Module) -> tuple[int, int]:
    """The theoretical receptive field ``(height, width)`` of a benchmark network's last feature map, in
    pixels: Eq. 8 along its longest path (:func:`~img2vid.rf.network_rf`), read from the modules
    themselves, so kernel sizes, strides and dilations as they are. Works on wrapped models too (their
    modules and names are the 2D network's)."""
    return network_rf(nn.Sequential(*_longest_path(features(net))))


def _blocks(net: nn.Module) -> list[BasicBlock]:
    blocks = [module for module in net.modules() if isinstance(module, BasicBlock)]
    if not blocks:
        raise ValueError(f"{type(net).__name__} has no torchvision BasicBlock to edit")
    return blocks


def _replace_conv(parent: nn.Module, name: str, conv: nn.Conv2d) -> None:
    old: nn.Conv2d = getattr(parent, name)
    setattr(parent, name, conv.to(device=old.weight.device, dtype=old.weight.dtype))


def dilate_last_block(net: nn.Module, dilation: int = 2) -> nn.Module:
    """The Table 4 "dilated convolutions" peer: the last residual block's 3x3 convolutions dilated by
    ``dilation``, with padding ``dilation`` so every shape stays as it was. The weights are kept (the
    same 3x3 taps, spread apart). Edits ``net`` in place and returns it.

    At depth 2 the small ResNet's receptive field grows from 13 to 19 pixels.
    """
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f"dilation must be an integer >= 1, got {dilation!r}")
    block = _blocks(net)[-1]
    for name in ("conv1", "conv2"):
        old: nn.Conv2d = getattr(block, name)
        if old.kernel_size != (3, 3):
            raise ValueError(f"the last block's {name} has a {old.kernel_size} kernel; dilate_last_block needs 3x3")
        new = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=old.stride, padding=dilation,
                        dilation=dilation, groups=old.groups, bias=old.bias is not None)
        new.load_state_dict(old.state_dict())
        _replace_conv(block, name, new)
    return net


def enlarge_kernels(net: nn.Module, kernel_size: int = 5) -> nn.Module:
    """The Table 4 "larger kernels" peer: every 3x3 convolution of ``net`` becomes ``kernel_size`` x
    ``kernel_size`` (stride kept, padding ``kernel_size // 2``, so shapes stay as they were). The new
    convolutions get PyTorch's default initialisation, drawn in module order from torch's global
    generator (seed it first); every other weight is kept. Edits ``net`` in place and returns it.

    At depth 2 the small ResNet's receptive field grows from 13 to 25 pixels.
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd integer >= 3, got {kernel_size!r}")
    targets = [(parent, name, child) for parent in net.modules() for name, child in parent.named_children()
               if isinstance(child, nn.Conv2d) and child.kernel_size == (3, 3)]
    if not targets:
        raise ValueError(f"{type(net).__name__} has no 3x3 convolution to enlarge")
    for parent, name, old in targets:
        if old.dilation != (1, 1) or old.padding != (1, 1):
            raise ValueError(f"{name} has dilation {old.dilation} and padding {old.padding}; enlarge_kernels "
                             "expects undilated 3x3 convolutions with padding 1")
        _replace_conv(parent, name, nn.Conv2d(old.in_channels, old.out_channels, kernel_size, stride=old.stride,
                                              padding=kernel_size // 2, groups=old.groups,
                                              bias=old.bias is not None))
    return net
