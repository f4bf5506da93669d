"""Temporal Shift Module (Lin, Gan, Han, ICCV 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["temporal_shift"]


def temporal_shift(x: Tensor, fold_div: int = 8) -> Tensor:
    """Shift a fraction of the channels one frame along time, zeros past the ends.

    Channels ``[0, C/fold_div)`` of frame ``t`` take frame ``t + 1``'s values, channels
    ``[C/fold_div, 2C/fold_div)`` take frame ``t - 1``'s, the rest are unchanged.

    Shape:
        - x: ``(B, T, C, H, W)``; output: the same.
    """
    if x.ndim != 5:
        raise ValueError(f"temporal_shift expects (B, T, C, H, W), got shape {tuple(x.shape)}")
    if isinstance(fold_div, bool) or not isinstance(fold_div, int) or fold_div < 2:
        raise ValueError(f"fold_div must be an integer >= 2, got {fold_div!r}")
    fold = x.shape[2] // fold_div
    if fold == 0:
        return x
    # F.pad counts pairs from the last dimension: (W, W, H, H, C, C, T_before, T_after).
    from_next = F.pad(x[:, 1:, :fold], (0, 0, 0, 0, 0, 0, 0, 1))
    from_previous = F.pad(x[:, :-1, fold : 2 * fold], (0, 0, 0, 0, 0, 0, 1, 0))
    return torch.cat([from_next, from_previous, x[:, :, 2 * fold :]], dim=2)
