"""wrap: one call into existing training code. Images in, the 2D model's kind of output out.

Data flow (the paper's Fig. 2): image ``(B, C, H, W)`` -> clip ``(B, T, C, H, W)`` by
:class:`~img2vid.ImageToVideo` -> temporalized network -> per-frame outputs ``(B, T, ...)`` -> dense
outputs (spatial size equal to the input's) warped back by :meth:`ImageToVideo.inverse` -> mean over
frames. Classification logits are simply averaged; segmentation maps are first "undone" (Sec. 3.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from .functional import Frames
from .genotype import GenotypeLike
from .temporalize import _swap, _Swapped, temporalize
from .video import ImageToVideo

__all__ = ["Wrapped", "wrap"]


class Wrapped(_Swapped):
    """A wrapped model (mixed into the model's own class, over :class:`~img2vid.temporalize.Temporal`).

    Attributes:
        image_to_video: the :class:`~img2vid.ImageToVideo` that makes the clips (no parameters).

    Shape:
        - Input: ``(B, C, H, W)`` images, as the 2D model took.
        - Output: the 2D model's output; dense outputs ``(B, K, H, W)`` are warped back per frame
          before the mean over frames.
    """

    prefix = "Wrapped"
    image_to_video: ImageToVideo

    def forward(self, images: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(images, Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"a wrapped model takes images (B, C, H, W), got {shape}")
        video = self.image_to_video
        # Plain tensor code (no transform dispatch), so compile/export see it.
        clip = video._clip(images, video.interpolation)
        per_frame = super().forward(clip, *args, **kwargs)  # (B, T, ...) per output
        return undo_and_average(per_frame, video, images.shape[-2:])


def undo_and_average(out: Any, video: ImageToVideo, size: Any) -> Any:
    """Average per-frame outputs ``(B, T, ...)`` over ``T``, warping dense ones back first.

    A dense output is a float ``(B, T, K, H, W)`` whose ``(H, W)`` equals the input images' size.
    Dicts are handled per key, tuples and lists (named tuples too) per item.
    """
    if out is None:
        return None
    if isinstance(out, Tensor):
        if out.ndim == 5 and out.shape[-2:] == size and out.is_floating_point():
            out = video.inverse(out)
        return out.mean(1)
    if isinstance(out, Mapping):
        mapping: Any = type(out)
        return mapping((key, undo_and_average(value, video, size)) for key, value in out.items())
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return type(out)(*(undo_and_average(item, video, size) for item in out))
    if isinstance(out, (tuple, list)):
        return type(out)(undo_and_average(item, video, size) for item in out)
    raise TypeError(f"cannot average a model output of type {type(out).__name__} over frames")


def wrap(
    model: nn.Module,
    genotype: GenotypeLike,
    T: int = 5,
    fusion: str = "gsf",
    *,
    frames: Frames = "centered",
    **fusion_options: Any,
) -> nn.Module:
    """Make a 2D model see each image as a clip, in place: the whole integration in one call.

    ``model`` is temporalized (:func:`~img2vid.temporalize.temporalize`, ``reduce=None``) and its
    class becomes a subclass of its own (``ResNet`` -> ``WrappedResNet``): it still takes
    ``(B, C, H, W)`` images, still returns what it returned (logits, or a dict of dense maps for
    torchvision segmentation models), keeps every attribute, parameter name and ``isinstance``
    check, and loads 2D checkpoints with ``strict=False`` (only ``*.fusion.*`` keys missing).

    With the ``identity`` genotype and GSF at initialisation, the wrapped model equals the 2D model on
    any batch in eval mode. In train mode its BatchNorm layers see ``T`` copies of each image:
    the same batch mean and (biased) variance, so the same outputs, but the running variance is
    updated with the unbiased factor of ``B*T*H*W`` samples instead of ``B*H*W``. With a real motion
    the frames differ, so batch statistics differ too.

    Args:
        model: the 2D model.
        genotype: the motion, e.g. ``"translate_x:0.05,rotate:5"`` (see :class:`~img2vid.Genotype`).
        T: frames per clip.
        fusion: ``"gsf"``, ``"tsm"`` or ``"none"``.
        frames: ``"centered"`` (the middle frame is the image) or ``"forward"`` (the paper's Eq. 7).
        fusion_options: passed to :func:`~img2vid.temporalize.temporalize` (``where``,
            ``fold_div``, ``fraction``).

    Example:
        >>> net = wrap(torchvision.models.resnet18(num_classes=10), "translate_x:0.05,rotate:5")
        >>> net(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    video = ImageToVideo(genotype, T, frames=frames)  # validates genotype, T and frames first
    if "reduce" in fusion_options:
        raise TypeError("wrap always averages over frames; reduce= is for temporalize")
    temporalize(model, fusion, reduce=None, **fusion_options)
    # A plain attribute, not a child module: containers such as nn.Sequential run their children in
    # order, and the transform has no parameters or buffers to move or save.
    object.__setattr__(model, "image_to_video", video)
    _swap(model, Wrapped)
    return model
