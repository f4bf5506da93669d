"""Stateless tensor functions: compose a genotype's motion, raise it to each frame's power, warp once.

One public kernel per input kind, as torchvision's ``affine_image`` / ``affine_mask`` /
``affine_bounding_boxes`` / ``affine_keypoints``: :func:`image_to_video_image`,
:func:`image_to_video_mask`, :func:`image_to_video_bounding_boxes`, :func:`image_to_video_keypoints`;
:func:`image_to_video` dispatches to them by the input's type, as ``ImageToVideo`` does.

Convention:
    Matrices are ``3 x 3`` in pixel coordinates: ``x`` right, ``y`` down, origin at the centre of the
    top-left pixel. A matrix ``M`` moves the content at ``(x, y)`` to ``M @ (x, y, 1)``, so the warped
    image is ``out(p) = in(M^-1 p)``, sampled at pixel centres exactly as torchvision's ``affine``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Union

import PIL.Image
import torch
import torch.nn.functional as F
from einops import rearrange
from kornia.geometry.conversions import normal_transform_pixel
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .genotype import Genotype, GenotypeLike, as_genotype
from .ops import OPS

__all__ = [
    "compose",
    "frame_powers",
    "image_to_video",
    "image_to_video_bounding_boxes",
    "image_to_video_image",
    "image_to_video_keypoints",
    "image_to_video_mask",
    "matrix_powers",
    "temporal_shift",
    "video_grid",
    "video_matrices",
    "video_to_image",
    "warp",
]

Frames = Literal["centered", "forward"]
Interpolation = Union[str, InterpolationMode]
_INTERPOLATIONS = {"bilinear": "bilinear", "nearest": "nearest"}
_PADDINGS = ("zeros", "border", "reflection")


def frame_powers(T: int, frames: Frames = "centered") -> list[int]:
    """The power of the motion matrix that makes each frame.

    ``"centered"``: ``-(T // 2), ..., T - 1 - T // 2``, so the middle frame is the image itself.
    ``"forward"``: ``1, ..., T``, the paper's Eq. 7, ``V(t, x, y) = I(x, y - t δy)``.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"expected an integer T >= 1, got {T!r}")
    if frames == "centered":
        return list(range(-(T // 2), T - T // 2))
    if frames == "forward":
        return list(range(1, T + 1))
    raise ValueError(f"frames must be one of ['centered', 'forward'], got {frames!r}")


def compose(
    genotype: GenotypeLike,
    height: int,
    width: int,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The forward matrix of a genotype's affine steps, ``M = M_n ... M_2 M_1`` (step 1 acts first).

    Pixel steps contribute nothing here. Magnitudes given as tensors keep their gradient.

    Shape:
        - Output: ``(3, 3)``.
    """
    genotype = as_genotype(genotype)
    dtype = dtype or torch.get_default_dtype()
    matrix = torch.eye(3, dtype=dtype, device=device)
    for name, magnitude in genotype:
        op = OPS[name]
        if op.kind == "affine" and op.takes_magnitude:
            # Build each step in the working dtype and device, so float64 clips get float64 geometry.
            if isinstance(magnitude, Tensor):
                m = magnitude.to(dtype=dtype, device=device)
            else:
                m = torch.tensor(magnitude, dtype=dtype, device=device)
            matrix = op.matrix(m, height, width) @ matrix
    return matrix


def matrix_powers(matrix: Tensor, powers: Sequence[int]) -> Tensor:
    """``M^p`` for each power; negative powers are powers of ``M^-1``. Differentiable in ``M``.

    Shape:
        - matrix: ``(*, 3, 3)``; output: ``(*, len(powers), 3, 3)``.
    """
    backward = torch.linalg.inv(matrix) if any(p < 0 for p in powers) else matrix
    # A handful of small products; the cost is nothing next to one warp.
    return torch.stack([torch.linalg.matrix_power(matrix if p >= 0 else backward, abs(p)) for p in powers], dim=-3)


def video_matrices(
    genotype: GenotypeLike,
    T: int,
    height: int,
    width: int,
    *,
    frames: Frames = "centered",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Forward matrices ``M^p`` of every frame. Shape: ``(T, 3, 3)``."""
    return matrix_powers(compose(genotype, height, width, dtype=dtype, device=device), frame_powers(T, frames))


def _sampling_grid(backward: Tensor, height: int, width: int) -> Tensor:
    """Where each output pixel samples its input, for ``grid_sample(..., align_corners=True)``.

    Shape:
        - backward: ``(N, 3, 3)`` inverse matrices ``M^-1`` (output pixel -> input pixel);
          output: ``(N, H, W, 2)``.
    """
    # kornia's N maps pixel coordinates to [-1, 1], where the centres of pixels 0 and W - 1 sit at -1
    # and +1 (align_corners=True); θ = N M^-1 N^-1 is the matrix in those coordinates (what kornia's
    # normalize_homography computes), and affine_grid evaluates it exactly at every pixel. N is built
    # in the matrices' own dtype: kornia < 0.9's normalize_homography builds it in float32, which
    # would cost float64 clips their precision.
    to_unit = normal_transform_pixel(height, width, device=backward.device, dtype=backward.dtype)  # (1, 3, 3)
    theta = to_unit @ backward @ torch.linalg.inv(to_unit)
    return F.affine_grid(theta[:, :2], [backward.shape[0], 1, height, width], align_corners=True)


def _sample(images: Tensor, grid: Tensor, interpolation: str, padding_mode: str) -> Tensor:
    return F.grid_sample(images, grid, mode=interpolation, padding_mode=padding_mode, align_corners=True)


def _check_options(interpolation: Interpolation, padding_mode: str) -> str:
    if isinstance(interpolation, InterpolationMode):
        interpolation = interpolation.value
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}")
    if padding_mode not in _PADDINGS:
        raise ValueError(f"padding_mode must be one of {list(_PADDINGS)}, got {padding_mode!r}")
    return _INTERPOLATIONS[interpolation]


def _a(what: str) -> str:
    return f"an {what}" if what[0] in "aeiou" else f"a {what}"


def _check_size(height: int, width: int, what: str, shape: Sequence[int]) -> None:
    # Pixel-centre sampling (align_corners=True) spans the centres of the first and last pixel: along an
    # axis of one pixel that span is empty, every position maps onto that pixel and nothing can move.
    if height < 2 or width < 2:
        raise ValueError(f"expected {_a(what)} at least 2 x 2 pixels (H, W >= 2), got shape {tuple(shape)}: "
                         "an axis of one pixel cannot be moved by sub-pixel warps")


def _check_image(x: Tensor, what: str = "image") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a tensor {what}, got {type(x).__name__}")
    if x.ndim not in (3, 4):
        raise ValueError(f"expected {_a(what)} of shape (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"expected a non-empty {what}, got shape {tuple(x.shape)}")
    # Channels-last only where that is the one plausible reading: a last axis of 1, 3 or 4 colours after
    # two axes of more than 4 pixels. Read channels-first, such a tensor would be an image at most 4 pixels
    # wide with more than 4 channels; smaller tensors (8 channels of 4 x 4, say) could be either and are
    # taken as written.
    if x.shape[-1] in (1, 3, 4) and x.shape[-3] > 4 and x.shape[-2] > 4:
        raise ValueError(
            f"{what} of shape {tuple(x.shape)} looks channels-last (H, W, C); expected channels first, "
            "(C, H, W) or (B, C, H, W): permute it, or use torchvision.transforms.v2.ToImage()"
        )
    _check_size(x.shape[-2], x.shape[-1], what, x.shape)
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.bool, torch.int32, torch.int64)):
        raise TypeError(f"expected a float, uint8, bool, int32 or int64 {what}, got {x.dtype}")


def warp(
    images: Tensor,
    matrices: Tensor,
    *,
    interpolation: Interpolation = "bilinear",
    padding_mode: str = "zeros",
) -> Tensor:
    """Warp each image by its own forward matrix, once: ``out(p) = in(M^-1 p)``.

    The one sampling path clips, :func:`video_to_image` and the search stem use: kornia's pixel-to-unit
    matrix ``N`` (``normal_transform_pixel``) re-expresses ``M^-1`` in ``grid_sample``'s coordinates as
    ``N M^-1 N^-1``, and ``grid_sample(..., align_corners=True)`` samples at pixel centres, which
    reproduces torchvision's geometry. For clips, where one image makes ``T`` frames,
    :func:`image_to_video` samples every frame from the one image instead of copying it.

    Shape:
        - images: ``(N, C, H, W)`` float; matrices: ``(N, 3, 3)`` or ``(3, 3)``; output: ``(N, C, H, W)``.
    """
    mode = _check_options(interpolation, padding_mode)
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"warp takes float images (N, C, H, W), got {getattr(images, 'dtype', type(images))} "
                         f"{tuple(getattr(images, 'shape', ()))}")
    if not isinstance(matrices, Tensor) or matrices.shape[-2:] != (3, 3) or matrices.ndim not in (2, 3):
        raise ValueError(f"warp takes (N, 3, 3) or (3, 3) matrices, got shape {tuple(getattr(matrices, 'shape', ()))}")
    if matrices.ndim == 3 and matrices.shape[0] not in (1, images.shape[0]):
        raise ValueError(f"warp takes one matrix per image: {images.shape[0]} images, {matrices.shape[0]} matrices")
    height, width = images.shape[-2:]
    _check_size(height, width, "image", images.shape)
    work = images.float() if images.dtype in (torch.float16, torch.bfloat16) and images.device.type == "cpu" else images
    forward = matrices.to(dtype=work.dtype, device=work.device).expand(images.shape[0], 3, 3)
    grid = _sampling_grid(torch.linalg.inv(forward), height, width)  # (N, H, W, 2)
    return _sample(work, grid, mode, padding_mode).to(images.dtype)


def video_grid(
    genotype: GenotypeLike,
    T: int,
    height: int,
    width: int,
    *,
    frames: Frames = "centered",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Where each frame samples the image: frame ``t`` through ``M^-p(t)``, in ``grid_sample``'s
    coordinates (``align_corners=True``).

    A genotype's motion is fixed, so this grid serves every batch of one size: the image and mask
    kernels take it as ``grid=`` (:class:`~img2vid.ImageToVideo` keeps one per device). Build it in the
    dtype the kernel samples in (the image's float dtype; float32 for ``uint8`` images and masks)
    for full precision.

    Shape:
        - Output: ``(T, H, W, 2)``.

    Convention:
        ``grid_sample``'s ``(x, y)`` in ``[-1, 1]`` with ``align_corners=True``: ``-1`` and ``+1`` are the
        centres of the first and last pixel.
    """
    motion = compose(genotype, height, width, dtype=dtype, device=device)
    return _sampling_grid(matrix_powers(motion, [-p for p in frame_powers(T, frames)]), height, width)


def _sampling_dtype(x: Tensor) -> torch.dtype:
    """The dtype the image kernel samples ``x`` in (and builds its grid in)."""
    if x.is_floating_point():
        # CPU grid_sample has no reliable half kernel: half images are sampled in float32 and cast back.
        return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) and x.device.type == "cpu" else x.dtype
    # label maps given as plain tensors: exact in float64 for int32/int64 labels, in float32 for bytes and bools
    return torch.float64 if x.dtype in (torch.int32, torch.int64) else torch.float32


def _index_dtype(height: int, width: int) -> torch.dtype:
    """The dtype the mask kernel samples pixel indices in: float32 while every index is exact in it."""
    return torch.float32 if height * width < 2**24 else torch.float64


def _frames_grid(grid: Tensor | None, genotype: Genotype, T: int, frames: Frames, height: int, width: int,
                 dtype: torch.dtype, device: torch.device) -> Tensor:
    """``grid`` checked and brought to the sampling dtype, or :func:`video_grid` built. Shape: ``(T, H, W, 2)``."""
    if grid is None:
        return video_grid(genotype, T, height, width, frames=frames, dtype=dtype, device=device)
    if not isinstance(grid, Tensor) or tuple(grid.shape) != (T, height, width, 2):
        shape = tuple(grid.shape) if isinstance(grid, Tensor) else type(grid).__name__
        raise ValueError(f"grid must be the frames' sampling grid (video_grid) of shape {(T, height, width, 2)}, "
                         f"got {shape}")
    return grid if grid.dtype == dtype and grid.device == device else grid.to(dtype=dtype, device=device)


def _plain(x: Tensor) -> Tensor:
    """A tv_tensor as a plain tensor (the kernels' results are plain tensors, as torchvision's are); any other
    tensor as it is (torch.export traces its own tensor subclasses, which must not be cast)."""
    return x.as_subclass(Tensor) if isinstance(x, tv_tensors.TVTensor) else x


def _apply_pixel_steps(x: Tensor, genotype: Genotype, generator: torch.Generator | None = None) -> Tensor:
    for name, magnitude in genotype:
        op = OPS[name]
        if op.kind == "pixel":
            x = op(x, magnitude, generator=generator)
    return x


def image_to_video_image(
    image: Tensor,
    genotype: GenotypeLike,
    T: int = 5,
    *,
    frames: Frames = "centered",
    interpolation: Interpolation = "bilinear",
    padding_mode: str = "zeros",
    pixel_ops: bool = True,
    generator: torch.Generator | None = None,
    grid: Tensor | None = None,
) -> Tensor:
    """The image kernel: turn images into clips, frame ``t`` the image warped by ``M^p(t)`` (Eq. 7).

    ``M`` is the composed forward matrix of the genotype's affine steps; every frame is resampled once,
    in one ``grid_sample`` for the whole clip. Pixel steps have no inverse: a frame of power ``p``
    applies the chain of pixel steps ``|p|`` times, before its warp.

    Args:
        image: images. Float images are taken to be in ``[0, 1]``; ``uint8`` images in ``[0, 255]``
            get torchvision's ``uint8`` pixel kernels, are warped as torchvision warps ``uint8``
            images (in float32, rounded) and come back as ``uint8``. Other integer or bool tensors
            are label maps: use :func:`image_to_video_mask` for them.
        genotype: a :class:`~img2vid.Genotype`, its string, or a list of steps.
        T: the number of frames.
        frames: ``"centered"`` or ``"forward"`` (see :func:`frame_powers`).
        interpolation: ``"bilinear"`` or ``"nearest"``.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        pixel_ops: apply the genotype's pixel steps (``False``: the motion only).
        generator: where random pixel ops (``cutout``) draw; ``None`` is torch's global generator.
        grid: the frames' sampling grid from :func:`video_grid` for this size, to skip building it;
            ``None`` builds it.

    Shape:
        - image: ``(B, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(B, T, C, H, W)`` or ``(T, C, H, W)``, same dtype and device. The clip is a strided
          view of one ``(B, C, T, H, W)`` buffer, so no extra copy is made; call ``.contiguous()``
          if you need ``view``.

    Convention:
        ``M`` moves the content at pixel ``(x, y)`` to ``M @ (x, y, 1)``: ``x`` right, ``y`` down,
        origin at the top-left pixel's centre, as torchvision's ``affine_image`` with each frame's
        parameters.
    """
    genotype = as_genotype(genotype)
    powers = frame_powers(T, frames)
    mode = _check_options(interpolation, padding_mode)
    _check_image(image, "image")
    x = _plain(image)
    unbatched = x.ndim == 3
    if unbatched:
        x = x.unsqueeze(0)
    batch, channels, height, width = x.shape
    dtype = _sampling_dtype(x)
    grid = _frames_grid(grid, genotype, T, frames, height, width, dtype, x.device)  # (T, H, W, 2)

    pixel_steps = pixel_ops and not genotype.is_affine
    if pixel_steps and channels not in (1, 3) and any(
        name in ("color", "sharpness") for name, _ in genotype
    ):
        raise ValueError(f"ops 'color' and 'sharpness' need 1 or 3 channels, got {channels}")
    if not pixel_steps:
        # One input image per clip: sample all T frames from it with one tall grid, shared by the
        # batch (a stride-0 view), so the input is never copied T times and the kernel still runs in
        # parallel over B. (B, C, H, W) x (B, T*H, W, 2) -> (B, C, T*H, W).
        tall = rearrange(grid, "t h w xy -> 1 (t h) w xy").expand(batch, -1, -1, -1)
        sampled = _sample(x if x.dtype == dtype else x.to(dtype), tall, mode, padding_mode)
        clip = rearrange(sampled, "b c (t h) w -> b t c h w", t=T)
    else:
        # Pixel steps make frames of different |p| different images: p applications, then one warp.
        # uint8 images take the ops' uint8 kernels (torchvision's), float images stay differentiable.
        variants = [x if x.dtype == torch.uint8 else x.to(dtype)]
        for _ in range(max(abs(p) for p in powers)):
            variants.append(_apply_pixel_steps(variants[-1], genotype, generator))
        inputs = torch.stack([variants[abs(p)] for p in powers]).to(dtype)  # (T, B, C, H, W)
        sampled = _sample(rearrange(inputs, "t b c h w -> t (b c) h w"), grid, mode, padding_mode)
        clip = rearrange(sampled, "t (b c) h w -> b t c h w", b=batch)

    clip = _restore_dtype(clip, x.dtype)
    return clip[0] if unbatched else clip


def _restore_dtype(clip: Tensor, dtype: torch.dtype) -> Tensor:
    if clip.dtype == dtype:
        return clip
    if dtype.is_floating_point:
        return clip.to(dtype)
    if dtype == torch.uint8:  # as torchvision: round, then cast (bilinear never leaves [0, 255]; clamp for safety)
        return clip.round().clamp(0, 255).to(dtype)
    return clip.round().to(dtype)


def image_to_video_mask(
    mask: Tensor,
    genotype: GenotypeLike,
    T: int = 5,
    *,
    frames: Frames = "centered",
    padding_mode: str = "zeros",
    grid: Tensor | None = None,
) -> Tensor:
    """The mask kernel: segmentation or instance masks moved with the clip's frames, labels kept.

    Nearest interpolation picks one input pixel for each output pixel, so the kernel samples the
    pixels' indices and reads the labels there: any dtype and any label value comes back exactly
    (``uint8``, ``int64`` ids past 2^53, ``bool``, float). Pixel steps do not apply to masks. With
    ``padding_mode="zeros"`` pixels from outside the image get label 0, as torchvision's
    ``affine_mask`` fills them. ``genotype``, ``T``, ``frames`` and ``padding_mode`` are as for
    :func:`image_to_video_image`.

    Args:
        mask: the mask, ``(H, W)`` as torchvision's datasets hand it out, or with leading axes.
        grid: the frames' sampling grid from :func:`video_grid` for this size; ``None`` builds it.

    Shape:
        - ``(H, W) -> (T, H, W)``; ``(N, H, W) -> (T, N, H, W)``; ``(B, N, H, W) -> (B, T, N, H, W)``.
          Same dtype and device.

    Convention:
        As :func:`image_to_video_image`: frame ``t`` of the mask lines up with frame ``t`` of its image.
    """
    genotype = as_genotype(genotype)
    frame_powers(T, frames)
    _check_options("nearest", padding_mode)
    if not isinstance(mask, Tensor):
        raise TypeError(f"expected a tensor mask, got {type(mask).__name__}")
    mask = _plain(mask)
    if mask.ndim not in (2, 3, 4):
        raise ValueError(f"expected a mask of shape (H, W), (N, H, W) or (B, N, H, W), got shape {tuple(mask.shape)}")
    height, width = mask.shape[-2:]
    if height == 0 or width == 0:
        raise ValueError(f"expected a non-empty mask, got shape {tuple(mask.shape)}")
    _check_size(height, width, "mask", mask.shape)
    dtype = _index_dtype(height, width)
    grid = _frames_grid(grid, genotype, T, frames, height, width, dtype, mask.device)  # (T, H, W, 2)
    # Pixel indices from 1; 0 is outside the image (zeros padding), where the label is 0.
    index = torch.arange(1, height * width + 1, dtype=dtype, device=mask.device).view(1, 1, height, width)
    picked = _sample(index, rearrange(grid, "t h w xy -> 1 (t h) w xy"), "nearest", padding_mode)
    picked = rearrange(picked, "1 1 (t h) w -> t (h w)", t=T).long()  # (T, H*W), whole numbers
    lead = mask.shape[:-2]
    labels = torch.cat([mask.new_zeros(*lead, 1), mask.flatten(-2)], dim=-1)  # (*, 1 + H*W)
    # One gather reads every frame's labels (stride-0 views, nothing copied T times): (*, T, H*W).
    clip = labels.unsqueeze(-2).expand(*lead, T, -1).gather(-1, picked.expand(*lead, T, -1))
    clip = clip.view(*lead, T, height, width)
    return clip if mask.ndim == 2 else clip.movedim(-3, -4)  # the T axis before the mask's channel axis


def _corner_matrices(genotype: Genotype, T: int, frames: Frames, canvas_size: tuple[int, int],
                     dtype: torch.dtype, device: torch.device) -> Tensor:
    """The frames' forward matrices in torchvision's box and keypoint coordinates. Shape: ``(T, 3, 3)``.

    Convention:
        Boxes and keypoints put the origin at the top-left *corner* of the top-left pixel (a pixel
        centre sits at ``x + 0.5``), so the pixel-centre matrices are conjugated by that half-pixel
        shift: about ``(W / 2, H / 2)`` there is about ``((W - 1) / 2, (H - 1) / 2)`` here.
    """
    height, width = canvas_size
    shift = torch.eye(3, dtype=dtype, device=device)
    shift[:2, 2] = 0.5
    unshift = torch.eye(3, dtype=dtype, device=device)
    unshift[:2, 2] = -0.5
    return shift @ video_matrices(genotype, T, height, width, frames=frames, dtype=dtype, device=device) @ unshift


def _check_canvas_size(canvas_size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in canvas_size)
    except (TypeError, ValueError):
        raise ValueError(f"canvas_size must be (H, W), got {canvas_size!r}") from None
    _check_size(height, width, "canvas", (height, width))
    return height, width


def _move_points(points: Tensor, matrices: Tensor) -> Tensor:
    """Every point moved by every matrix. Shape: ``(*, 2)`` and ``(T, 3, 3)`` -> ``(T, *, 2)``."""
    flat = points.reshape(-1, 2)  # (K, 2)
    moved = torch.einsum("tij,kj->tki", matrices[:, :2, :2], flat) + matrices[:, None, :2, 2]  # (T, K, 2)
    return moved.reshape(len(matrices), *points.shape)


def image_to_video_keypoints(
    keypoints: Tensor,
    genotype: GenotypeLike,
    T: int = 5,
    *,
    canvas_size: tuple[int, int],
    frames: Frames = "centered",
) -> Tensor:
    """The keypoint kernel: every point moved by each frame's matrix, as torchvision's
    ``affine_keypoints`` moves them for that frame's parameters (no clamping).

    Shape:
        - keypoints: ``(*, 2)`` as ``(x, y)``; output: ``(T, *, 2)``, same dtype.

    Convention:
        torchvision's keypoint coordinates: the origin at the top-left corner of the image, so a
        pixel's centre is at ``(x + 0.5, y + 0.5)``.
    """
    genotype = as_genotype(genotype)
    if not isinstance(keypoints, Tensor) or keypoints.ndim < 1 or keypoints.shape[-1] != 2:
        shape = tuple(keypoints.shape) if isinstance(keypoints, Tensor) else type(keypoints).__name__
        raise ValueError(f"expected keypoints of shape (*, 2), got {shape}")
    points = _plain(keypoints)
    work = points if points.is_floating_point() else points.float()
    matrices = _corner_matrices(genotype, T, frames, _check_canvas_size(canvas_size), work.dtype, work.device)
    return _move_points(work, matrices).to(points.dtype)


_AXIS_ALIGNED = ("XYXY", "XYWH", "CXCYWH")


def image_to_video_bounding_boxes(
    bounding_boxes: Tensor,
    genotype: GenotypeLike,
    T: int = 5,
    *,
    format: tv_tensors.BoundingBoxFormat | str,
    canvas_size: tuple[int, int],
    frames: Frames = "centered",
    clamping_mode: str | None = "soft",
) -> Tensor:
    """The box kernel: each frame's boxes as torchvision's ``affine_bounding_boxes`` makes them for
    that frame's matrix: the enclosing box of the moved corners, clamped to the canvas by
    ``clamping_mode`` (torchvision's ``clamp_bounding_boxes``), in the boxes' format and dtype.
    ``genotype``, ``T`` and ``frames`` are as for :func:`image_to_video_image`.

    Args:
        bounding_boxes: axis-aligned boxes (``XYXY``, ``XYWH`` or ``CXCYWH``).
        format: the boxes' ``tv_tensors.BoundingBoxFormat`` or its name.
        canvas_size: the image's ``(H, W)``.
        clamping_mode: ``"soft"`` (torchvision's default), ``"hard"`` or ``None`` (no clamping).

    Shape:
        - bounding_boxes: ``(*, 4)``; output: ``(T, *, 4)``. (:class:`~img2vid.ImageToVideo` hands
          ``tv_tensors.BoundingBoxes`` back as a list of ``T``, since torchvision's boxes are 2-D.)

    Convention:
        torchvision's box coordinates: the origin at the top-left corner of the image, a box of the
        whole canvas ``(0, 0, W, H)`` in ``XYXY``.
    """
    genotype = as_genotype(genotype)
    if isinstance(format, str):
        if format.upper() not in tv_tensors.BoundingBoxFormat.__members__:
            raise ValueError(f"format must be one of {list(_AXIS_ALIGNED)}, got {format!r}")
        format = tv_tensors.BoundingBoxFormat[format.upper()]
    if format.name not in _AXIS_ALIGNED:
        raise ValueError(f"image_to_video moves axis-aligned boxes (XYXY, XYWH, CXCYWH), got format {format.name}")
    if not isinstance(bounding_boxes, Tensor) or bounding_boxes.ndim < 1 or bounding_boxes.shape[-1] != 4:
        shape = tuple(bounding_boxes.shape) if isinstance(bounding_boxes, Tensor) else type(bounding_boxes).__name__
        raise ValueError(f"expected bounding boxes of shape (*, 4), got {shape}")
    canvas_size = _check_canvas_size(canvas_size)
    xyxy_format = tv_tensors.BoundingBoxFormat.XYXY
    plain = _plain(bounding_boxes)
    work = plain if plain.is_floating_point() else plain.float()
    xyxy = TF.convert_bounding_box_format(work, old_format=format, new_format=xyxy_format).reshape(-1, 4)
    corners = xyxy[:, [[0, 1], [2, 1], [2, 3], [0, 3]]]  # (N, 4 corners, 2)
    moved = _move_points(corners, _corner_matrices(genotype, T, frames, canvas_size, work.dtype, work.device))
    enclosing = torch.cat([moved.amin(dim=-2), moved.amax(dim=-2)], dim=-1)  # (T, N, 4) XYXY
    enclosing = TF.clamp_bounding_boxes(enclosing.flatten(0, 1), format=xyxy_format, canvas_size=canvas_size,
                                        clamping_mode=clamping_mode)
    boxes = TF.convert_bounding_box_format(enclosing, old_format=xyxy_format, new_format=format)
    return boxes.reshape(T, *plain.shape).to(plain.dtype)


GridFor = Callable[[int, int, torch.dtype, torch.device], Tensor]


def image_to_video(
    x: Any,
    genotype: GenotypeLike,
    T: int = 5,
    *,
    frames: Frames = "centered",
    interpolation: Interpolation = "bilinear",
    padding_mode: str = "zeros",
    pixel_ops: bool = True,
    generator: torch.Generator | None = None,
) -> Any:
    """Turn images into clips: frame ``t`` is the input moved by ``M^p(t)`` (the paper's Eq. 7).

    Dispatches on the input's type to the kernels, as torchvision's ``F.affine`` does: plain tensors
    go to :func:`image_to_video_image` (``uint8`` in, ``uint8`` out; other integer or bool tensors are
    label maps: use ``interpolation="nearest"`` and ``pixel_ops=False`` for them, or
    :func:`image_to_video_mask`); ``tv_tensors.Image`` and PIL images become ``tv_tensors.Video``;
    ``tv_tensors.Mask`` goes to :func:`image_to_video_mask`, ``tv_tensors.KeyPoints`` to
    :func:`image_to_video_keypoints` and ``tv_tensors.BoundingBoxes`` to
    :func:`image_to_video_bounding_boxes` (a list of ``T`` ``BoundingBoxes``), each keeping its
    metadata. The options are those of :func:`image_to_video_image`.

    Args:
        x: the image (or mask, boxes, keypoints).

    Shape:
        - Images: ``(B, C, H, W) -> (B, T, C, H, W)``, ``(C, H, W) -> (T, C, H, W)``; the others as
          their kernels say.
    """
    options = dict(frames=frames, interpolation=interpolation, padding_mode=padding_mode, pixel_ops=pixel_ops,
                   generator=generator)
    return _dispatch(x, genotype, T, options)


def _dispatch(inpt: Any, genotype: GenotypeLike, T: int, options: dict[str, Any],
              grid_for: GridFor | None = None) -> Any:
    """Call the kernel of ``inpt``'s type and wrap its result as torchvision does. ``grid_for(H, W, dtype,
    device)`` hands the image and mask kernels a grid (:class:`~img2vid.ImageToVideo` serves the one it
    keeps); ``None`` lets them build it."""
    frames = options["frames"]
    if isinstance(inpt, PIL.Image.Image):
        inpt = TF.to_image(inpt)
    if isinstance(inpt, tv_tensors.Video):
        raise ValueError(f"image_to_video takes images, got a tv_tensors.Video of shape {tuple(inpt.shape)}")
    if isinstance(inpt, tv_tensors.KeyPoints):
        moved = image_to_video_keypoints(inpt, genotype, T, canvas_size=inpt.canvas_size, frames=frames)
        return tv_tensors.wrap(moved, like=inpt)
    if isinstance(inpt, tv_tensors.BoundingBoxes):
        boxes = image_to_video_bounding_boxes(inpt, genotype, T, format=inpt.format, canvas_size=inpt.canvas_size,
                                              frames=frames, clamping_mode=inpt.clamping_mode)
        return [tv_tensors.wrap(frame, like=inpt) for frame in boxes]
    if not isinstance(inpt, Tensor):
        raise TypeError(f"image_to_video takes tensors, tv_tensors and PIL images, got {type(inpt).__name__}")
    if isinstance(inpt, tv_tensors.Mask):
        grid = None
        if grid_for is not None and inpt.ndim in (2, 3, 4) and min(inpt.shape[-2:]) >= 2:
            height, width = inpt.shape[-2:]
            grid = grid_for(height, width, _index_dtype(height, width), inpt.device)
        mask = image_to_video_mask(inpt, genotype, T, frames=frames, padding_mode=options["padding_mode"], grid=grid)
        return tv_tensors.Mask(mask)
    grid = None
    if grid_for is not None and inpt.ndim in (3, 4) and min(inpt.shape[-2:]) >= 2:  # the kernel checks the rest
        grid = grid_for(inpt.shape[-2], inpt.shape[-1], _sampling_dtype(inpt), inpt.device)
    clip = image_to_video_image(inpt, genotype, T, grid=grid, **options)
    return tv_tensors.Video(clip) if isinstance(inpt, tv_tensors.Image) else clip


def video_to_image(
    y: Tensor,
    genotype: GenotypeLike,
    *,
    frames: Frames = "centered",
    interpolation: Interpolation = "bilinear",
    padding_mode: str = "zeros",
) -> Tensor:
    """Undo each frame's motion: frame ``t`` warped by ``M^-p(t)``, so dense per-frame outputs line up
    with the input image again. ``T`` is read from ``y``. Pixel steps are not undone (they have no
    inverse and do not move content).

    Shape:
        - y: ``(B, T, K, H, W)`` float; output: ``(B, T, K, H, W)``.
    """
    mode = _check_options(interpolation, padding_mode)
    if not isinstance(y, Tensor) or y.ndim != 5 or not y.is_floating_point():
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"expected float dense outputs of shape (B, T, K, H, W), got {shape}")
    batch, T, _, height, width = y.shape
    _check_size(height, width, "output", y.shape)
    work = y.float() if y.dtype in (torch.float16, torch.bfloat16) and y.device.type == "cpu" else y
    motion = compose(genotype, height, width, dtype=work.dtype, device=work.device)
    # Frame t was moved by M^p; moving it back by M^-p samples it through (M^-p)^-1 = M^p.
    grid = _sampling_grid(matrix_powers(motion, frame_powers(T, frames)), height, width)  # (T, H, W, 2)
    sampled = _sample(rearrange(work, "b t k h w -> t (b k) h w"), grid, mode, padding_mode)
    return rearrange(sampled, "t (b k) h w -> b t k h w", b=batch).to(y.dtype)


# --------------------------------------------------------------------------------------------------
# Temporal shift (TSM's, and GSF's shift of its gated channels)
# --------------------------------------------------------------------------------------------------


def _check_fold_div(fold_div: int) -> None:
    if isinstance(fold_div, bool) or not isinstance(fold_div, int) or fold_div < 2:
        raise ValueError(f"fold_div must be an integer >= 2, got {fold_div!r}")


def temporal_shift(x: Tensor, fold_div: int = 8, *, channel_dim: int = 2) -> Tensor:
    """Shift a fraction of the channels one frame along time, zeros past the ends.

    Channels ``[0, C/fold_div)`` of frame ``t`` take frame ``t + 1``'s values, channels
    ``[C/fold_div, 2C/fold_div)`` take frame ``t - 1``'s, the rest are unchanged. With ``T = 1`` the
    shifted channels are zero; with ``C < fold_div`` nothing moves (the output is a copy of ``x``).
    ``fold_div=2`` with an even ``C`` moves every channel: GSF's shift of its gated halves.

    The output is a fresh tensor, even when nothing moves. The shift is linear and its backward is the
    opposite shift, one pass over the gradient (split and concatenate, never zero-filled copies of the
    whole clip, as slicing ``x`` itself would cost in backward).

    ``channel_dim=-1`` shifts channels-last features the same way, e.g. a transformer's tokens
    ``(B, T, N, D)`` or ``(B, T, H, W, D)`` (:func:`img2vid.fusion.token_shift`).

    Shape:
        - x: ``(B, T, C, H, W)`` (``channel_dim=2``); with ``channel_dim=-1``, ``(B, T, ..., C)``. Output:
          the same.
    """
    if channel_dim not in (2, -1):
        raise ValueError(f"channel_dim must be 2 (clips (B, T, C, H, W)) or -1 (channels last), got {channel_dim!r}")
    if channel_dim == 2 and (not isinstance(x, Tensor) or x.ndim != 5):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"temporal_shift expects a clip (B, T, C, H, W), got shape {shape}")
    if not isinstance(x, Tensor) or x.ndim < 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"temporal_shift expects (B, T, ..., C) with channel_dim=-1, got shape {shape}")
    _check_fold_div(fold_div)
    dim = channel_dim % x.ndim
    channels = x.shape[dim]
    fold = channels // fold_div
    # Split the channels first: slicing a split part costs a fold-sized zero fill in backward, while
    # slicing x would cost one of the whole clip per slice. Concatenating a zero frame (not F.pad or
    # slice assignment into empty_like) keeps every output element written once by ops that compile
    # and export cleanly: Inductor on CPU miscompiled both alternatives inside a model (see the docs).
    from_next, from_previous, rest = x.split([fold, fold, channels - 2 * fold], dim=dim)
    zeros = from_next.new_zeros(from_next.shape[0], min(1, x.shape[1]), *from_next.shape[2:])
    from_next = torch.cat([from_next[:, 1:], zeros], dim=1)
    from_previous = torch.cat([zeros, from_previous[:, :-1]], dim=1)
    return torch.cat([from_next, from_previous, rest], dim=dim)
