"""The op table: every transformation a genotype can name.

Two kinds of op live here:

* **affine** ops (``identity``, ``translate_x``, ``translate_y``, ``rotate``, ``scale``, ``shear_x``,
  ``shear_y``) give a ``3 x 3`` matrix in pixel coordinates. A genotype's affine steps compose into
  one matrix, so a clip frame is resampled once however many steps there are.
* **pixel** ops (``auto_contrast``, ``invert``, ``equalize``, ``solarize``, ``posterize``, ``color``,
  ``brightness``, ``sharpness``, ``cutout``) are batched functions on float images in ``[0, 1]`` and
  on ``uint8`` images in ``[0, 255]``, with torchvision AutoAugment's magnitude meanings. A ``uint8``
  image gets what torchvision's own ``uint8`` kernel gives (integer results, truncated where
  torchvision truncates), so a ``uint8`` pipeline agrees with torchvision's bit for bit.

Convention:
    Pixel coordinates put ``x`` to the right and ``y`` down, with the origin at the centre of the
    top-left pixel; the image centre is ``((W - 1) / 2, (H - 1) / 2)``, as in torchvision. A matrix
    ``M`` moves the content at ``(x, y)`` to ``M @ (x, y, 1)``. ``rotate`` is counter-clockwise on
    screen (``torchvision.transforms.v2.functional.rotate``); the other affine ops match
    ``torchvision.transforms.v2.functional.affine`` with the same parameters.

Gradients:
    Every affine matrix is differentiable in its magnitude. Pixel ops whose output is piecewise
    constant in their magnitude (``posterize``, ``solarize``, ``cutout``) or in their input
    (``posterize``, ``equalize``) use a straight-through estimator there, as in DADA (Li et al.,
    ECCV 2020): the forward value is exact and the backward pass treats the step as the identity,
    so a search can still learn through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

__all__ = ["AFFINE_OPS", "OPS", "PIXEL_OPS", "Op", "check_magnitude", "op_names"]

Magnitude = Union[float, Tensor]


@dataclass(frozen=True)
class Op:
    """One entry of :data:`OPS`.

    Attributes:
        name: the op's name in genotypes.
        kind: ``"affine"`` (gives a matrix) or ``"pixel"`` (changes pixel values).
        default: the magnitude the search stem uses (``0.0`` for ops that take none).
        range: the closed interval of valid magnitudes; learnt magnitudes are clamped to it.
        takes_magnitude: ``False`` for ops written bare (``identity``, ``invert`` ...).
        integer: the magnitude must be a whole number (``posterize``'s bits).
        meaning: what the magnitude means, in words.
        random: the op draws random numbers (``cutout``); calls take a ``generator=``.
    """

    name: str
    kind: Literal["affine", "pixel"]
    default: float
    range: tuple[float, float]
    takes_magnitude: bool
    integer: bool
    meaning: str
    _fn: Callable[..., Tensor]
    random: bool = False
    _uint8_fn: Callable[..., Tensor] | None = None  # pixel ops: the op on uint8 images, magnitude a float

    def matrix(self, magnitude: Magnitude, height: int, width: int) -> Tensor:
        """The op's forward matrix in pixel coordinates.

        Args:
            magnitude: a float or a tensor of any shape ``(*)``; a tensor keeps its gradient.
            height: the image height, which fixes the centre and the unit of ``translate_y``.
            width: the image width, which fixes the centre and the unit of ``translate_x``.

        Shape:
            - Output: ``(*, 3, 3)``, on the magnitude's device and dtype (``float32`` for a float).
        """
        if self.kind != "affine":
            raise ValueError(f"op {self.name!r} is a pixel op and has no matrix")
        if not isinstance(magnitude, Tensor):
            magnitude = torch.tensor(_as_float(self.name, magnitude))
        elif not magnitude.is_floating_point():
            magnitude = magnitude.to(torch.get_default_dtype())
        return self._fn(magnitude, height, width)

    def __call__(
        self, image: Tensor, magnitude: Magnitude = 0.0, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Apply the op to float images in ``[0, 1]`` or ``uint8`` images in ``[0, 255]``.

        Args:
            image: float images in ``[0, 1]`` (differentiable), or ``uint8`` images, which get
                torchvision's ``uint8`` kernel of the op (no gradient).
            magnitude: a float or a 0-d tensor (which keeps its gradient on float images).
            generator: where a random op (``cutout``) draws its numbers; ``None`` is torch's global
                generator. Deterministic ops draw nothing and ignore it.

        Shape:
            - image: ``(*, C, H, W)``; ``C`` must be 1 or 3 for ``color`` and ``sharpness``.
            - Output: same as ``image``, same dtype.
        """
        if self.kind == "affine":
            raise ValueError(
                f"op {self.name!r} is an affine op: use its matrix with img2vid.functional.warp"
            )
        if not isinstance(image, Tensor):
            raise TypeError(f"op {self.name!r} takes image tensors, got {type(image).__name__}")
        if image.dtype == torch.uint8:
            value = _as_float(self.name, magnitude)
            return self._uint8_fn(image, value, generator=generator) if self.random else self._uint8_fn(image, value)
        if not image.is_floating_point():
            raise TypeError(f"op {self.name!r} takes float images in [0, 1] or uint8 images in [0, 255], got "
                            f"{image.dtype}")
        if isinstance(magnitude, Tensor):
            m = magnitude.to(dtype=image.dtype, device=image.device)  # keeps the gradient
        else:
            m = torch.tensor(_as_float(self.name, magnitude), dtype=image.dtype, device=image.device)
        return self._fn(image, m, generator=generator) if self.random else self._fn(image, m)


# ---------------------------------------------------------------------------------------------------
# Affine ops: (*,) magnitude -> (*, 3, 3) forward matrix in pixel coordinates.


def _about_centre(linear: Tensor, shift: Tensor, height: int, width: int) -> Tensor:
    """``[[A, c - A c + t], [0, 0, 1]]``: apply ``A`` about the image centre ``c``, then move by ``t``.

    Shape:
        - linear: ``(*, 2, 2)``; shift: ``(*, 2)``; output: ``(*, 3, 3)``.
    """
    centre = linear.new_tensor([(width - 1) / 2, (height - 1) / 2])
    offset = centre - (linear @ centre.unsqueeze(-1)).squeeze(-1) + shift  # (*, 2)
    top = torch.cat([linear, offset.unsqueeze(-1)], dim=-1)  # (*, 2, 3)
    bottom = linear.new_tensor([0.0, 0.0, 1.0]).expand(*top.shape[:-2], 1, 3)
    return torch.cat([top, bottom], dim=-2)


def _mat2(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
    """``[[a, b], [c, d]]`` from four same-shape tensors. Shape: ``(*)`` each -> ``(*, 2, 2)``."""
    return torch.stack([torch.stack([a, b], -1), torch.stack([c, d], -1)], -2)


def _identity_matrix(m: Tensor, height: int, width: int) -> Tensor:
    return torch.eye(3, dtype=m.dtype, device=m.device).expand(*m.shape, 3, 3)


def _translate_x(m: Tensor, height: int, width: int) -> Tensor:
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _about_centre(_mat2(one, zero, zero, one), torch.stack([m * width, zero], -1), height, width)


def _translate_y(m: Tensor, height: int, width: int) -> Tensor:
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _about_centre(_mat2(one, zero, zero, one), torch.stack([zero, m * height], -1), height, width)


def _rotate(m: Tensor, height: int, width: int) -> Tensor:
    # Counter-clockwise on screen: with y pointing down, that is x' = x cos + y sin, y' = -x sin + y cos.
    theta = torch.deg2rad(m)
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(m)
    return _about_centre(_mat2(cos, sin, -sin, cos), torch.stack([zero, zero], -1), height, width)


def _scale(m: Tensor, height: int, width: int) -> Tensor:
    zero = torch.zeros_like(m)
    return _about_centre(_mat2(m, zero, zero, m), torch.stack([zero, zero], -1), height, width)


def _shear_x(m: Tensor, height: int, width: int) -> Tensor:
    # torchvision's SHx(s) = [[1, -tan s], [0, 1]] (transforms/functional.py, _get_inverse_affine_matrix).
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    k = -torch.tan(torch.deg2rad(m))
    return _about_centre(_mat2(one, k, zero, one), torch.stack([zero, zero], -1), height, width)


def _shear_y(m: Tensor, height: int, width: int) -> Tensor:
    # torchvision's SHy(s) = [[1, 0], [-tan s, 1]].
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    k = -torch.tan(torch.deg2rad(m))
    return _about_centre(_mat2(one, zero, k, one), torch.stack([zero, zero], -1), height, width)


# ---------------------------------------------------------------------------------------------------
# Pixel ops: (*, C, H, W) float image in [0, 1], 0-d magnitude -> same shape.


def _straight_through(exact: Tensor, image: Tensor, magnitude: Tensor | None = None) -> Tensor:
    """Forward value ``exact``; backward as if the op were ``image + magnitude`` (DADA's estimator)."""
    out = image + (exact - image).detach()
    if magnitude is not None and magnitude.requires_grad:
        out = out + (magnitude - magnitude.detach())
    return out


def _blend(image: Tensor, degenerate: Tensor, factor: Tensor) -> Tensor:
    # torchvision's _blend: image * factor + degenerate * (1 - factor), clamped to the valid range.
    return (degenerate + factor * (image - degenerate)).clamp(0.0, 1.0)


def _brightness(x: Tensor, m: Tensor) -> Tensor:
    return _blend(x, torch.zeros_like(x), 1.0 + m)


def _color(x: Tensor, m: Tensor) -> Tensor:
    _check_colour_channels(x, "color")
    return _blend(x, TF.rgb_to_grayscale(x, num_output_channels=x.shape[-3]), 1.0 + m)


def _smoothed(x: Tensor) -> Tensor:
    """torchvision's (and PIL's) degenerate image for sharpness: the interior blurred by
    ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13``, the one-pixel border kept. Written here because
    torchvision's version edits tensors in place, which breaks autograd."""
    channels, height, width = x.shape[-3:]
    if height <= 2 or width <= 2:  # no interior pixel: nothing is blurred (torchvision returns the image)
        return x
    kernel = x.new_tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13
    flat = x.reshape(-1, channels, height, width)
    blurred = F.conv2d(flat, kernel.expand(channels, 1, 3, 3), groups=channels)  # (N, C, H-2, W-2)
    interior = torch.zeros(height, width, dtype=torch.bool, device=x.device)
    interior[1:-1, 1:-1] = True
    return torch.where(interior, F.pad(blurred, (1, 1, 1, 1)), flat).reshape(x.shape)


def _sharpness(x: Tensor, m: Tensor) -> Tensor:
    _check_colour_channels(x, "sharpness")
    return _blend(x, _smoothed(x), 1.0 + m)


def _invert(x: Tensor, m: Tensor) -> Tensor:
    return 1.0 - x


def _auto_contrast(x: Tensor, m: Tensor) -> Tensor:
    # Per image and channel, stretch [min, max] to [0, 1]; flat channels stay as they are (torchvision).
    low = x.amin(dim=(-2, -1), keepdim=True)
    high = x.amax(dim=(-2, -1), keepdim=True)
    span = high - low
    flat = span <= 0
    return torch.where(flat, x, (x - low) / torch.where(flat, torch.ones_like(span), span)).clamp(0.0, 1.0)


def _equalize(x: Tensor, m: Tensor) -> Tensor:
    return _straight_through(TF.equalize(x.detach()), x)


def _solarize(x: Tensor, m: Tensor) -> Tensor:
    exact = torch.where(x >= m, 1.0 - x, x)
    return exact if not m.requires_grad else exact + (m - m.detach())


def _posterize(x: Tensor, m: Tensor) -> Tensor:
    # torchvision's float posterize: keep `bits` bits, i.e. floor to multiples of 1 / 2**bits.
    levels = 2.0 ** torch.round(m.detach())
    exact = torch.floor(x.detach() * levels).clamp(max=levels - 1) / levels
    return _straight_through(exact, x, m)


def _cutout(x: Tensor, m: Tensor, generator: torch.Generator | None = None) -> Tensor:
    out = _grey_square(x, float(m.detach()), generator)
    return out if not m.requires_grad else out + (m - m.detach())


def _grey_square(x: Tensor, m: float, generator: torch.Generator | None) -> Tensor:
    # A square of side m * min(H, W) at a uniformly random centre in each image, filled with grey
    # (0.5, or 128 in uint8: 127.5 rounded half to even, as a float clip of uint8 images rounds it).
    height, width = x.shape[-2:]
    side = m * min(height, width)
    batch = x.shape[:-3]
    centre_y = torch.rand(*batch, 1, 1, device=x.device, generator=generator) * height
    centre_x = torch.rand(*batch, 1, 1, device=x.device, generator=generator) * width
    ys = torch.arange(height, device=x.device).view(-1, 1) + 0.5
    xs = torch.arange(width, device=x.device).view(1, -1) + 0.5
    inside = ((ys - centre_y).abs() < side / 2) & ((xs - centre_x).abs() < side / 2)  # (*, H, W)
    return torch.where(inside.unsqueeze(-3), torch.full_like(x, 0.5 if x.is_floating_point() else 128), x)


def _check_colour_channels(x: Tensor, name: str) -> None:
    if x.ndim < 3 or x.shape[-3] not in (1, 3):
        raise ValueError(f"op {name!r} needs images with 1 or 3 channels, got shape {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------------------
# Pixel ops on uint8 images: (*, C, H, W) uint8, float magnitude -> uint8. torchvision's uint8 kernels,
# called directly where they take any channel count, written out with torchvision's own arithmetic
# (float32, truncated to uint8) where torchvision's would refuse channel counts our float ops accept.


def _brightness_uint8(x: Tensor, m: float) -> Tensor:
    return x.mul(1.0 + m).clamp_(0, 255).to(torch.uint8)  # torchvision's adjust_brightness_image


def _auto_contrast_uint8(x: Tensor, m: float) -> Tensor:
    # torchvision's autocontrast_image: (x - min) / ((max - min) / 255), flat channels unchanged.
    work = x.to(torch.float32)
    low = work.amin(dim=(-2, -1), keepdim=True)
    high = work.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    inv_scale = torch.where(flat, 1.0, (high - low).mul_(1.0 / 255))
    low = torch.where(flat, 0.0, low)
    return (work - low).div_(inv_scale).clamp_(0, 255).to(torch.uint8)


def _color_uint8(x: Tensor, m: float) -> Tensor:
    _check_colour_channels(x, "color")
    return TF.adjust_saturation(x, 1.0 + m)


def _sharpness_uint8(x: Tensor, m: float) -> Tensor:
    _check_colour_channels(x, "sharpness")
    return TF.adjust_sharpness(x, 1.0 + m)


_UINT8 = {
    "auto_contrast": _auto_contrast_uint8,
    "invert": lambda x, m: TF.invert(x),
    "equalize": lambda x, m: TF.equalize(x),
    "solarize": lambda x, m: TF.solarize(x, 255.0 * m),  # AutoAugment's threshold: m times the maximum
    "posterize": lambda x, m: TF.posterize(x, round(m)),
    "color": _color_uint8,
    "brightness": _brightness_uint8,
    "sharpness": _sharpness_uint8,
    "cutout": _grey_square,
}


# ---------------------------------------------------------------------------------------------------


def _op(name, kind, default, range_, meaning, fn, *, takes_magnitude=True, integer=False, random=False) -> Op:
    return Op(name, kind, default, range_, takes_magnitude, integer, meaning, fn, random, _UINT8.get(name))


_TABLE = [
    _op("identity", "affine", 0.0, (0.0, 0.0), "no change", _identity_matrix, takes_magnitude=False),
    _op("translate_x", "affine", 0.05, (-1.0, 1.0), "fraction of the width; content moves right", _translate_x),
    _op("translate_y", "affine", 0.05, (-1.0, 1.0), "fraction of the height; content moves down", _translate_y),
    _op("rotate", "affine", 5.0, (-180.0, 180.0), "degrees, counter-clockwise about the centre", _rotate),
    _op("scale", "affine", 1.05, (0.25, 4.0), "zoom factor about the centre; > 1 enlarges content", _scale),
    _op("shear_x", "affine", 5.0, (-60.0, 60.0), "degrees, torchvision affine(shear=[m, 0])", _shear_x),
    _op("shear_y", "affine", 5.0, (-60.0, 60.0), "degrees, torchvision affine(shear=[0, m])", _shear_y),
    _op("auto_contrast", "pixel", 0.0, (0.0, 0.0), "stretch each channel to [0, 1]", _auto_contrast,
        takes_magnitude=False),
    _op("invert", "pixel", 0.0, (0.0, 0.0), "1 - x", _invert, takes_magnitude=False),
    _op("equalize", "pixel", 0.0, (0.0, 0.0), "histogram equalisation", _equalize, takes_magnitude=False),
    _op("solarize", "pixel", 0.5, (0.0, 1.0), "invert values >= m (fraction of the maximum)", _solarize),
    _op("posterize", "pixel", 4.0, (0.0, 8.0), "keep m bits per channel (a whole number)", _posterize,
        integer=True),
    _op("color", "pixel", 0.3, (-1.0, 1.0), "saturation factor 1 + m", _color),
    _op("brightness", "pixel", 0.3, (-1.0, 1.0), "brightness factor 1 + m", _brightness),
    _op("sharpness", "pixel", 0.3, (-1.0, 1.0), "sharpness factor 1 + m", _sharpness),
    _op("cutout", "pixel", 0.2, (0.0, 1.0), "grey square of side m * min(H, W) at a random place", _cutout,
        random=True),
]

#: Read-only mapping from op name to :class:`Op`.
OPS: MappingProxyType[str, Op] = MappingProxyType({op.name: op for op in _TABLE})
#: Names of the ops that give a matrix.
AFFINE_OPS: tuple[str, ...] = tuple(op.name for op in _TABLE if op.kind == "affine")
#: Names of the ops that change pixel values.
PIXEL_OPS: tuple[str, ...] = tuple(op.name for op in _TABLE if op.kind == "pixel")


def _as_float(name: str, magnitude: Magnitude) -> float:
    """The magnitude as a float; ``ValueError`` for anything that is not one number."""
    if isinstance(magnitude, Tensor):
        if magnitude.ndim != 0:
            raise ValueError(f"magnitude of {name!r} must be a float or a 0-d tensor, got shape "
                             f"{tuple(magnitude.shape)}")
        return float(magnitude.detach())
    try:
        return float(magnitude)
    except OverflowError:  # an integer past float's range: float() overflows instead of giving inf
        digits = f" (an integer of about {int(magnitude.bit_length() * math.log10(2)) + 1} digits)" \
            if isinstance(magnitude, int) else ""
        raise ValueError(f"magnitude of {name!r} must be finite, got a number too large for a float{digits}") from None
    except (TypeError, ValueError):
        raise ValueError(f"magnitude of {name!r} must be a number, got {magnitude!r}") from None


def op_names() -> list[str]:
    """All op names, sorted (for error messages)."""
    return sorted(OPS)


def check_magnitude(name: str, magnitude: Magnitude) -> None:
    """Raise ``ValueError`` unless ``magnitude`` is a finite, in-range value for op ``name``."""
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; valid ops are {op_names()}")
    op = OPS[name]
    value = _as_float(name, magnitude)
    if not math.isfinite(value):
        raise ValueError(f"magnitude of {name!r} must be finite, got {value}")
    if not op.takes_magnitude:
        if value != 0.0:
            raise ValueError(f"op {name!r} takes no magnitude, got {value}; write it bare")
        return
    low, high = op.range
    if not low <= value <= high:
        raise ValueError(f"magnitude of {name!r} ({op.meaning}) must lie in [{low}, {high}], got {value}")
    if op.integer and value != round(value):
        raise ValueError(f"magnitude of {name!r} ({op.meaning}) must be a whole number, got {value}")
