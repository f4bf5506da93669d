"""Token shift and gated token shift against hand-written, element-wise definitions."""

import pytest
import torch
from torch.testing import assert_close

from img2vid.fusion import GatedTokenShift, TokenShift, token_shift

pytestmark = pytest.mark.usefixtures("one_thread")


def shifted_by_hand(x: torch.Tensor, fold_div: int = 8, keep_first: int = 0) -> torch.Tensor:
    """TSM's definition, one token channel at a time: channel c < fold of frame t reads frame t + 1,
    fold <= c < 2 fold reads frame t - 1, zeros past the ends; x is (B, T, ..., D)."""
    B, T, D = x.shape[0], x.shape[1], x.shape[-1]
    fold = D // fold_div
    out = torch.zeros_like(x)
    for b in range(B):
        for t in range(T):
            for c in range(D):
                if c < fold:
                    if t + 1 < T:
                        out[b, t, ..., c] = x[b, t + 1, ..., c]
                elif c < 2 * fold:
                    if t > 0:
                        out[b, t, ..., c] = x[b, t - 1, ..., c]
                else:
                    out[b, t, ..., c] = x[b, t, ..., c]
            if keep_first:
                out[b, t, :keep_first] = x[b, t, :keep_first]
    return out


@pytest.mark.parametrize("shape", [(2, 4, 5, 16), (1, 3, 2, 3, 24), (2, 1, 3, 8)], ids=["vit", "swin", "T=1"])
@pytest.mark.parametrize("fold_div", [8, 4, 3])
def test_token_shift_matches_the_definition(shape, fold_div, dtype):
    x = torch.randn(shape, dtype=dtype)
    out = token_shift(x, fold_div)
    assert_close(out, shifted_by_hand(x, fold_div), rtol=0, atol=0)
    assert out.data_ptr() != x.data_ptr()
    assert_close(TokenShift(fold_div)(x), out, rtol=0, atol=0)


def test_class_token_kept_on_request():
    x = torch.randn(2, 3, 5, 16)
    out = token_shift(x, 8, keep_first=1)
    assert_close(out, shifted_by_hand(x, 8, keep_first=1), rtol=0, atol=0)
    assert_close(out[:, :, 0], x[:, :, 0], rtol=0, atol=0)
    assert not torch.equal(token_shift(x)[:, :, 0], x[:, :, 0])  # shifted by default


def test_token_shift_gradcheck():
    x = torch.randn(1, 3, 2, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: token_shift(v, 4, 1), (x,))


def gated_by_hand(module: GatedTokenShift, x: torch.Tensor) -> torch.Tensor:
    """The documented formula: y_k = tanh(w_k . x_k + b_k) x_k, out_k = x_k + scale_k (shift(y_k) - y_k),
    half 1 from frame t + 1, half 2 from frame t - 1, zeros past the ends; other channels pass."""
    half, T = module.fused // 2, x.shape[1]
    out = x.clone()
    for k, (gate, step) in enumerate(((module.gate_next, 1), (module.gate_previous, -1))):
        channels = slice(k * half, (k + 1) * half)
        part = x[..., channels]
        y = torch.tanh(part @ gate.weight[0] + gate.bias[0]).unsqueeze(-1) * part
        for t in range(T):
            source = t + step
            shifted = y[:, source] if 0 <= source < T else torch.zeros_like(y[:, t])
            out[:, t, ..., channels] = part[:, t] + module.scale[channels] * (shifted - y[:, t])
    return out


@pytest.mark.parametrize("shape", [(2, 3, 5, 32), (1, 4, 2, 2, 32)], ids=["vit", "swin"])
def test_gated_token_shift_is_the_identity_at_init_and_matches_its_formula(shape):
    module = GatedTokenShift(32)
    assert module.fused == 8 and sum(p.numel() for p in module.parameters()) == 8 + 2 + 8
    x = torch.randn(shape)
    assert torch.equal(module(x), x)  # exactly: the scale starts at zero
    with torch.no_grad():
        module.scale.normal_()
    out = module(x)
    assert_close(out, gated_by_hand(module, x))
    assert not torch.allclose(out, x)
    assert torch.equal(out[..., 8:], x[..., 8:])


def test_gated_token_shift_keeps_the_class_token_on_request():
    module = GatedTokenShift(32, keep_first=1)
    with torch.no_grad():
        module.scale.normal_()
    x = torch.randn(2, 3, 5, 32)
    out = module(x)
    assert torch.equal(out[:, :, 0], x[:, :, 0])
    assert_close(out[:, :, 1:], gated_by_hand(module, x)[:, :, 1:])


def test_gated_token_shift_gradcheck():
    module = GatedTokenShift(8, fraction=0.5).double()
    with torch.no_grad():
        module.scale.normal_()
    x = torch.randn(1, 3, 2, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))


def test_errors():
    with pytest.raises(ValueError, match="fold_div must be an integer >= 2, got 1"):
        TokenShift(1)
    with pytest.raises(ValueError, match="keep_first must be an integer >= 0, got -1"):
        TokenShift(keep_first=-1)
    with pytest.raises(ValueError, match=r"expects tokens \(B, T, ..., D\), got shape \(4, 8\)"):
        token_shift(torch.rand(4, 8))
    with pytest.raises(ValueError, match="keep_first applies to token sequences"):
        token_shift(torch.rand(1, 2, 3, 3, 8), keep_first=1)
    with pytest.raises(ValueError, match=r"GatedTokenShift\(16\) expects tokens \(B, T, ..., 16\)"):
        GatedTokenShift(16)(torch.rand(1, 2, 3, 8))
