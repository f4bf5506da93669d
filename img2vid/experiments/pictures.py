"""Pictures of a run: clips as frame strips, and the trained networks' empirical receptive fields."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..rf import empirical_rf, rf_spread, save_rf_figure
from ..temporalize import temporalize
from ..video import ImageToVideo
from .networks import features

__all__ = ["clip_strip", "save_rf_pictures"]


def clip_strip(clips: Tensor, *, zoom: int = 4, gap: int = 2) -> Any:
    """Clips as a PIL image: one row per clip, frames left to right, ``gap`` grey pixels between.

    Shape:
        - clips: ``(T, C, H, W)`` or ``(N, T, C, H, W)``, float in ``[0, 1]`` or uint8; ``C`` is 1 or 3.
    """
    import PIL.Image

    if not isinstance(clips, Tensor) or clips.ndim not in (4, 5):
        raise ValueError(f"clips must be (T, C, H, W) or (N, T, C, H, W), got {getattr(clips, 'shape', clips)!r}")
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


def save_rf_pictures(models: dict[str, nn.Module], fresh: nn.Module, image_shape: tuple[int, int, int],
                     path: Path, *, samples: int) -> dict[str, list[float]]:
    """ERFs of trained models' last feature maps (Sec. 3.2), drawn side by side into ``path``.

    Args:
        models: arm name -> trained model (2D, or wrapped: then the trained weights run in a per-frame
            temporalized feature extractor fed the arm's clips).
        fresh: an untrained copy of the 2D network (the skeleton the weights are loaded into).
        image_shape: ``(C, H, W)`` of the inputs.

    Returns:
        Each arm's ERF spread ``(sigma_y, sigma_x)`` in pixels.
    """
    device = next(fresh.parameters()).device
    erfs: dict[str, Tensor] = {}
    for arm, model in models.items():
        video = getattr(model, "image_to_video", None)
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
        if isinstance(video, ImageToVideo):
            extractor = temporalize(features(copy.deepcopy(fresh)), model.temporal_fusion, reduce=None)
            missing, _ = extractor.load_state_dict(state, strict=False)  # the wrapped model's extra state aside
            if missing:
                raise RuntimeError(f"the feature extractor of arm {arm!r} misses trained weights: {missing}")
            erfs[arm] = empirical_rf(extractor.to(device), image_shape, video=video, samples=samples)
        else:
            erfs[arm] = empirical_rf(features(model), image_shape, samples=samples)
    save_rf_figure({arm: erf.cpu() for arm, erf in erfs.items()}, path,
                   title="Empirical receptive field of the central unit (trained, seed 0; Sec. 3.2)")
    return {arm: list(rf_spread(erf)) for arm, erf in erfs.items()}
