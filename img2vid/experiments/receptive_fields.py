"""Each trained arm's receptive field, measured the same way for every arm (Sec. 3.2, Eq. 8).

* Theoretical: Eq. 8 along the network's longest path (:func:`~img2vid.experiments.networks.receptive_field`).
* Empirical: the gradient of the central unit of the last feature map with respect to the input
  image (:func:`~img2vid.rf.empirical_rf`), averaged over validation images (never test images), as a
  distribution over pixels, summarised by :func:`~img2vid.rf.erf_stats`: the radii holding 50 % and
  90 % of the gradient mass and the anisotropy.

A video arm is measured twice, both times on the original image, the gradient flowing back through the
clip: ``"frame"``, the central unit of the middle frame (the unmoved image); ``"clip"``, the central unit
of the frame average, what the pooled classifier reads. A 2D arm's two views are the same map.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from ..rf import empirical_rf, erf_stats
from ..temporalize import temporal_call
from ..video import ImageToVideo
from .networks import features, receptive_field

__all__ = ["METRICS", "VIEWS", "arm_erfs", "arm_rf"]

#: The two views of an arm's empirical receptive field.
VIEWS = ("frame", "clip")
#: The numbers kept per view.
METRICS = ("r50", "r90", "anisotropy")


class _ClipFeatures(nn.Module):
    """A wrapped model's last feature map for a clip, per frame ``(B, T, K, h, w)`` or the frame mean
    ``(B, K, h, w)``: the model's own modules before pooling, run inside one call of the model
    (:func:`~img2vid.temporalize.temporal_call`), so every fusion site sees the clip's ``T``."""

    def __init__(self, model: nn.Module, mean: bool) -> None:
        super().__init__()
        self.model, self.body, self.mean = model, features(model), mean

    def forward(self, clip: Tensor) -> Tensor:
        batch, T = clip.shape[:2]
        with temporal_call(self.model, batch, T):
            out = self.body(clip.flatten(0, 1)).unflatten(0, (batch, T))
        return out.mean(dim=1) if self.mean else out


def arm_erfs(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """The empirical receptive field of a trained arm's model, per view (:data:`VIEWS`), each a
    distribution over the image's pixels (sums to 1).

    Args:
        model: a benchmark network, or one wrapped by :func:`~img2vid.wrap` (a video arm).
        images: the images to average over (validation images).

    Shape:
        - images: ``(N, C, H, W)``; each map: ``(H, W)``.
    """
    video = getattr(model, "image_to_video", None)
    if isinstance(video, ImageToVideo):
        maps = {view: empirical_rf(_ClipFeatures(model, mean=view == "clip"), images, video=video, normalize=None)
                for view in VIEWS}
    else:
        maps = dict.fromkeys(VIEWS, empirical_rf(features(model), images, normalize=None))
    # A network whose central unit is dead (every ReLU on its paths off) has no ERF: an all-zero map.
    return {view: erf / erf.sum() if erf.sum() > 0 else erf for view, erf in maps.items()}


def arm_rf(model: nn.Module, images: Tensor) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """A trained arm's receptive-field numbers and maps.

    Returns:
        ``({"theoretical": [h, w], "frame": {metric: value}, "clip": {...}}, {view: map})``, the metrics
        of :data:`METRICS` (pixels; anisotropy a ratio >= 1); NaN where the central unit is dead (its
        gradient zero everywhere, the map all zeros).
    """
    maps = arm_erfs(model, images)
    numbers: dict[str, Any] = {"theoretical": list(receptive_field(model))}
    for view, erf in maps.items():
        stats = erf_stats(erf) if erf.sum() > 0 else dict.fromkeys(METRICS, math.nan)
        numbers[view] = {metric: stats[metric] for metric in METRICS}
    return numbers, maps
