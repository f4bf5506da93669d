"""Gate-Shift-Fuse (Sudhakaran, Escalera, Lanz, "Gate-Shift-Fuse for Video Action Recognition",
TPAMI 2023; reference ``gsf.py`` of swathikirans/GSF).

Definition, on the first ``Cg`` channels of a clip (``Cg`` = ``fraction`` of the channels, rounded to
an even count; the other channels pass through):

1. Gate: ``g = tanh(Conv3d_{3x3x3, groups=2}(ReLU(BatchNorm3d(x))))``, two gate planes, one per
   half of the ``Cg`` channels.
2. Shift: ``y = g * x`` (gated part), ``r = x - y`` (residual). The first half's ``y`` moves one
   frame towards earlier frames (frame ``t`` takes ``t + 1``), the second half's towards later ones
   (frame ``t`` takes ``t - 1``); zeros past the ends.
3. Fuse: per half, ``w = sigmoid(Conv2d_{3x3}([pool(y_shifted), pool(r)]))``, a small conv over the
   (channel, time) plane of the spatially average-pooled features, and
   ``fused = w * y_shifted + (1 - w) * r``.

Two deliberate departures from the reference (see ``docs/temporalize.md``):

- **No channel permutation.** The reference interleaves the two halves' channels on the way out
  (a ``view``/``permute``/``view``); here channel ``c`` of the output is channel ``c`` of the input,
  so the following layer's pretrained weights still see the channels they were trained on.
- **A zero-initialised residual scale.** The output is ``x + scale * (fused - x)`` with one ``scale``
  per fused channel, initialised to zero: the module is exactly the identity at initialisation, so a
  pretrained 2D model keeps its outputs at step 0 and learns how much fusion to use.

Implementation notes, same maths: ``BatchNorm3d`` over ``(B, C, T, H, W)`` normalises each channel
over ``B, T, H, W``, which is ``BatchNorm2d`` over the ``B*T`` frames (same statistics, same running
averages). The ``3x3x3`` convolution is a ``3x3`` 2D convolution producing one response per
temporal tap (``t - 1``, ``t``, ``t + 1``) and the taps are summed over shifted frames. Every weight
is then 4-D, so ``model.to(memory_format=torch.channels_last)`` works, and the clip is never
transposed to ``(B, C, T, H, W)``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = ["GateShiftFuse", "fused_channels"]


def fused_channels(channels: int, fraction: float = 0.25) -> int:
    """How many channels GSF fuses: ``int(channels * fraction)``, made even (at least 2).

    As in the reference, an odd count is rounded up (down if that would exceed ``channels``).
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 2:
        raise ValueError(f"GateShiftFuse needs an integer channel count >= 2, got {channels!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    fused = max(math.floor(round(channels * fraction, 6)), 2)  # 100 * 0.29 is 28.999...: still 29
    if fused % 2:
        fused = fused + 1 if fused + 1 <= channels else fused - 1
    return fused


# The shifts concatenate a zero frame rather than F.pad: in torch 2.14 Inductor (CPU) miscompiles
# F.pad of a conv output's time slice followed by a broadcast add (wrong values, no error).
def _from_next(x: Tensor) -> Tensor:
    """Frame ``t`` takes frame ``t + 1``; the last frame reads zeros. Shape: ``(B, T, ...)``."""
    return torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)


def _from_previous(x: Tensor) -> Tensor:
    """Frame ``t`` takes frame ``t - 1``; the first frame reads zeros. Shape: ``(B, T, ...)``."""
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)


