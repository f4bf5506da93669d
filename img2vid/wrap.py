"""wrap: one call into existing training code. Images in, the 2D model's kind of output out.

Data flow (the paper's Fig. 2): image ``(B, C, H, W)`` -> clip ``(B, T, C, H, W)`` by
:class:`~img2vid.ImageToVideo` -> temporalized network -> per-frame outputs ``(B, T, ...)`` -> dense
outputs (float maps ``(B, T, K, h, w)`` or ``(B, T, h, w)`` at the input's aspect, any resolution)
warped back by :meth:`ImageToVideo.inverse` at their own resolution -> mean over frames.
Classification logits are simply averaged; segmentation maps are first "undone" (Sec. 3.2).

Mechanism: the sites are those of :func:`~img2vid.temporalize.temporalize`; the model itself gets a
forward pre-hook (images -> clip -> frames, opening the call) and a forward hook (closing it, undoing
and averaging), and state-dict hooks that save and restore the motion with the weights.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from .functional import Frames, Interpolation
from .genotype import Genotype, GenotypeLike
from .temporalize import close_call, insert_fusion, map_named_outputs, open_call
from .training_check import watch_fusion
from .video import ImageToVideo

__all__ = ["MOTION_KEY", "checkpoint_motion", "is_dense", "undo_and_average", "wrap"]

# The state-dict key (under the wrapped model's prefix) that holds its motion, in plain types.
MOTION_KEY = "_extra_state"
_MOTION_FIELDS = ("genotype", "T", "frames", "interpolation", "padding_mode")


# --------------------------------------------------------------------------------------------------
# Forward: the root's hooks
# --------------------------------------------------------------------------------------------------


def _images_in(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict]:
    """Forward pre-hook of a wrapped model: images -> clip -> frames, opening the call."""
    images = args[0] if args else None
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"a wrapped model takes images (B, C, H, W), got {shape}")
    if images.shape[0] < 1:
        raise ValueError(f"a wrapped model takes a batch of B >= 1 images, got shape {tuple(images.shape)}")
    video = model.image_to_video
    # Plain tensor code (no transform dispatch), so compile/export see it.
    clip = video._clip(images, video.interpolation)
    return (open_call(model, clip), *args[1:]), kwargs


def _undo_and_average_out(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Any:
    """Forward hook (``always_call``) of a wrapped model: close the call, undo dense outputs, average."""
    clips = close_call(model, out)
    if clips is None:
        return None
    size = tuple(args[0].shape[-2:])  # the frames the model's forward saw: the images' (H, W)
    return undo_and_average(clips, model.image_to_video, size)


def is_dense(out: Tensor) -> bool:
    """Whether a per-frame output ``(B, T, ...)`` is a dense map ``(B, T, K, h, w)``: float, ``h, w >= 2``."""
    return out.ndim == 5 and out.is_floating_point() and out.shape[-2] >= 2 and out.shape[-1] >= 2


def _same_aspect(h: int, w: int, size: tuple[int, int]) -> bool:
    """Whether an ``(h, w)`` map can be the ``(H, W)`` input at some stride (each side rounded)."""
    height, width = size
    return abs(h / w - height / width) <= 2 * (height / width) / min(h, w)


def undo_and_average(out: Any, video: ImageToVideo, size: tuple[int, int] | None = None) -> Any:
    """Average per-frame outputs ``(B, T, ...)`` over ``T``, warping dense ones back first.

    A dense output is warped back by :meth:`ImageToVideo.inverse` at its own resolution: the motion
    is in fractions of the size and in degrees, so it is the same motion at every resolution (an
    auxiliary head at half resolution is undone at half resolution). Layouts, per frame:

    - ``(K, h, w)`` float with ``h, w >= 2``: a map, undone (with ``size``, the input's ``(H, W)``, its
      ``(h, w)`` must have the input's aspect, else it is refused: a channels-last ``(h, w, K)`` map
      would be warped along the wrong axes);
    - ``(h, w)`` float with ``h, w >= 2`` at the input's aspect: a one-channel map (binary
      segmentation), undone; at another aspect (e.g. tokens ``(N, D)``) it is refused;
    - ``(K,)``, ``(K, 1, 1)`` and scalars: averaged as they are;
    - more than three axes per frame, or integer and boolean outputs: refused.

    Dicts are handled per key, tuples and lists (named tuples too) per item.

    Raises:
        ValueError: a layout that cannot be aligned (the message names it and the fix).
        TypeError: an integer or boolean output.
    """

    def undo(clip: Tensor, key: str) -> Tensor:
        if not clip.is_floating_point():
            raise TypeError(f"cannot average the model's {key} over frames: it is {clip.dtype}, not a float "
                            "tensor; return scores (logits) and take the arg-max after the wrapped model")
        frame = tuple(clip.shape[2:])
        spatial = len(frame) >= 2 and frame[-1] >= 2 and frame[-2] >= 2
        if not spatial:
            return clip.mean(1)
        aligned = size is None or _same_aspect(frame[-2], frame[-1], size)
        if len(frame) == 3 and aligned:
            return video.inverse(clip).mean(1)
        if len(frame) == 2 and size is not None and aligned:  # (B, T, h, w): one channel
            return video.inverse(clip.unsqueeze(2)).squeeze(2).mean(1)
        raise ValueError(
            f"wrap cannot align the model's {key} of shape {(clip.shape[0], *frame)} per image with the "
            f"{size} input: dense outputs are warped back per frame as (B, K, h, w) or (B, h, w) maps at the "
            "input's aspect; return dense maps as (B, K, h, w) (e.g. permute channels-last maps), or pool "
            "features before returning them"
        )

    return map_named_outputs(out, undo, "average over frames")


# --------------------------------------------------------------------------------------------------
# The motion in the state dict
# --------------------------------------------------------------------------------------------------


def _motion_state(video: ImageToVideo, fusion: str) -> dict[str, Any]:
    """The motion, in plain types (loads with ``torch.load(..., weights_only=True)``)."""
    return {"genotype": video.genotype.to_json(), "T": video.T, "frames": video.frames,
            "interpolation": video.interpolation, "padding_mode": video.padding_mode, "fusion": fusion}


def checkpoint_motion(state_dict: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The motion a wrapped checkpoint was made with, as :func:`wrap`'s keyword arguments, to rebuild
    the wrapped model without guessing: ``wrap(resnet18(), **checkpoint_motion(state))``.

    Args:
        state_dict: a wrapped model's ``state_dict()`` (e.g. from ``torch.load(path, weights_only=True)``).
        prefix: the wrapped model's prefix in ``state_dict``, when it is part of a larger model (``"net."``).

    Returns:
        ``{"genotype": Genotype, "T": int, "frames": str, "interpolation": str, "padding_mode": str}``,
        and ``"fusion"`` for checkpoints that record it.

    Raises:
        ValueError: ``state_dict`` holds no motion (a 2D or temporalized checkpoint) or a malformed one.
    """
    key = prefix + MOTION_KEY
    if key not in state_dict:
        raise ValueError(f"the state dict has no {key!r}: it is not a wrapped model's checkpoint (a 2D or "
                         "temporalized one has no motion; pass the genotype and T to wrap yourself)")
    state = state_dict[key]
    if not isinstance(state, dict) or not {"genotype", "T", "frames"} <= set(state):
        raise ValueError(f"a wrapped checkpoint's motion is a dict with genotype, T and frames, got {state!r}")
    motion = {name: state[name] for name in (*_MOTION_FIELDS, "fusion") if name in state}
    motion["genotype"] = Genotype.from_json(state["genotype"])
    return motion


