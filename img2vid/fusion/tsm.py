"""Temporal Shift Module (Lin, Gan, Han, "TSM: Temporal Shift Module for Efficient Video
Understanding", ICCV 2019).

Definition (the reference ``ops/temporal_shift.py`` of mit-han-lab/temporal-shift-module): with
``fold = C // fold_div``, channels ``[0, fold)`` of frame ``t`` take frame ``t + 1``'s values (a shift
towards earlier frames), channels ``[fold, 2 fold)`` take frame ``t - 1``'s, frames past either end
read zeros, and the remaining channels are left as they are. It has no parameters. The function is
:func:`img2vid.functional.temporal_shift`, shared with GSF's shift.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from ..functional import _check_fold_div, temporal_shift

__all__ = ["TemporalShift", "temporal_shift"]


class TemporalShift(nn.Module):
    """Temporal Shift Module: a thin module over :func:`~img2vid.functional.temporal_shift`.

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
