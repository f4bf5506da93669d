"""Stateless tensor functions: compose a genotype's motion, raise it to each frame's power, warp once.

Convention:
    Matrices are ``3 x 3`` in pixel coordinates: ``x`` right, ``y`` down, origin at the centre of the
    top-left pixel. A matrix ``M`` moves the content at ``(x, y)`` to ``M @ (x, y, 1)``, so the warped
    image is ``out(p) = in(M^-1 p)``, sampled at pixel centres exactly as torchvision's ``affine``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal, Union

import torch
import torch.nn.functional as F
from einops import rearrange
from kornia.geometry.conversions import normal_transform_pixel
from torch import Tensor
from torchvision.transforms import InterpolationMode

from .genotype import Genotype, GenotypeLike, as_genotype
from .ops import OPS

__all__ = [
    "compose",
    "frame_powers",
    "image_to_video",
    "matrix_powers",
    "temporal_shift",
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
    # A mask's leading axis holds labels or instances, not colour channels: no layout to guess there.
    if what != "mask" and x.shape[-1] in (1, 3, 4) and x.shape[-3] > 4:
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


def _apply_pixel_steps(x: Tensor, genotype: Genotype, generator: torch.Generator | None = None) -> Tensor:
    for name, magnitude in genotype:
        op = OPS[name]
        if op.kind == "pixel":
            x = op(x, magnitude, generator=generator)
    return x


def image_to_video(
    x: Tensor,
    genotype: GenotypeLike,
    T: int = 5,
    *,
    frames: Frames = "centered",
    interpolation: Interpolation = "bilinear",
    padding_mode: str = "zeros",
    pixel_ops: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Turn images into clips: frame ``t`` is the image warped by ``M^p(t)`` (the paper's Eq. 7).

    ``M`` is the composed forward matrix of the genotype's affine steps; every frame is resampled once,
    in one ``grid_sample`` for the whole clip. Pixel steps have no inverse: a frame of power ``p``
    applies the chain of pixel steps ``|p|`` times, before its warp.

    Args:
        x: images. Float images are taken to be in ``[0, 1]``; ``uint8`` images in ``[0, 255]`` come
            back as ``uint8``. Other integer or bool tensors are label maps: use
            ``interpolation="nearest"`` and ``pixel_ops=False`` for them (as ``ImageToVideo`` does).
        genotype: a :class:`~img2vid.Genotype`, its string, or a list of steps.
        T: the number of frames.
        frames: ``"centered"`` or ``"forward"`` (see :func:`frame_powers`).
        interpolation: ``"bilinear"`` or ``"nearest"``.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        pixel_ops: apply the genotype's pixel steps (``False`` for masks).
        generator: where random pixel ops (``cutout``) draw; ``None`` is torch's global generator.

    Shape:
        - x: ``(B, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(B, T, C, H, W)`` or ``(T, C, H, W)``, same dtype and device. The clip is a strided
          view of one ``(B, C, T, H, W)`` buffer, so no extra copy is made; call ``.contiguous()``
          if you need ``view``.
    """
    genotype = as_genotype(genotype)
    powers = frame_powers(T, frames)
    mode = _check_options(interpolation, padding_mode)
    return _image_to_video(x, genotype, powers, partial(_frames_grid, genotype, powers), mode, padding_mode, pixel_ops,
                           generator)


GridFor = Callable[[int, int, torch.dtype, torch.device], Tensor]


def _frames_grid(genotype: Genotype, powers: Sequence[int], height: int, width: int, dtype: torch.dtype,
                 device: torch.device) -> Tensor:
    """Where each frame samples the image: frame ``t`` through ``M^-p(t)``. Shape: ``(T, H, W, 2)``."""
    motion = compose(genotype, height, width, dtype=dtype, device=device)
    return _sampling_grid(matrix_powers(motion, [-p for p in powers]), height, width)


def _image_to_video(x: Tensor, genotype: Genotype, powers: Sequence[int], grid_for: GridFor, mode: str,
                    padding_mode: str, pixel_ops: bool, generator: torch.Generator | None = None,
                    what: str = "image") -> Tensor:
    """:func:`image_to_video` with options checked and the frames' grid made by ``grid_for``; ``what``
    names the input in error messages."""
    T = len(powers)
    _check_image(x, what)
    unbatched = x.ndim == 3
    if unbatched:
        x = x.unsqueeze(0)
    batch, channels, height, width = x.shape
    out_dtype = x.dtype
    if x.is_floating_point():
        work = x
    elif x.dtype == torch.uint8 and pixel_ops:
        work = x.float() / 255
    else:  # label maps: exact in float64 for any int32/int64 label, in float32 for bytes and bools
        work = x.to(torch.float64 if x.dtype in (torch.int32, torch.int64) else torch.float32)
    if work.dtype in (torch.float16, torch.bfloat16) and work.device.type == "cpu":
        work = work.float()  # CPU grid_sample has no reliable half kernel; the result is cast back

    grid = grid_for(height, width, work.dtype, work.device)  # (T, H, W, 2)

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
        sampled = _sample(work, tall, mode, padding_mode)
        clip = rearrange(sampled, "b c (t h) w -> b t c h w", t=T)
    else:
        # Pixel steps make frames of different |p| different images: p applications, then one warp.
        variants = [work]
        for _ in range(max(abs(p) for p in powers)):
            variants.append(_apply_pixel_steps(variants[-1], genotype, generator))
        inputs = torch.stack([variants[abs(p)] for p in powers])  # (T, B, C, H, W)
        sampled = _sample(rearrange(inputs, "t b c h w -> t (b c) h w"), grid, mode, padding_mode)
        clip = rearrange(sampled, "t (b c) h w -> b t c h w", b=batch)

    clip = _restore_dtype(clip, out_dtype, pixel_ops)
    return clip[0] if unbatched else clip


def _restore_dtype(clip: Tensor, dtype: torch.dtype, scaled: bool) -> Tensor:
    if clip.dtype == dtype:
        return clip
    if dtype == torch.uint8 and scaled:
        return (clip * 255).round().clamp(0, 255).to(dtype)
    if dtype.is_floating_point:
        return clip.to(dtype)
    return clip.round().to(dtype)


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
