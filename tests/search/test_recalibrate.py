"""recalibrated_batchnorm: only BatchNorm statistics change inside, and everything is put back."""

import pytest
import torch
from torch import nn

from img2vid.search import recalibrated_batchnorm


def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2),
                         nn.BatchNorm1d(2, momentum=0.3))


def test_statistics_are_the_plain_average_inside_and_restored_after():
    torch.manual_seed(0)
    net = _net()
    net(torch.rand(4, 3, 6, 6))  # materialise the lazy layer; moves the running stats once
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batches = [torch.randn(5, 3, 6, 6) * 2 + 1 for _ in range(3)]
    with recalibrated_batchnorm(net, batches) as same:
        assert same is net and not net.training
        inside = {k: v.clone() for k, v in net.state_dict().items()}
        # Oracle: BatchNorm2d's running mean = mean over batches of each batch's per-channel mean.
        conv_out = [net[0](b) for b in batches]
        expected_mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in conv_out]).mean(0)
        expected_var = torch.stack([o.var(dim=(0, 2, 3), unbiased=True) for o in conv_out]).mean(0)
        torch.testing.assert_close(net[1].running_mean, expected_mean)
        torch.testing.assert_close(net[1].running_var, expected_var)
        assert int(net[1].num_batches_tracked) == 3 and net[1].momentum is None
    changed = {k for k in before if not torch.equal(before[k], inside[k])}
    assert changed == {"1.running_mean", "1.running_var", "1.num_batches_tracked", "5.running_mean",
                       "5.running_var", "5.num_batches_tracked"}  # BatchNorm buffers only
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert net.training and net[1].momentum == 0.1 and net[5].momentum == 0.3


def test_restored_after_an_error_and_empty_input_refused():
    net = _net()
    net(torch.rand(2, 3, 6, 6))
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"):
        with recalibrated_batchnorm(net, [torch.rand(2, 3, 6, 6)]):
            raise RuntimeError("boom")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()) and not net.training
    with pytest.raises(ValueError, match="no input batch"):
        with recalibrated_batchnorm(net, []):
            pass
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
