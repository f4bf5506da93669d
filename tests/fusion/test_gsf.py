"""Gate-Shift-Fuse against its definition (Sudhakaran, Escalera, Lanz, TPAMI 2023; swathikirans/GSF,
gsf.py), written out here in the reference's (B, C, T, H, W) layout with BatchNorm3d and a 3x3x3
Conv3d, and with this library's two departures: no channel permutation, and a residual scale."""

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.autograd import gradcheck
from torch.testing import assert_close

from img2vid.fusion import FUSIONS, GateShiftFuse, NoFusion, make_fusion
from img2vid.fusion.gsf import fused_channels

# Small tensors: one intra-op thread is faster, and far faster on a busy machine (see conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


def gsf_by_definition(m: GateShiftFuse, x: torch.Tensor, training: bool) -> torch.Tensor:
    cg, half = m.fused, m.fused // 2
    xg = x[:, :, :cg].permute(0, 2, 1, 3, 4)  # (B, Cg, T, H, W), the reference's layout
    running_mean, running_var = m.norm.running_mean.clone(), m.norm.running_var.clone()
    normed = F.batch_norm(xg, running_mean, running_var, m.norm.weight, m.norm.bias, training=training,
                          momentum=m.norm.momentum, eps=m.norm.eps)  # BatchNorm3d
    # Our 2D gate conv's output channel 3 * g + k is the Conv3d's group g, temporal tap k.
    weight3d = rearrange(m.gate.weight, "(g k) c h w -> g c k h w", k=3)
    gate = torch.tanh(F.conv3d(F.relu(normed), weight3d, m.gate_bias, padding=1, groups=2))  # (B, 2, T, H, W)
    x1, x2 = xg[:, :half], xg[:, half:]
    y1, y2 = gate[:, 0:1] * x1, gate[:, 1:2] * x2
    r1, r2 = x1 - y1, x2 - y2
    y1 = torch.roll(y1, shifts=-1, dims=2)  # lshift_zeroPad
    y1[:, :, -1] = 0
    y2 = torch.roll(y2, shifts=1, dims=2)  # rshift_zeroPad
    y2[:, :, 0] = 0

    def weights(y, r, conv):  # (B, c, T, H, W) -> (B, c, T, 1, 1)
        plane = torch.stack([y.mean((-1, -2)), r.mean((-1, -2))], dim=1)  # (B, 2, c, T)
        return torch.sigmoid(conv(plane))[:, 0, :, :, None, None]

    w1, w2 = weights(y1, r1, m.fuse_next), weights(y2, r2, m.fuse_previous)
    fused = torch.cat([y1 * w1 + r1 * (1 - w1), y2 * w2 + r2 * (1 - w2)], dim=1)  # no permutation
    out_g = xg + m.scale.view(cg, 1, 1, 1) * (fused - xg)
    return torch.cat([out_g.permute(0, 2, 1, 3, 4), x[:, :, cg:]], dim=2), running_mean, running_var


def randomised(module: GateShiftFuse) -> GateShiftFuse:
    """Non-trivial scale and BN statistics, so every term of the definition matters."""
    with torch.no_grad():
        module.scale.normal_()
        module.norm.weight.uniform_(0.5, 1.5)
        module.norm.bias.normal_(0, 0.1)
        module.norm.running_mean.normal_(0, 0.1)
        module.norm.running_var.uniform_(0.5, 1.5)
    return module


@pytest.mark.parametrize("shape", [(2, 4, 32, 5, 6), (1, 1, 16, 3, 3), (3, 2, 10, 4, 4)])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_matches_definition(shape, training, device, dtype):
    m = randomised(GateShiftFuse(shape[2])).to(device, dtype).train(training)
    x = torch.randn(shape, device=device, dtype=dtype)
    expected, running_mean, running_var = gsf_by_definition(m, x, training)
    out = m(x)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    assert_close(out, expected, **tol)
    assert_close(m.norm.running_mean, running_mean, **tol)
    assert_close(m.norm.running_var, running_var, **tol)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_identity_at_initialisation(training):
    """The zero-initialised residual scale: exactly the identity, in value and in gradient."""
    m = GateShiftFuse(32).train(training)
    x = torch.randn(2, 5, 32, 6, 6, requires_grad=True)
    out = m(x)
    assert torch.equal(out, x)
    grad = torch.randn_like(x)
    out.backward(grad)
    assert torch.equal(x.grad, grad)
    assert m.scale.grad.abs().sum() > 0  # the scale learns first ...
    for name, p in m.named_parameters():  # ... the gate and fusion convs once it is non-zero
        if name != "scale":
            assert p.grad is None or not p.grad.any(), name


