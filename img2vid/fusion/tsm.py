"""Temporal Shift Module (Lin, Gan, Han, "TSM: Temporal Shift Module for Efficient Video
Understanding", ICCV 2019).

Definition (the reference ``ops/temporal_shift.py`` of mit-han-lab/temporal-shift-module): with
``fold = C // fold_div``, channels ``[0, fold)`` of frame ``t`` take frame ``t + 1``'s values (a shift
towards earlier frames), channels ``[fold, 2 fold)`` take frame ``t - 1``'s, frames past either end
read zeros, and the remaining channels are left as they are. It has no parameters.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

__all__ = ["TemporalShift", "temporal_shift"]


def _check_fold_div(fold_div: int) -> None:
    if isinstance(fold_div, bool) or not isinstance(fold_div, int) or fold_div < 2:
        raise ValueError(f"fold_div must be an integer >= 2, got {fold_div!r}")


def temporal_shift(x: Tensor, fold_div: int = 8) -> Tensor:
    """Shift a fraction of the channels one frame along time, zeros past the ends.

    Channels ``[0, C/fold_div)`` of frame ``t`` take frame ``t + 1``'s values, channels
    ``[C/fold_div, 2C/fold_div)`` take frame ``t - 1``'s, the rest are unchanged. With ``T = 1`` the
    shifted channels are zero; with ``C < fold_div`` nothing moves (the output is a copy of ``x``).

    The output is a fresh tensor, even when nothing moves.

    Shape:
        - x: ``(B, T, C, H, W)``; output: the same.
    """
    if not isinstance(x, Tensor) or x.ndim != 5:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"temporal_shift expects a clip (B, T, C, H, W), got shape {shape}")
    _check_fold_div(fold_div)
    fold = x.shape[2] // fold_div
    # Two fold-sized zero frames and one concatenation: every output element is written once, by
    # ops that compile and export cleanly (Inductor on CPU left part of an empty_like + slice-assign
    # version uninitialised inside a model, and miscompiles F.pad of a time slice; see the docs).
    zeros = x.new_zeros(x.shape[0], min(1, x.shape[1]), fold, *x.shape[3:])
    from_next = torch.cat([x[:, 1:, :fold], zeros], dim=1)
    from_previous = torch.cat([zeros, x[:, :-1, fold : 2 * fold]], dim=1)
    return torch.cat([from_next, from_previous, x[:, :, 2 * fold :]], dim=2)


class TemporalShift(nn.Module):
    """Temporal Shift Module: a thin module over :func:`temporal_shift`.

    Inserted by :func:`~img2vid.temporalize.temporalize` on the input of a residual branch's first
    convolution (the reference's ``"blockres"`` placement), so the identity path stays unshifted.

    Args:
        fold_div: ``1 / fold_div`` of the channels moves each way (default ``8``: a quarter moves).

    Shape:
        - Input: ``(B, T, C, H, W)``; output: the same.
    """

    at: ClassVar[str] = "input"  # where temporalize places it: on a site's input

    def __init__(self, fold_div: int = 8) -> None:
        super().__init__()
        _check_fold_div(fold_div)
        self.fold_div = fold_div

    def forward(self, x: Tensor) -> Tensor:
        return temporal_shift(x, self.fold_div)

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}"
