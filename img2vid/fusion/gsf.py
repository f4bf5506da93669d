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
transposed to ``(B, C, T, H, W)``. Every shift (the taps, the gated halves, their pooled values) is
:func:`img2vid.functional.temporal_shift`, TSM's function; both halves run at once, and the output
is regrouped so that only three passes touch whole feature maps (same values up to rounding).

One implementation: the composite of autograd-tracked ops in :meth:`GateShiftFuse.forward`, the same on
every device, in eager execution, under ``torch.compile``/``torch.export``, with autocast and under
``torch.func`` transforms. Its gradients are autograd's, so they are differentiable again (second
derivatives, ``create_graph=True``). For speed, compile the model: Inductor fuses the elementwise chain
(``docs/temporalize.md`` gives the measured cost, eager and compiled).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..functional import temporal_shift

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
        self._tap_order = [2, 0, 1, 5, 3, 4]  # per group: taps t + 1, t - 1, t
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
        batch, T = x.shape[:2]
        # The convolution runs channels last: oneDNN's grouped convolution with so few channels per
        # group is 2.5-4x faster (forward + backward, CPU) in that layout than in NCHW, while the batch
        # norm is faster in NCHW, so the layout changes in between. (A Conv3d on the same memory, a free
        # channels-last-3d view, needs no tap sum but its forward + backward runs 1.6-2x slower.)
        frames = self.norm(x.flatten(0, 1)).contiguous(memory_format=torch.channels_last)  # (B*T, Cg, H, W)
        # Within each group, the taps come out in the order (t + 1, t - 1, t): the order in which
        # temporal_shift(fold_div=3) takes them from the next frame, from the previous one, or in place.
        weight = self.gate.weight[self._tap_order].contiguous(memory_format=torch.channels_last)
        taps = F.conv2d(F.relu(frames), weight, padding=1, groups=2)  # (B*T, 2 groups * 3 taps, H, W)
        # Conv3d: out(t) = sum_k W_k * in(t + k - 1).
        taps = taps.unflatten(0, (batch, T)).unflatten(2, (2, 3)).flatten(-2).transpose(2, 3)  # (B, T, 3, 2, H*W)
        summed = temporal_shift(taps, fold_div=3).sum(2).view(batch, T, 2, *x.shape[-2:])
        return torch.tanh(summed + self.gate_bias.view(2, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """``x + scale * (fused - x)`` on the first ``fused`` channels; the others pass through.

        Shape:
            - x: ``(B, T, C, H, W)``; output: the same.
        """
        if not isinstance(x, Tensor) or x.ndim != 5 or x.shape[2] != self.channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"GateShiftFuse({self.channels}) expects (B, T, {self.channels}, H, W), got {shape}")
        batch, T, channels, height, width = x.shape
        cg, half = self.fused, self._half
        # Split (not slice) the channels: in backward the gradient is put together by one
        # concatenation instead of one zero-filled clip per slice. The fused part is copied densely
        # (the convs want it so), and what backward saves then points into that copy, not into x.
        xg, rest = x.split([cg, channels - cg], dim=2)
        xg = xg.contiguous()
        halves = xg.view(batch, T, 2, half, height, width)
        gates = self.gates(xg).unsqueeze(3)  # (B, T, 2, 1, H, W): one gate plane per half
        gated = (gates * halves).view_as(xg)  # y = g * x
        # The first half's y comes from frame t + 1 (the reference's lshift), the second half's from t - 1
        # (its rshift): exactly temporal_shift with fold_div = 2 on the Cg (even) channels.
        shifted = temporal_shift(gated, fold_div=2)
        pooled_x, pooled_y = xg.mean((-2, -1), keepdim=True), gated.mean((-2, -1), keepdim=True)
        weights = self._fuse_weights(pooled_y, pooled_x - pooled_y)  # (B, T, Cg, 1, 1); pool(r) = pool(x - y)
        # x + s (fused - x) with fused = w shifted + (1 - w) r and r = x - y = (1 - g) x, regrouped so that
        # only three passes touch whole feature maps: x (1 - s w + (s w - s) g) + s w shifted.
        scale = self.scale.view(cg, 1, 1)
        mixed = weights * scale  # s w, (B, T, Cg, 1, 1)
        factor = torch.addcmul((1 - mixed).view(batch, T, 2, half, 1, 1), (mixed - scale).view(batch, T, 2, half, 1, 1),
                               gates)  # (B, T, 2, half, H, W); exactly 1 while the scale is zero
        out_g = torch.addcmul((halves * factor).view_as(xg), mixed, shifted)  # exactly xg while the scale is zero
        return torch.cat([out_g, rest], dim=2)

    def _fuse_weights(self, pooled_y: Tensor, pooled_r: Tensor) -> Tensor:
        """Per half, ``sigmoid(Conv2d_3x3([pool(y_shifted), pool(r)]))`` over the (channel, time) plane.

        The mean over ``H, W`` of the shifted ``y`` is the shifted mean of ``y``, so the shift runs on the
        pooled values; both halves' convolutions run as one grouped convolution.

        Shape:
            - pooled_y, pooled_r: ``(B, T, Cg, 1, 1)``; output: ``(B, T, Cg, 1, 1)``.
        """
        pooled = torch.cat([temporal_shift(pooled_y, fold_div=2), pooled_r], dim=3)  # (B, T, Cg, 2, 1)
        # (B, T, (g c), y|r, 1) -> (B, (g y|r), c, T): group g holds [pool(y_shifted), pool(r)] of half g.
        plane = rearrange(pooled, "b t (g c) s 1 -> b (g s) c t", g=2)
        weight = torch.cat([self.fuse_next.weight, self.fuse_previous.weight])
        bias = torch.cat([self.fuse_next.bias, self.fuse_previous.bias])
        weights = torch.sigmoid(F.conv2d(plane, weight, bias, padding=1, groups=2))  # (B, 2, c, T)
        return rearrange(weights, "b g c t -> b t (g c) 1 1")

    def extra_repr(self) -> str:
        return f"{self.channels}, fraction={self.fraction}, fused={self.fused}"

