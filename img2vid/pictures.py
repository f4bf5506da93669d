"""Pictures for people: clips drawn as strips of frames.

:func:`clip_strip` is what ``python -m img2vid preview`` saves, and what the benchmark draws into
``clips.png``. Receptive-field heatmaps are drawn by :func:`img2vid.rf.save_rf_figure`. PIL, a
dependency of torchvision, is imported only when a picture is drawn.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["clip_strip"]


def clip_strip(clips: Tensor, *, zoom: int = 4, gap: int = 2) -> Any:
    """Clips as a PIL image: one row per clip, frames left to right, ``gap`` grey pixels between.

    Args:
        clips: one clip or a batch of clips, e.g. the output of :class:`~img2vid.ImageToVideo`.
        zoom: each pixel is drawn as a ``zoom x zoom`` square (nearest neighbour), ``>= 1``.
        gap: grey pixels around and between frames, ``>= 0``.

    Returns:
        An RGB ``PIL.Image.Image``; save it with ``.save(path)`` (the suffix picks the format).

    Shape:
        - clips: ``(T, C, H, W)`` or ``(N, T, C, H, W)``, float in ``[0, 1]`` (values outside are
          clipped) or uint8; ``C`` is 1 or 3.
        - Output: ``N * H * zoom + (N + 1) * gap`` pixels high and ``T * W * zoom + (T + 1) * gap`` wide.

    Examples:
        >>> clip = ImageToVideo("translate_x:0.1", T=5)(torch.rand(3, 32, 32))
        >>> clip_strip(clip, zoom=2).save("clip.png")
    """
    import PIL.Image

    if not isinstance(clips, Tensor) or clips.ndim not in (4, 5):
        raise ValueError(f"clips must be (T, C, H, W) or (N, T, C, H, W), got {getattr(clips, 'shape', clips)!r}")
    for name, value, low in (("zoom", zoom, 1), ("gap", gap, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if clips.ndim == 4:
        clips = clips[None]
    n, t, c, h, w = clips.shape
    if c not in (1, 3):
        raise ValueError(f"clips need 1 or 3 channels to be drawn, got {c}")
    frames = clips.detach().cpu()
    frames = frames.float() / 255 if frames.dtype == torch.uint8 else frames.float()
    frames = frames.clamp(0, 1).expand(n, t, 3, h, w)
    frames = frames.repeat_interleave(zoom, dim=-2).repeat_interleave(zoom, dim=-1)
    hz, wz = h * zoom, w * zoom
    canvas = torch.full((3, n * hz + (n + 1) * gap, t * wz + (t + 1) * gap), 0.5)
    for i in range(n):
        for j in range(t):
            top, left = gap + i * (hz + gap), gap + j * (wz + gap)
            canvas[:, top:top + hz, left:left + wz] = frames[i, j]
    array = (canvas.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    return PIL.Image.fromarray(array)