def _save_motion(model: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """State-dict post-hook: the motion beside the weights."""
    state_dict[prefix + MOTION_KEY] = _motion_state(model.image_to_video, model.temporal_fusion)


def _load_motion(model: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: take the checkpoint's motion (a 2D checkpoint has none: keep ours).

    The key is consumed here, from the copy of the state dict that ``load_state_dict`` hands its
    hooks, so it is neither loaded as a weight nor reported as unexpected.
    """
    key = prefix + MOTION_KEY
    if key not in state_dict:
        return
    motion = checkpoint_motion({key: state_dict.pop(key)}, prefix)
    motion.pop("fusion", None)  # the fusion is in the weights' names; a mismatch shows as missing keys
    video = ImageToVideo(motion.pop("genotype"), motion.pop("T"), **motion)
    current = model.image_to_video
    if (video.genotype, video.T, video.frames) != (current.genotype, current.T, current.frames):
        warnings.warn(
            f"the checkpoint's motion (genotype '{video.genotype}', T={video.T}, frames={video.frames!r}) "
            f"replaces the model's (genotype '{current.genotype}', T={current.T}, frames={current.frames!r}); "
            "to build the model from the checkpoint: wrap(model, **img2vid.checkpoint_motion(state_dict))",
            UserWarning, stacklevel=4)
    _set_video(model, video)


def _set_video(model: nn.Module, video: ImageToVideo) -> None:
    # A plain attribute, not a child module: containers such as nn.Sequential run their children in
    # order, and the transform has no parameters or buffers to move or save.
    object.__setattr__(model, "image_to_video", video)


def wrap(
    model: nn.Module,
    genotype: GenotypeLike,
    T: int = 5,
    fusion: str = "gsf",
    *,
    frames: Frames = "centered",
    interpolation: Interpolation = "bilinear",
    padding_mode: str = "zeros",
    **fusion_options: Any,
) -> nn.Module:
    """Make a 2D model see each image as a clip, in place: the whole integration in one call.

    ``model`` is temporalized (its sites as by :func:`~img2vid.temporalize`, ``reduce=None``) and
    takes ``(B, C, H, W)`` images as before, still returns what it returned (logits, or a dict of
    dense maps for torchvision segmentation models), keeps its class, every attribute, parameter name
    and ``isinstance`` check, and loads 2D checkpoints with ``strict=False`` (only ``*.fusion.*``
    keys missing). Its ``state_dict`` records the motion (genotype, ``T``, frame mode, interpolation,
    padding, fusion) under ``"_extra_state"``; loading a wrapped checkpoint restores it, with a
    ``UserWarning`` when it differs from the model's (:func:`checkpoint_motion` reads it to rebuild
    the model). Dense outputs are warped back per frame at their own resolution before the mean over
    frames (see :func:`undo_and_average` for the layouts).

    With the ``identity`` genotype and GSF at initialisation, the wrapped model equals the 2D model on
    any batch in eval mode. In train mode its BatchNorm layers see ``T`` copies of each image:
    the same batch mean and (biased) variance, so the same outputs, but the running variance is
    updated with the unbiased factor of ``B*T*H*W`` samples instead of ``B*H*W``. With a real motion
    the frames differ, so batch statistics differ too.

    Build the optimizer after ``wrap``: the fusion parameters are new (a warning says so when an
    optimizer built before steps the model without them).

    Args:
        model: the 2D model.
        genotype: the motion, e.g. ``"translate_x:0.05,rotate:5"`` (see :class:`~img2vid.Genotype`).
        T: frames per clip.
        fusion: ``"gsf"``, ``"tsm"`` or ``"none"``.
        frames: ``"centered"`` (the middle frame is the image) or ``"forward"`` (the paper's Eq. 7).
        interpolation, padding_mode: of the clip's warp (see :class:`~img2vid.ImageToVideo`).
        fusion_options: passed to :func:`~img2vid.temporalize` (``where``, ``fold_div``, ``fraction``).

    Examples:
        >>> net = wrap(torchvision.models.resnet18(num_classes=10), "translate_x:0.05,rotate:5")
        >>> net(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    # validates genotype, T and frames first
    video = ImageToVideo(genotype, T, frames=frames, interpolation=interpolation, padding_mode=padding_mode)
    if "reduce" in fusion_options:
        raise TypeError("wrap always averages over frames; reduce= is for temporalize")
    if isinstance(model, nn.Module) and type(model).get_extra_state is not nn.Module.get_extra_state:
        raise TypeError(f"{type(model).__name__} keeps extra state of its own under '_extra_state', where wrap "
                        "saves the motion; wrap a module that holds it instead (e.g. nn.Sequential(model))")
    where = fusion_options.pop("where", None)
    insert_fusion(model, fusion, None, where, **fusion_options)
    _set_video(model, video)
    model.register_forward_pre_hook(_images_in, with_kwargs=True)
    model.register_forward_hook(_undo_and_average_out, with_kwargs=True, always_call=True)
    model.register_state_dict_post_hook(_save_motion)
    model.register_load_state_dict_pre_hook(_load_motion)
    watch_fusion(model)
    return model

