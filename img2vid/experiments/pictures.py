"""Pictures of a run: the trained networks' empirical receptive fields.

Clips are drawn by :func:`img2vid.pictures.clip_strip`, the same function ``preview`` uses.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import Tensor, nn

from ..rf import empirical_rf, rf_spread, save_rf_figure
from ..temporalize import temporalize
from ..video import ImageToVideo
from .networks import features

__all__ = ["save_rf_pictures"]


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
