"""The benchmark's networks: depths, the Table 4 peers and their receptive fields against hand computations."""

import copy

import pytest
import torch
from torch import nn

from img2vid import wrap
from img2vid.experiments.networks import (
    SmallResNet,
    build_network,
    dilate_last_block,
    enlarge_kernels,
    features,
    receptive_field,
)
from img2vid.rf import empirical_rf, theoretical_rf

# Eq. 8 by hand along the longest path: conv1 3x3, then per block two 3x3 convolutions, the first of
# blocks 2-4 with stride 2 (jumps 1, 1 | 1, 2 | 2, 4 | 4, 8 after each block's first and second conv).
#   depth 1: 1 + 2 + 2 + 2 = 7;  depth 2: 7 + 2 + 4 = 13;  depth 3: 13 + 4 + 8 = 25;  depth 4: 25 + 8 + 16 = 49.
# Dilated last block (effective 5x5): its two terms double. depth 1: 1 + 2 + 4 + 4 = 11; depth 2: 7 + 4 + 8 = 19;
#   depth 3: 13 + 8 + 16 = 37; depth 4: 25 + 16 + 32 = 73.
# 5x5 everywhere: every term doubles: 13, 25, 49, 97.
HAND = {1: (7, 11, 13), 2: (13, 19, 25), 3: (25, 37, 49), 4: (49, 73, 97)}


def _support(net: nn.Module, size: int) -> tuple[int, int]:
    """The extent (rows, columns) of the central unit's nonzero gradient on the input: the receptive field
    as the network itself has it."""
    erf = empirical_rf(features(net), (1, size, size), samples=4, normalize=None)
    rows = torch.nonzero(erf.sum(dim=1) > 0).flatten()
    cols = torch.nonzero(erf.sum(dim=0) > 0).flatten()
    return int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_receptive_fields_of_every_depth_and_peer_match_hand_computation_and_the_gradient(depth, one_thread):
    torch.manual_seed(depth)
    net = SmallResNet(num_classes=10, in_channels=1, width=2, depth=depth)
    assert net(torch.rand(2, 1, 32, 32)).shape == (2, 10)
    plain, dilated, large = HAND[depth]
    peers = {"plain": net, "dilated": dilate_last_block(copy.deepcopy(net)),
             "large": enlarge_kernels(copy.deepcopy(net))}
    for name, expected in zip(peers, (plain, dilated, large)):
        model = peers[name]
        assert receptive_field(model) == (expected, expected), name
        assert model(torch.rand(2, 1, 32, 32)).shape == (2, 10)  # shapes kept
        # The gradient support, on an input large enough to hold the whole field, has the same extent.
        assert _support(model, expected + 16 + expected % 2) == (expected, expected), name
    # Wrapped (a video arm), the network's modules and receptive field are the 2D network's.
    assert receptive_field(wrap(copy.deepcopy(net), "translate_x:0.1", T=3)) == (plain, plain)


def test_the_default_small_resnet_is_the_two_block_one_and_sees_less_than_a_digit():
    net = SmallResNet(num_classes=10, in_channels=1, width=4)
    assert net.depth == 2 and not hasattr(net, "layer3")
    assert [k for k in net.state_dict() if k.endswith("conv1.weight")] == ["conv1.weight", "layer1.conv1.weight",
                                                                           "layer2.conv1.weight"]
    assert receptive_field(net) == (13, 13) and theoretical_rf([(3, 1), (3, 1), (3, 1), (3, 2), (3, 1)]) == 13 < 16
    deep = SmallResNet(width=4, depth=4)
    assert deep.layer4.conv2.out_channels == 32 and deep.fc.in_features == 32


def test_the_peers_keep_what_they_do_not_change():
    torch.manual_seed(0)
    net = SmallResNet(width=4)
    dilated = dilate_last_block(copy.deepcopy(net))
    assert dilated.layer2.conv1.dilation == (2, 2) and dilated.layer2.conv1.padding == (2, 2)
    assert dilated.layer1.conv1.dilation == (1, 1)
    for key, value in net.state_dict().items():  # the same weights: the 3x3 taps, spread apart
        assert torch.equal(dilated.state_dict()[key], value), key
    large = enlarge_kernels(copy.deepcopy(net))
    assert all(m.kernel_size == (5, 5) and m.padding == (2, 2) for m in large.modules()
               if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
    assert large.layer2.downsample[0].kernel_size == (1, 1)  # 1x1 shortcuts stay
    assert torch.equal(large.fc.weight, net.fc.weight) and torch.equal(large.bn1.weight, net.bn1.weight)
    resnet = enlarge_kernels(build_network("resnet18", 10, 3))
    assert resnet.layer4[1].conv2.kernel_size == (5, 5) and resnet(torch.rand(1, 3, 32, 32)).shape == (1, 10)
    assert dilate_last_block(build_network("resnet18", 10, 3)).layer4[1].conv2.dilation == (2, 2)


def test_resnet18_has_the_cifar_stem_and_features_stop_before_pooling():
    net = build_network("resnet18", num_classes=7, in_channels=1)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.in_channels == 1
    assert isinstance(net.maxpool, nn.Identity) and net.fc.out_features == 7
    cut = features(net)
    assert list(dict(cut.named_children())) == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                                                "layer4"]
    assert cut.layer4 is net.layer4  # shared modules, same parameter names
    assert cut(torch.rand(1, 1, 32, 32)).shape == (1, 512, 4, 4)  # 32 px: strides 1, 2, 2, 2
    # Eq. 8 by hand: 3 + 4 * 2 (layer1) + 2 + 3 * 4 (layer2) + 4 + 3 * 8 (layer3) + 8 + 3 * 16 (layer4) = 109
    assert receptive_field(net) == (109, 109)


def test_bad_networks():
    with pytest.raises(ValueError, match="choose from"):
        build_network("vgg", 10, 3)
    with pytest.raises(ValueError, match="avgpool"):
        features(nn.Sequential(nn.Conv2d(1, 1, 1)))
    with pytest.raises(ValueError, match=r"depth must be one of \[1, 2, 3, 4\]"):
        SmallResNet(depth=5)
    with pytest.raises(ValueError, match="dilation must be an integer >= 1"):
        dilate_last_block(SmallResNet(width=2), 0)
    with pytest.raises(ValueError, match="odd integer >= 3"):
        enlarge_kernels(SmallResNet(width=2), 4)
    with pytest.raises(ValueError, match="no torchvision BasicBlock"):
        dilate_last_block(nn.Sequential(nn.Conv2d(1, 1, 3)))
    with pytest.raises(ValueError, match="no 3x3 convolution"):
        enlarge_kernels(nn.Sequential(nn.Conv2d(1, 1, 1)))
    with pytest.raises(ValueError, match="undilated"):
        enlarge_kernels(dilate_last_block(SmallResNet(width=2)))