def test_gradcheck_float64():
    m = randomised(GateShiftFuse(4, fraction=0.5)).double()  # 2 fused channels, 2 passed through
    x = torch.randn(2, 3, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    params = [m.scale, m.gate.weight, m.gate_bias, m.fuse_next.weight, m.fuse_previous.bias, m.norm.weight]
    for training in (False, True):
        m.train(training)
        assert gradcheck(lambda v, *_: m(v), (x, *params), eps=1e-6, atol=1e-5)


def test_t_equal_one_shifts_in_zeros():
    """With one frame both shifted halves are zero: fused = (1 - w) * r, a pure residual."""
    m = randomised(GateShiftFuse(8, fraction=1.0)).eval()
    x = torch.randn(2, 1, 8, 4, 4)
    assert_close(m(x), gsf_by_definition(m, x, False)[0])
    assert not torch.equal(m(x), x)


def test_only_the_fused_channels_change():
    m = randomised(GateShiftFuse(40)).eval()  # 25 % of 40 = 10 fused channels
    x = torch.randn(2, 3, 40, 4, 4)
    out = m(x)
    assert m.fused == 10
    assert torch.equal(out[:, :, 10:], x[:, :, 10:])
    assert not torch.equal(out[:, :, :10], x[:, :, :10])


def test_parameter_count():
    """BN (2 Cg) + grouped 3x3x3 gate (27 Cg + 2) + two 2->1 3x3 fusion convs (2 x 19), as in the
    reference, plus the residual scale (Cg)."""
    for channels in (16, 64, 512):
        m = GateShiftFuse(channels)
        cg = channels // 4
        assert sum(p.numel() for p in m.parameters()) == 29 * cg + 40 + cg
        assert m.gate.weight.ndim == 4  # every weight 4-D: channels_last works


def test_gate_initialised_like_conv3d():
    torch.manual_seed(1)
    m = GateShiftFuse(256)
    bound = 1 / (m.fused // 2 * 27) ** 0.5
    reference = nn.Conv3d(m.fused, 2, 3, padding=1, groups=2)
    assert m.gate.weight.abs().max() <= bound and m.gate_bias.abs().max() <= bound
    assert_close(m.gate.weight.std(), reference.weight.std(), rtol=0.1, atol=0)


def test_channels_last():
    m = randomised(GateShiftFuse(16)).eval()
    x = torch.randn(6, 16, 5, 5)
    expected = m(x.view(2, 3, 16, 5, 5))
    m = m.to(memory_format=torch.channels_last)
    out = m(x.to(memory_format=torch.channels_last).view(2, 3, 16, 5, 5))
    assert_close(out, expected)


def test_norm_runs_as_a_module():
    """The gate's norm is called as a module: its hooks fire, and converting it (SyncBatchNorm, as
    DDP users do) keeps the values."""
    m = randomised(GateShiftFuse(8)).train()
    x = torch.randn(2, 3, 8, 4, 4)
    seen = []
    m.norm.register_forward_hook(lambda *_: seen.append(True))
    m(x)
    assert seen == [True]
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(m)).eval()
    assert isinstance(converted.norm, nn.SyncBatchNorm)
    assert_close(converted(x), m.eval()(x))


def test_torch_func_grad_matches_autograd():
    """torch.func.grad (eval mode: BN's running statistics are not updated) gives autograd's gradients."""
    m = randomised(GateShiftFuse(8)).eval()
    x = torch.randn(2, 3, 8, 4, 4)
    params = dict(m.named_parameters())
    grads = torch.func.grad(lambda p: torch.func.functional_call(m, p, (x,)).square().sum())(params)
    m(x).square().sum().backward()
    for name, p in m.named_parameters():
        assert_close(grads[name], p.grad, msg=name)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_second_derivatives(training):
    """GSF's gradients are autograd's, so they are differentiable again (gradgradcheck, float64)."""
    m = randomised(GateShiftFuse(4, fraction=0.5)).double().train(training)
    x = torch.randn(2, 3, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v, s, g: m(v), (x, m.scale, m.gate.weight), eps=1e-6, atol=1e-5)


def test_module_pickled_with_a_by_hand_switch_still_loads_and_runs():
    """Modules pickled by earlier versions carry a ``by_hand`` attribute; it is ignored."""
    m = randomised(GateShiftFuse(8)).eval()
    m.by_hand = False
    loaded = pickle.loads(pickle.dumps(m))
    x = torch.randn(2, 3, 8, 4, 4)
    assert_close(loaded(x), gsf_by_definition(m, x, False)[0])
    assert "by_hand" not in repr(loaded)
    assert loaded.state_dict().keys() == GateShiftFuse(8).state_dict().keys()


@pytest.mark.parametrize(
    ("channels", "fraction", "fused"),
    [(64, 0.25, 16), (6, 0.25, 2), (10, 0.5, 6), (5, 1.0, 4), (3, 0.25, 2), (2, 0.25, 2), (100, 1, 100),
     (100, 0.29, 30)],  # int(100 * 29 / 100) = 29 in the reference, made even
)
def test_fused_channels(channels, fraction, fused):
    assert fused_channels(channels, fraction) == fused


@pytest.mark.parametrize(("channels", "fraction"), [(1, 0.25), (0, 0.25), (8.0, 0.25), (8, 0), (8, 1.5),
                                                     (8, True), (True, 0.25)])
def test_bad_options(channels, fraction):
    with pytest.raises(ValueError, match=r"channel|fraction"):
        GateShiftFuse(channels, fraction)


def test_bad_input():
    m = GateShiftFuse(16)
    with pytest.raises(ValueError, match=r"\(B, T, 16, H, W\).*\(2, 3, 8, 4, 4\)"):
        m(torch.randn(2, 3, 8, 4, 4))
    with pytest.raises(ValueError, match=r"\(6, 16, 4, 4\)"):
        m(torch.randn(6, 16, 4, 4))


def test_factory():
    assert sorted(FUSIONS) == ["gsf", "none", "tsm"]
    assert isinstance(make_fusion("gsf", 32, fraction=0.5), GateShiftFuse)
    assert make_fusion("gsf", 32, fraction=0.5).fused == 16
    none = make_fusion("none")
    x = torch.randn(1, 2, 3, 4, 4)
    assert isinstance(none, NoFusion) and none(x) is x and list(none.parameters()) == []
    with pytest.raises(ValueError, match=r"unknown fusion 'gfs'.*\['gsf', 'none', 'tsm'\]"):
        make_fusion("gfs", 32)
    with pytest.raises(ValueError, match="channel"):
        make_fusion("gsf")
    with pytest.raises(TypeError):
        make_fusion("tsm", fraction=0.5)
    with pytest.raises(TypeError):
        make_fusion("none", fold_div=4)