class GateShiftFuse(nn.Module):
    """Gate-Shift-Fuse on a fraction of a clip's channels, the identity at initialisation.

    Inserted by :func:`~img2vid.temporalize.temporalize` after a residual branch's last convolution,
    before its normalisation (the reference placement).

    Args:
        channels: channels ``C`` of the clips it will see.
        fraction: the fraction of channels that are gated, shifted and fused (default ``0.25``, the
            reference's ``gsf_ch_ratio=25``); see :func:`fused_channels`.

    Attributes:
        fused: the number of fused channels ``Cg`` (the first ``Cg`` channels).
        norm, gate, gate_bias: the spatio-temporal gate (``BatchNorm3d -> ReLU -> Conv3d``).
        fuse_next, fuse_previous: the fusion convs of the half shifted from the next and from the
            previous frame (the reference's ``channel_conv1`` and ``channel_conv2``).
        scale: the residual scale, one per fused channel, zero at initialisation.

    Shape:
        - Input: ``(B, T, C, H, W)``; output: the same.
    """

    at: ClassVar[str] = "output"  # where temporalize places it: on a site's output

    def __init__(self, channels: int, fraction: float = 0.25) -> None:
        super().__init__()
        self.channels = channels
        self.fraction = fraction
        self.fused = fused_channels(channels, fraction)
        half = self.fused // 2
        self.norm = nn.BatchNorm2d(self.fused)
        # Conv3d(Cg, 2, (3, 3, 3), groups=2) as a 2D conv: output channel 3 * group + tap holds that
        # group's response to frame t + tap - 1 (cross-correlation, as Conv3d).
        self.gate = nn.Conv2d(self.fused, 6, 3, padding=1, groups=2, bias=False)
        self.gate_bias = nn.Parameter(torch.empty(2))
        self.fuse_next = nn.Conv2d(2, 1, 3, padding=1)
        self.fuse_previous = nn.Conv2d(2, 1, 3, padding=1)
        self.scale = nn.Parameter(torch.zeros(self.fused))
        self._half = half
        self.reset_gate()

    def reset_gate(self) -> None:
        """Initialise the gate as PyTorch initialises ``Conv3d(Cg, 2, 3, groups=2)``."""
        bound = 1 / math.sqrt(self._half * 27)  # kaiming_uniform(a=sqrt(5)) with the 3D fan-in
        nn.init.uniform_(self.gate.weight, -bound, bound)
        nn.init.uniform_(self.gate_bias, -bound, bound)

    def gates(self, x: Tensor) -> Tensor:
        """The two gate planes ``tanh(Conv3d(ReLU(BN(x))))`` of the fused channels.

        Shape:
            - x: ``(B, T, Cg, H, W)``; output: ``(B, T, 2, H, W)``.
        """
        T = x.shape[1]
        frames = rearrange(x, "b t c h w -> (b t) c h w")
        taps = self.gate(F.relu(self.norm(frames)))  # (B*T, 2 groups * 3 taps, H, W)
        taps = rearrange(taps, "(b t) (g k) h w -> k b t g h w", t=T, k=3)
        # Conv3d: out(t) = sum_k W_k * in(t + k - 1), so tap 0 comes from the previous frame.
        summed = _from_previous(taps[0]) + taps[1] + _from_next(taps[2])
        return torch.tanh(summed + self.gate_bias.view(2, 1, 1))

    def _fuse(self, shifted: Tensor, residual: Tensor, conv: nn.Conv2d) -> Tensor:
        """Weights from the pooled features over the (channel, time) plane. Output ``(B, T, c, 1, 1)``."""
        pooled = torch.stack([shifted.mean((-2, -1)), residual.mean((-2, -1))], dim=1)  # (B, 2, T, c)
        weights = torch.sigmoid(conv(pooled.transpose(2, 3)))  # (B, 1, c, T): conv over (channel, time)
        return rearrange(weights, "b 1 c t -> b t c 1 1")

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 5 or x.shape[2] != self.channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"GateShiftFuse({self.channels}) expects (B, T, {self.channels}, H, W), got {shape}")
        cg, half = self.fused, self._half
        # A copy of the fused quarter: the convs want it dense anyway, and what backward saves then
        # points into it, not into the whole input, which can be freed after this call.
        xg = x[:, :, :cg].contiguous()
        gates = self.gates(xg)  # (B, T, 2, H, W)
        deltas = []
        for gate, part, shift, conv in (
            (gates[:, :, 0:1], xg[:, :, :half], _from_next, self.fuse_next),  # the reference's lshift
            (gates[:, :, 1:2], xg[:, :, half:], _from_previous, self.fuse_previous),  # its rshift
        ):
            gated = gate * part  # y
            residual = part - gated  # r
            shifted = shift(gated)
            weight = self._fuse(shifted, residual, conv)
            # fused - x = w * shifted + (1 - w) * r - (y + r) = w * (shifted - r) - y: fewer temporaries
            deltas.append(weight * (shifted - residual) - gated)
        out_g = xg + self.scale.view(cg, 1, 1) * torch.cat(deltas, dim=2)  # exactly xg while scale is zero
        return torch.cat([out_g, x[:, :, cg:]], dim=2)

    def extra_repr(self) -> str:
        return f"{self.channels}, fraction={self.fraction}, fused={self.fused}"
