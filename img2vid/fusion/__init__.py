"""Temporal fusion modules that mix features of neighbouring frames, and the name -> class table.

Every fusion module takes and returns a clip ``(B, T, C, H, W)`` and says, in its class attribute
``at``, whether :func:`~img2vid.temporalize.temporalize` puts it on a site's ``"input"`` or ``"output"``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from .gsf import GateShiftFuse
from .token_shift import GatedTokenShift, TokenShift, token_shift
from .tsm import TemporalShift, temporal_shift

__all__ = [
    "FUSIONS",
    "TOKEN_FUSIONS",
    "GateShiftFuse",
    "GatedTokenShift",
    "NoFusion",
    "TemporalShift",
    "TokenShift",
    "make_fusion",
    "temporal_shift",
    "token_shift",
]


class NoFusion(nn.Module):
    """No temporal fusion: frames are processed independently (the paper's "Augment" ablation).

    Shape:
        - Input: ``(B, T, C, H, W)``; output: the same tensor.
    """

    at: ClassVar[str] = "output"

    def forward(self, x: Tensor) -> Tensor:
        return x


FUSIONS: dict[str, type[nn.Module]] = {"gsf": GateShiftFuse, "none": NoFusion, "tsm": TemporalShift}
# The same names on a vision transformer, whose sites see channels-last tokens.
TOKEN_FUSIONS: dict[str, type[nn.Module]] = {"gsf": GatedTokenShift, "none": NoFusion, "tsm": TokenShift}


def make_fusion(name: str, channels: int | None = None, *, tokens: bool = False, **options: Any) -> nn.Module:
    """Build the fusion module called ``name`` (``"gsf"``, ``"none"`` or ``"tsm"``).

    Args:
        name: a key of :data:`FUSIONS`.
        channels: channels of the site, needed by ``"gsf"`` only.
        tokens: build the transformer variant (:data:`TOKEN_FUSIONS`), for channels-last tokens.
        options: keyword options of the class (``fold_div`` for TSM, ``fraction`` for GSF,
            ``keep_first`` for the token variants).

    Raises:
        ValueError: an unknown name (the message lists the choices), or GSF without ``channels``.
        TypeError: an option the class does not take.
    """
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; choose one of {sorted(FUSIONS)}")
    cls = (TOKEN_FUSIONS if tokens else FUSIONS)[name]
    if cls in (GateShiftFuse, GatedTokenShift):
        if channels is None:
            raise ValueError("fusion 'gsf' needs the site's channel count")
        return cls(channels, **options)
    if cls is NoFusion and options:
        raise TypeError(f"fusion 'none' takes no options, got {sorted(options)}")
    return cls(**options)
