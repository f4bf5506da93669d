"""Token shift: the temporal shift of TSM applied to a transformer's tokens, and its gated variant.

A vision transformer keeps its features channels-last: token sequences ``(N, D)`` (ViT, DeiT) or token
grids ``(H, W, D)`` (Swin). Per frame of a clip, the shift is TSM's definition (Lin, Gan, Han, ICCV
2019) on the token channels ``D``: with ``fold = D // fold_div``, channels ``[0, fold)`` of every token
of frame ``t`` take frame ``t + 1``'s values, channels ``[fold, 2 fold)`` take frame ``t - 1``'s, frames
past either end read zeros, and the other channels are unchanged. The same token position is read in
the neighbouring frame (the tokens of a clip's frames share positions, as TSM's pixels do).

Where :func:`~img2vid.temporalize.temporalize` puts it: on the input of the norm before each block's
attention (``ln_1``/``norm1``), that is on the attention branch only; the block's identity path stays
unshifted. This is TSM's "residual shift" (its ``blockres``, which TSM found better than shifting in
place) carried over to the transformer block, whose attention is where tokens mix as a CNN block's
first conv mixes pixels. Token Shift Transformer (Zhang, Hao, Ngo, ACM MM 2021) shifts before the
attention too, but in place (the identity path included), before both the attention and the MLP,
and only the class token; shifting every token in place would overwrite part of every pretrained
token twice per block, so the residual placement is kept here, once per block.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from ..functional import temporal_shift
from .gsf import fused_channels

__all__ = ["GatedTokenShift", "TokenShift", "token_shift"]


def _check_options(fold_div: int, keep_first: int) -> None:
    if isinstance(fold_div, bool) or not isinstance(fold_div, int) or fold_div < 2:
        raise ValueError(f"fold_div must be an integer >= 2, got {fold_div!r}")
    if isinstance(keep_first, bool) or not isinstance(keep_first, int) or keep_first < 0:
        raise ValueError(f"keep_first must be an integer >= 0, got {keep_first!r}")


def _check_tokens(x: Tensor, keep_first: int, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim < 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} expects tokens (B, T, ..., D), got shape {shape}")
    if keep_first and x.ndim != 4:
        raise ValueError(f"keep_first applies to token sequences (B, T, N, D), got shape {tuple(x.shape)}")


def token_shift(x: Tensor, fold_div: int = 8, keep_first: int = 0) -> Tensor:
    """Shift a fraction of the token channels one frame along time, zeros past the ends.

    Channels ``[0, D/fold_div)`` of frame ``t`` take frame ``t + 1``'s values, channels
    ``[D/fold_div, 2D/fold_div)`` take frame ``t - 1``'s, the rest are unchanged (TSM's definition,
    channels last). ``keep_first`` tokens at the start of a sequence (a class token, register tokens)
    are left unshifted.

    Shape:
        - x: ``(B, T, N, D)`` token sequences or ``(B, T, H, W, D)`` token grids; output: the same.
    """
    _check_options(fold_div, keep_first)
    _check_tokens(x, keep_first, "token_shift")
    out = temporal_shift(x, fold_div, channel_dim=-1)
    if keep_first:
        out = torch.cat([x[:, :, :keep_first], out[:, :, keep_first:]], dim=2)
    return out


class TokenShift(nn.Module):
    """Token shift: a thin module over :func:`token_shift`. No parameters.

    Args:
        fold_div: ``1 / fold_div`` of the channels moves each way (default ``8``: a quarter moves).
        keep_first: tokens at the start of each sequence left unshifted (``0``: every token shifts).

    Shape:
        - Input: ``(B, T, N, D)`` or ``(B, T, H, W, D)``; output: the same.
    """

    at: ClassVar[str] = "input"  # where temporalize places it: on a site's input

    def __init__(self, fold_div: int = 8, keep_first: int = 0) -> None:
        super().__init__()
        _check_options(fold_div, keep_first)
        self.fold_div = fold_div
        self.keep_first = keep_first

    def forward(self, x: Tensor) -> Tensor:
        return token_shift(x, self.fold_div, self.keep_first)

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}" + (f", keep_first={self.keep_first}" if self.keep_first else "")


class GatedTokenShift(nn.Module):
    """Gate-Shift-Fuse's gated shift on token channels, the identity at initialisation.

    What it computes, on the first ``Cg`` channels of each token (``Cg`` as :class:`GateShiftFuse`
    chooses it: ``fraction`` of ``D``, made even; the other channels pass through), for the two halves
    ``x_1`` (first ``Cg/2`` channels) and ``x_2`` (next ``Cg/2``):

    1. Gate, per token and half: ``g_k = tanh(w_k · x_k + b_k)``, a scalar from that half's channels
       (GSF's spatio-temporal gate conv becomes a per-token linear map: tokens have no pixel grid
       to convolve in a ViT).
    2. Shift: ``y_k = g_k x_k``; ``y_1`` is taken from frame ``t + 1``, ``y_2`` from frame ``t - 1``
       (zeros past the ends), as GSF shifts its two gated halves; ``r_k = x_k - y_k`` stays.
    3. Fuse: ``fused_k = shift(y_k) + r_k``, and the output is
       ``x_k + scale_k ⊙ (fused_k - x_k) = x_k + scale_k ⊙ (shift(y_k) - y_k)`` with one ``scale`` per
       fused channel, initialised to zero, so the module is exactly the identity at initialisation and
       a pretrained transformer keeps its frame-averaged outputs at step 0. GSF's fusion weights
       (a conv over spatially pooled features) are left out: pooling over tokens would mix the class
       token with the patches.

    Parameters: ``Cg + 2`` (gates) and ``Cg`` (scale) per site.

    Args:
        channels: token channels ``D``.
        fraction: the fraction of channels gated and shifted (default ``0.25``, as GSF).
        keep_first: tokens at the start of each sequence left unshifted.

    Shape:
        - Input: ``(B, T, N, D)`` or ``(B, T, H, W, D)``; output: the same.
    """

    at: ClassVar[str] = "input"

    def __init__(self, channels: int, fraction: float = 0.25, keep_first: int = 0) -> None:
        super().__init__()
        _check_options(2, keep_first)
        self.channels = channels
        self.fraction = fraction
        self.keep_first = keep_first
        self.fused = fused_channels(channels, fraction)
        half = self.fused // 2
        self.gate_next = nn.Linear(half, 1)  # the gate of the half taken from frame t + 1
        self.gate_previous = nn.Linear(half, 1)  # the gate of the half taken from frame t - 1
        self.scale = nn.Parameter(torch.zeros(self.fused))
        self._half = half

    def forward(self, x: Tensor) -> Tensor:
        _check_tokens(x, self.keep_first, "GatedTokenShift")
        if x.shape[-1] != self.channels:
            raise ValueError(f"GatedTokenShift({self.channels}) expects tokens (B, T, ..., {self.channels}), "
                             f"got shape {tuple(x.shape)}")
        half, cg = self._half, self.fused
        first, second = x[..., :half], x[..., half:cg]
        gated = torch.cat([torch.tanh(self.gate_next(first)) * first,
                           torch.tanh(self.gate_previous(second)) * second], dim=-1)  # y
        delta = temporal_shift(gated, 2, channel_dim=-1) - gated  # shift(y) - y: y_1 from t + 1, y_2 from t - 1
        if self.keep_first:
            delta = torch.cat([torch.zeros_like(delta[:, :, : self.keep_first]), delta[:, :, self.keep_first :]], 2)
        return torch.cat([x[..., :cg] + self.scale * delta, x[..., cg:]], dim=-1)

    def extra_repr(self) -> str:
        keep = f", keep_first={self.keep_first}" if self.keep_first else ""
        return f"{self.channels}, fraction={self.fraction}, fused={self.fused}{keep}"
