"""TSM against its definition (Lin et al., ICCV 2019; mit-han-lab/temporal-shift-module,
ops/temporal_shift.py): channels [0, C//d) of frame t read frame t + 1, [C//d, 2C//d) read t - 1,
zeros past the ends, the rest unchanged."""

import pytest
import torch
from torch.autograd import gradcheck
from torch.testing import assert_close

import img2vid.functional as I2VF
from img2vid.fusion import FUSIONS, TemporalShift, make_fusion, temporal_shift

# Small tensors: one intra-op thread is faster, and far faster on a busy machine (see conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


def shift_by_definition(x: torch.Tensor, fold_div: int) -> torch.Tensor:
    """Element by element, in the reference's (n, t, c) indexing."""
    t_len, c_len = x.shape[1:3]
    fold = c_len // fold_div
    out = torch.zeros_like(x)
    for t in range(t_len):
        for c in range(c_len):
            if c < fold:
                if t + 1 < t_len:
                    out[:, t, c] = x[:, t + 1, c]
            elif c < 2 * fold:
                if t - 1 >= 0:
                    out[:, t, c] = x[:, t - 1, c]
            else:
                out[:, t, c] = x[:, t, c]
    return out


@pytest.mark.parametrize(
    ("shape", "fold_div"),
    [
        ((2, 4, 16, 3, 3), 8),  # the default: a quarter of the channels move
        ((1, 1, 16, 2, 2), 8),  # T = 1: shifted channels read zeros
        ((2, 3, 5, 2, 2), 8),  # C < fold_div: nothing moves
        ((2, 5, 13, 2, 3), 4),  # C not a multiple of fold_div
        ((1, 3, 6, 1, 1), 2),  # fold_div = 2: every channel moves
        ((3, 2, 8, 4, 1), 3),
    ],
)
def test_matches_definition(shape, fold_div, device, dtype):
    x = torch.randn(shape, device=device, dtype=dtype)
    expected = shift_by_definition(x, fold_div)
    assert torch.equal(temporal_shift(x, fold_div), expected)
    assert torch.equal(TemporalShift(fold_div)(x), expected)


def test_default_fold_div_is_eight():
    x = torch.randn(2, 3, 16, 2, 2)
    assert torch.equal(temporal_shift(x), shift_by_definition(x, 8))


def test_output_is_fresh_and_input_untouched():
    x = torch.randn(2, 3, 5, 2, 2)  # C < fold_div: equal values, but a new tensor
    before = x.clone()
    out = temporal_shift(x)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    temporal_shift(torch.randn(2, 3, 16, 2, 2))
    assert torch.equal(x, before)


def test_strided_inputs():
    """A (B, T, C, H, W) view of a (B, C, T, H, W) buffer (as image_to_video returns) and a
    channels_last frame batch viewed as a clip give the definition."""
    buffer = torch.randn(2, 16, 3, 4, 4)
    clip = buffer.permute(0, 2, 1, 3, 4)
    assert torch.equal(temporal_shift(clip), shift_by_definition(clip.contiguous(), 8))
    frames = torch.randn(6, 16, 4, 4).to(memory_format=torch.channels_last)
    clip = frames.view(2, 3, 16, 4, 4)  # splitting the batch axis is a valid view of any layout
    assert torch.equal(temporal_shift(clip), shift_by_definition(clip.contiguous(), 8))


def test_gradcheck():
    x = torch.randn(2, 3, 8, 2, 2, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda v: temporal_shift(v, 4), (x,))
    assert gradcheck(lambda v: temporal_shift(v, 4), (torch.randn(1, 1, 8, 1, 2, dtype=torch.float64,
                                                                    requires_grad=True),))


def test_backward_is_the_opposite_shift():
    x = torch.randn(2, 4, 16, 2, 2, requires_grad=True)
    grad = torch.randn_like(x)
    temporal_shift(x).backward(grad)
    fold = 2
    expected = grad.clone()
    expected[:, :, :fold] = torch.cat([torch.zeros_like(grad[:, :1, :fold]), grad[:, :-1, :fold]], 1)
    expected[:, :, fold : 2 * fold] = torch.cat(
        [grad[:, 1:, fold : 2 * fold], torch.zeros_like(grad[:, :1, fold : 2 * fold])], 1
    )
    assert_close(x.grad, expected, rtol=0, atol=0)


def test_module():
    module = TemporalShift(4)
    assert list(module.parameters()) == [] and list(module.buffers()) == []
    assert module.at == "input"
    assert "fold_div=4" in repr(module)
    assert isinstance(make_fusion("tsm", fold_div=4), TemporalShift)
    assert FUSIONS["tsm"] is TemporalShift


def test_functional_reexport():
    assert I2VF.temporal_shift is temporal_shift


@pytest.mark.parametrize("bad", [1, 0, -8, 2.5, True, "8", None])
def test_bad_fold_div(bad):
    with pytest.raises(ValueError, match="fold_div"):
        temporal_shift(torch.randn(1, 2, 8, 1, 1), bad)
    with pytest.raises(ValueError, match="fold_div"):
        TemporalShift(bad)


@pytest.mark.parametrize("shape", [(6, 8, 4, 4), (8,), (1, 2, 3, 8, 4, 4)])
def test_bad_shape(shape):
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\).*" + str(tuple(shape)).replace("(", r"\(")
                       .replace(")", r"\)")):
        temporal_shift(torch.randn(shape))


def test_channels_last_shift_is_the_same_shift():
    from img2vid.functional import temporal_shift as shift

    x = torch.randn(2, 4, 16, 3, 5)
    torch.testing.assert_close(shift(x.movedim(2, -1), 4, channel_dim=-1), shift(x, 4).movedim(2, -1),
                               rtol=0, atol=0)
    tokens = torch.randn(2, 3, 7, 8)  # (B, T, N, D)
    out = shift(tokens, 4, channel_dim=-1)
    torch.testing.assert_close(out[:, :-1, :, :2], tokens[:, 1:, :, :2], rtol=0, atol=0)  # from t + 1
    torch.testing.assert_close(out[:, 1:, :, 2:4], tokens[:, :-1, :, 2:4], rtol=0, atol=0)  # from t - 1
    assert out[:, -1, :, :2].abs().sum() == 0 and out[:, 0, :, 2:4].abs().sum() == 0
    with pytest.raises(ValueError, match="channel_dim must be 2"):
        shift(x, 4, channel_dim=1)
    with pytest.raises(ValueError, match=r"\(B, T, \.\.\., C\)"):
        shift(torch.randn(2, 3), 4, channel_dim=-1)
