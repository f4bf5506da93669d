"""The benchmark's networks: the small ResNet's receptive field, ResNet-18's CIFAR stem, feature cuts."""

import pytest
import torch
from torch import nn

from img2vid.experiments.networks import SmallResNet, build_network, features
from img2vid.rf import empirical_rf, theoretical_rf


def test_the_small_resnet_sees_13_pixels_less_than_a_digit(one_thread):
    torch.manual_seed(0)
    net = SmallResNet(num_classes=10, in_channels=1, width=4)
    assert net(torch.rand(3, 1, 32, 32)).shape == (3, 10)
    # Read from the network itself: the central unit's gradient support on the input (its receptive field).
    erf = empirical_rf(features(net), (1, 32, 32), samples=2)
    rows = torch.nonzero(erf.sum(dim=1) > 0).flatten()
    cols = torch.nonzero(erf.sum(dim=0) > 0).flatten()
    assert int(rows[-1] - rows[0]) + 1 == 13 == int(cols[-1] - cols[0]) + 1
    # Eq. 8 along the longest path (conv1, layer1's two 3x3, layer2's 3x3 / 2 and 3x3) agrees.
    assert theoretical_rf([(3, 1), (3, 1), (3, 1), (3, 2), (3, 1)]) == 13 < 16


def test_resnet18_has_the_cifar_stem_and_features_stop_before_pooling():
    net = build_network("resnet18", num_classes=7, in_channels=1)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.in_channels == 1
    assert isinstance(net.maxpool, nn.Identity) and net.fc.out_features == 7
    cut = features(net)
    assert list(dict(cut.named_children())) == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                                                "layer4"]
    assert cut.layer4 is net.layer4  # shared modules, same parameter names
    assert cut(torch.rand(1, 1, 32, 32)).shape == (1, 512, 4, 4)  # 32 px: strides 1, 2, 2, 2


def test_bad_networks():
    with pytest.raises(ValueError, match="choose from"):
        build_network("vgg", 10, 3)
    with pytest.raises(ValueError, match="avgpool"):
        features(nn.Sequential(nn.Conv2d(1, 1, 1)))
