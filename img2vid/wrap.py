"""wrap: one call into existing training code. Images in, the 2D model's kind of output out.

Data flow (the paper's Fig. 2): image ``(B, C, H, W)`` -> clip ``(B, T, C, H, W)`` by
:class:`~img2vid.ImageToVideo` -> temporalized network -> per-frame outputs ``(B, T, ...)`` -> dense
outputs (float ``(B, T, K, h, w)``, ``h, w >= 2``, at any resolution) warped back by
:meth:`ImageToVideo.inverse` at their own resolution -> mean over frames. Classification logits are
simply averaged; segmentation maps are first "undone" (Sec. 3.2).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn.modules.module import _EXTRA_STATE_KEY_SUFFIX as _EXTRA_STATE

from .functional import Frames
from .genotype import Genotype, GenotypeLike
from .temporalize import Mixin, map_outputs, mix_in, temporalize
from .video import ImageToVideo

__all__ = ["Wrapped", "wrap"]


class Wrapped(Mixin):
    """A wrapped model (mixed into the model's own class, over :class:`~img2vid.temporalize.Temporal`).

    Attributes:
        image_to_video: the :class:`~img2vid.ImageToVideo` that makes the clips (no parameters).

    The motion is saved with the weights: ``state_dict()`` holds it as the extra state
    ``"_extra_state"`` (genotype JSON, ``T``, frame mode, interpolation, padding mode), and loading
    a wrapped checkpoint restores it. A 2D checkpoint has none and keeps the current motion
    (with ``strict=False``, as for :func:`~img2vid.temporalize.temporalize`).

    Shape:
        - Input: ``(B, C, H, W)`` images, as the 2D model took.
        - Output: the 2D model's output; dense outputs ``(B, K, h, w)``, at the input's resolution or
          another, are warped back per frame at their own resolution before the mean over frames.
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
        return undo_and_average(per_frame, video)

    def get_extra_state(self) -> dict[str, Any]:
        """The motion, in plain types (loads with ``torch.load(..., weights_only=True)``)."""
        video = self.image_to_video
        return {"genotype": video.genotype.to_json(), "T": video.T, "frames": video.frames,
                "interpolation": video.interpolation, "padding_mode": video.padding_mode}

    def set_extra_state(self, state: Any) -> None:
        """Restore the motion saved by :meth:`get_extra_state`."""
        if not isinstance(state, dict) or not {"genotype", "T", "frames"} <= set(state):
            raise ValueError(f"a wrapped checkpoint's motion is a dict with genotype, T and frames, got {state!r}")
        options = {key: state[key] for key in ("interpolation", "padding_mode") if key in state}
        video = ImageToVideo(Genotype.from_json(state["genotype"]), state["T"], frames=state["frames"], **options)
        object.__setattr__(self, "image_to_video", video)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        missing_keys = args[2]  # (local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        super()._load_from_state_dict(state_dict, prefix, *args)
        key = prefix + _EXTRA_STATE
        if key not in state_dict and key in missing_keys:  # a 2D checkpoint: keep the current motion
            missing_keys.remove(key)


def is_dense(out: Tensor) -> bool:
    """Whether a per-frame output ``(B, T, ...)`` is a dense map ``(B, T, K, h, w)``: float, ``h, w >= 2``."""
    return out.ndim == 5 and out.is_floating_point() and out.shape[-2] >= 2 and out.shape[-1] >= 2


def undo_and_average(out: Any, video: ImageToVideo) -> Any:
    """Average per-frame outputs ``(B, T, ...)`` over ``T``, warping dense ones back first.

    A dense output (:func:`is_dense`) is warped back by :meth:`ImageToVideo.inverse` at its own
    resolution: the motion is in fractions of the size and in degrees, so it is the same motion at
    every resolution (an auxiliary head at half resolution is undone at half resolution). Dicts are
    handled per key, tuples and lists (named tuples too) per item.
    """

    def undo(frames: Tensor) -> Tensor:
        return (video.inverse(frames) if is_dense(frames) else frames).mean(1)

    return map_outputs(out, undo, "average over frames")


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
    check, and loads 2D checkpoints with ``strict=False`` (only ``*.fusion.*`` keys missing). Its
    ``state_dict`` records the motion (genotype, ``T``, frame mode) as extra state, restored on load.
    Dense outputs (float ``(B, K, h, w)`` per frame, ``h, w >= 2``, at any resolution) are warped back
    per frame at their own resolution before the mean over frames.

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
    mix_in(model, Wrapped)
    return model
