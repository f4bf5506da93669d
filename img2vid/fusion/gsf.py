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

Two implementations of the same values: in eager execution on the CPU, a forward and backward
written by hand (:class:`_GateShiftFuseFunction`, a call 1.1-1.5x faster than the composite); on other
devices (not measured here), under ``torch.compile``/``torch.export``, with autocast or a converted
or hooked norm, the composite of autograd-tracked ops above (``GateShiftFuse._composite``), which
compilers fuse themselves. Tests hold both to the definition and to each other.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

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
        by_hand: ``True`` (default): in eager execution on the CPU, a forward and backward written by
            hand (faster, same values); ``False``: the composite of autograd-tracked ops, whose gradients are
            themselves differentiable (second derivatives, ``create_graph=True``), which the hand-written
            backward refuses.

    Shape:
        - Input: ``(B, T, C, H, W)``; output: the same.
    """

    at: ClassVar[str] = "output"  # where temporalize places it: on a site's output
    by_hand: bool = True  # a class default too, so modules pickled before it existed still load and run

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
        # channels-last-3d view, needs no tap sum but its forward + backward runs 1.6-2x slower: issue 13.)
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
        if not isinstance(x, Tensor) or x.ndim != 5 or x.shape[2] != self.channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"GateShiftFuse({self.channels}) expects (B, T, {self.channels}, H, W), got {shape}")
        if not self._hand_written(x):
            return self._composite(x)
        # nn.BatchNorm2d's bookkeeping, as its forward does it: which statistics, and the update factor.
        norm = self.norm
        factor = 0.0 if norm.momentum is None else norm.momentum
        if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
            norm.num_batches_tracked.add_(1)
            factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
        batch_stats = norm.training or (norm.running_mean is None and norm.running_var is None)
        tracked = not norm.training or norm.track_running_stats
        return _GateShiftFuseFunction.apply(
            x, norm.weight, norm.bias, self.gate.weight, self.gate_bias, self.fuse_next.weight, self.fuse_next.bias,
            self.fuse_previous.weight, self.fuse_previous.bias, self.scale, norm.running_mean if tracked else None,
            norm.running_var if tracked else None, batch_stats, factor, norm.eps)

    def _hand_written(self, x: Tensor) -> bool:
        """Whether the hand-written forward and backward (:class:`_GateShiftFuseFunction`) apply.

        They do unless ``by_hand`` is off, in eager execution on the CPU (where they were measured;
        other devices keep the composite) with a plain affine ``BatchNorm2d`` (no hooks on it) and one
        dtype throughout. Compilation and export (which fuse the composite themselves), ``torch.func``
        transforms, autocast (mixed dtypes), a converted or hooked norm and a one-value training batch
        (which ``BatchNorm2d`` refuses with its own error) take the composite path of autograd-tracked
        ops: same values.
        """
        norm = self.norm
        if not self.by_hand or torch.compiler.is_compiling() or type(norm) is not nn.BatchNorm2d or not norm.affine:
            return False
        if norm._forward_hooks or norm._forward_pre_hooks or torch.is_autocast_enabled(x.device.type):
            return False
        if torch._C._functorch.peek_interpreter_stack() is not None:  # inside torch.func.grad, vmap, ...
            return False
        if x.device.type != "cpu" or any(p.dtype != x.dtype or p.device != x.device for p in self.parameters()):
            return False
        batch, T, _, height, width = x.shape
        return batch * T * height * width > 1 or not norm.training

    def _composite(self, x: Tensor) -> Tensor:
        """GSF from autograd-tracked ops; the values of :class:`_GateShiftFuseFunction`."""
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
        by_hand = "" if self.by_hand else ", by_hand=False"
        return f"{self.channels}, fraction={self.fraction}, fused={self.fused}{by_hand}"


class _GateShiftFuseFunction(torch.autograd.Function):
    """GSF's forward and backward written out by hand (the values of ``GateShiftFuse._composite``).

    Why (issue 13, torch.profiler on a training step): the composite spends most of its GSF time on
    whole-map passes that the definition does not need (layout changes, the shifts' concatenations,
    one product per autograd node, zero-filled slices of their gradients, the ``expand``/``div`` of the
    means' gradients) and on the autograd graph of the small fusion convolution (about 1 ms per call
    at ResNet-18's smallest sites). Here:

    - the output ``x (1 - m) + y (m - s) + m shift(y)``, with ``y = g x`` and ``m = s w`` (the regrouped
      definition), is written straight into the output, the shift as two slice updates;
    - the gate's BatchNorm and ReLU write one channels-last map for its grouped convolution, and the
      temporal taps are summed (forward) and spread back (backward) in one pass each;
    - the fusion weights ``w = sigmoid(Conv2d([pool(y) shifted, pool(r)]))`` are built on their
      (channel, time) plane and differentiated by hand as well.

    Backward, with ``go`` the output's gradient on the fused channels:
    ``dm = sum_HW go (shift(y) + y - x)``, ``ds = sum_BT dm w - sum go y``, ``dw = s dm`` (then the
    sigmoid, the plane's convolution and the plane's adjoint give ``dpool_x``, ``dpool_y``),
    ``dy = go (m - s) + shift^T(m go) + dpool_y / HW``, ``dg = sum_half dy x``,
    ``dx = go (1 - m) + g dy + dpool_x / HW`` plus the gate's path: tanh, the taps' adjoint, the
    grouped convolution (``aten.convolution_backward``), ReLU and batch normalisation
    (``dx = k1 dnorm + k2 x + k3`` per channel). Differentiable once (``once_differentiable``).
    """

    @staticmethod
    def forward(ctx, x, norm_weight, norm_bias, gate_weight, gate_bias, next_weight, next_bias,
                previous_weight, previous_bias, scale, running_mean, running_var, batch_stats, factor, eps):
        batch, T, _, height, width = x.shape
        cg = scale.shape[0]
        half, frames_count = cg // 2, batch * T
        xg = x[:, :, :cg].contiguous()  # (B, T, Cg, H, W)
        frames = xg.view(frames_count, cg, height, width)
        # Gate: ReLU(BN(x)) written as one channels-last map, then the grouped 3x3 conv of every temporal tap.
        normed, mean, invstd = torch.native_batch_norm(frames, norm_weight, norm_bias, running_mean, running_var,
                                                       batch_stats, factor, eps)
        if not batch_stats:
            mean, invstd = running_mean.clone(), torch.rsqrt(running_var + eps)
        act = torch.clamp_min(normed, 0, out=torch.empty_like(frames, memory_format=torch.channels_last))
        taps = F.conv2d(act, gate_weight.contiguous(memory_format=torch.channels_last), padding=1, groups=2)
        # Conv3d: pre(t) = R_0(t - 1) + R_1(t) + R_2(t + 1), R_k the response to temporal tap k (channel 3 g + k).
        taps = taps.permute(0, 2, 3, 1).contiguous().view(batch, T, height, width, 2, 3)
        gates = x.new_empty(batch, T, 2, height, width)
        pre = gates.permute(0, 1, 3, 4, 2)  # (B, T, H, W, 2), a view of gates
        torch.add(taps[..., 1], gate_bias, out=pre)
        pre[:, 1:] += taps[:, :-1, ..., 0]
        pre[:, :-1] += taps[:, 1:, ..., 2]
        gates.tanh_()  # (B, T, 2, H, W)
        # Shift and fuse.
        y = (xg.view(batch, T, 2, half, height, width) * gates.unsqueeze(3)).view_as(xg)
        pooled_x, pooled_y = xg.mean((-2, -1)), y.mean((-2, -1))  # (B, T, Cg)
        # w = sigmoid(conv([pool(y) shifted, pool(r)])) per half on the (channel, time) plane, as _fuse_weights.
        plane = x.new_zeros(batch, 2, 2, half, T)  # (B, half g, [pool(y) shifted, pool(r)], c, T)
        pooled_y = pooled_y.view(batch, T, 2, half).permute(0, 2, 3, 1)  # (B, 2, c, T)
        plane[:, 0, 0, :, :-1] = pooled_y[:, 0, :, 1:]  # first half: from t + 1, zero at the end
        plane[:, 1, 0, :, 1:] = pooled_y[:, 1, :, :-1]  # second half: from t - 1
        torch.sub(pooled_x.view(batch, T, 2, half).permute(0, 2, 3, 1), pooled_y, out=plane[:, :, 1])
        plane = plane.view(batch, 4, half, T)
        fuse_weight = torch.cat([next_weight, previous_weight])
        weights = torch.sigmoid(F.conv2d(plane, fuse_weight, torch.cat([next_bias, previous_bias]), padding=1,
                                         groups=2))  # (B, 2, c, T)
        w = weights.permute(0, 3, 1, 2).reshape(batch, T, cg)
        m = scale * w  # (B, T, Cg)
        out = torch.empty_like(x)  # x's layout (contiguous, or channels-last frames)
        out[:, :, cg:] = x[:, :, cg:]
        out_g = out[:, :, :cg]
        torch.mul(xg, (1 - m)[..., None, None], out=out_g)
        out_g.addcmul_(y, (m - scale)[..., None, None])
        out_g[:, :-1, :half].addcmul_(y[:, 1:, :half], m[:, :-1, :half, None, None])  # first half: y(t + 1)
        out_g[:, 1:, half:].addcmul_(y[:, :-1, half:], m[:, 1:, half:, None, None])  # second half: y(t - 1)

        ctx.save_for_backward(xg, act, gates, y, mean, invstd, m, norm_weight, gate_weight, scale, plane, fuse_weight,
                              weights, w)
        ctx.batch_stats = batch_stats
        ctx.layout = out.stride()  # the input's gradient comes back in the same layout
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        xg, act, gates, y, mean, invstd, m, norm_weight, gate_weight, scale, plane, fuse_weight, weights, w = (
            ctx.saved_tensors)
        batch, T, _, height, width = grad.shape
        cg, half = xg.shape[2], xg.shape[2] // 2
        area = height * width
        go = grad[:, :, :cg]

        # dm = sum_HW go (shift(y) + y - x); the direct ds = -sum go y.
        go_y = _dot(go, y)
        dm = go_y - _dot(go, xg)
        dm[:, :-1, :half] += _dot(go[:, :-1, :half], y[:, 1:, :half])
        dm[:, 1:, half:] += _dot(go[:, 1:, half:], y[:, :-1, half:])
        # Through m = s w and w = sigmoid(conv(plane)), back to the pooled values (the plane's adjoint).
        dscale = (dm * w).sum((0, 1)) - go_y.sum((0, 1))
        dlogits = torch.ops.aten.sigmoid_backward((dm * scale).view(batch, T, 2, half).permute(0, 2, 3, 1), weights)
        dplane, dfuse_weight, dfuse_bias = torch.ops.aten.convolution_backward(
            dlogits, plane, fuse_weight, [2], [1, 1], [1, 1], [1, 1], False, [0, 0], 2, [True, True, True])
        dplane = dplane.view(batch, 2, 2, half, T)
        dpool_r = dplane[:, :, 1]  # (B, 2, c, T); pool(r) = pool(x) - pool(y)
        dpool_y = -dpool_r
        dpool_y[:, 0, :, 1:] += dplane[:, 0, 0, :, :-1]
        dpool_y[:, 1, :, :-1] += dplane[:, 1, 0, :, 1:]
        dpool_x = dpool_r.permute(0, 3, 1, 2).reshape(batch, T, cg)
        dpool_y = dpool_y.permute(0, 3, 1, 2).reshape(batch, T, cg)
        dfuse = (dfuse_weight[:1], dfuse_bias[:1], dfuse_weight[1:], dfuse_bias[1:])

        # dy = go (m - s) + shift^T(m go) + dpool_y / HW; dg = sum over each half's channels of dy x.
        dy = torch.addcmul((dpool_y / area)[..., None, None], go, (m - scale)[..., None, None])
        dy[:, 1:, :half].addcmul_(go[:, :-1, :half], m[:, :-1, :half, None, None])
        dy[:, :-1, half:].addcmul_(go[:, 1:, half:], m[:, 1:, half:, None, None])
        dgates = (dy * xg).view(batch, T, 2, half, height, width).sum(3)  # (B, T, 2, H, W)

        dx = grad.new_empty_strided(grad.shape, ctx.layout)
        dx[:, :, cg:] = grad[:, :, cg:]
        dxg = dx[:, :, :cg]
        torch.addcmul((dpool_x / area)[..., None, None], go, (1 - m)[..., None, None], out=dxg)
        dxg.unflatten(2, (2, half)).addcmul_(gates.unsqueeze(3), dy.view(batch, T, 2, half, height, width))

        # The gate: tanh, the temporal taps (the adjoint of their shifted sum), the grouped conv, ReLU.
        dpre = torch.ops.aten.tanh_backward(dgates, gates).permute(0, 1, 3, 4, 2)  # (B, T, H, W, 2)
        dgate_bias = dpre.sum((0, 1, 2, 3))
        dtaps = grad.new_empty(batch, T, height, width, 2, 3)
        dtaps[..., 1] = dpre
        dtaps[:, :-1, ..., 0] = dpre[:, 1:]
        dtaps[:, -1, ..., 0] = 0
        dtaps[:, 1:, ..., 2] = dpre[:, :-1]
        dtaps[:, 0, ..., 2] = 0
        dtaps = dtaps.view(batch * T, height, width, 6).permute(0, 3, 1, 2)  # (B*T, 6, H, W), channels last
        weight = gate_weight.contiguous(memory_format=torch.channels_last)
        dact, dgate_weight, _ = torch.ops.aten.convolution_backward(
            dtaps, act, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 2, [True, True, False])
        dnorm = torch.ops.aten.threshold_backward(dact, act, 0)  # (B*T, Cg, H, W), channels last

        # Batch normalisation: dx = k1 dnorm + k2 x + k3 per channel (k2 = k3 = 0 with running statistics).
        frames = xg.view(batch * T, cg, height, width)
        dnorm_sum = dnorm.sum((0, 2, 3))
        dnorm_xhat = invstd * ((dnorm * frames).sum((0, 2, 3)) - mean * dnorm_sum)  # sum dnorm (x - mean) invstd
        k1 = (norm_weight * invstd).view(cg, 1, 1)
        dxg.addcmul_(dnorm.view(batch, T, cg, height, width), k1)
        if ctx.batch_stats:
            count = frames.numel() // cg
            k2 = -k1 * (invstd * dnorm_xhat / count).view(cg, 1, 1)
            k3 = -k1 * (dnorm_sum / count).view(cg, 1, 1) - k2 * mean.view(cg, 1, 1)
            dxg.addcmul_(frames.view_as(xg), k2).add_(k3)
        return (dx, dnorm_xhat, dnorm_sum, dgate_weight.contiguous(), dgate_bias, *dfuse, dscale,
                None, None, None, None, None)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """``sum_HW a b`` per clip, frame and channel. Shape: ``(B, T, C, H, W)`` twice -> ``(B, T, C)``."""
    return (a * b).sum((-2, -1))
