"""Receptive fields: theoretical (the paper's Eq. 8) and empirical (Sec. 3.2), and their pictures.

* :func:`theoretical_rf` is Eq. 8 for a single path of ``(kernel, stride)`` layers,
  ``r0 = sum_l (k_l - 1) prod_{j<l} s_j + 1``; :func:`rf_layers` reads those pairs off a single-path
  network of ``Conv2d`` / ``MaxPool2d`` / ``AvgPool2d`` layers and :func:`network_rf` applies Eq. 8 to
  each axis.
* :func:`empirical_rf` is the Empirical Receptive Field of Sec. 3.2 (Luo et al., NeurIPS 2016):
  the gradient of the central output unit with respect to the input. Given an
  :class:`~img2vid.ImageToVideo`, the input is the *original image*: the gradient flows back through
  the clip, so each frame's contribution lands where that frame's content came from. This is how the
  temporal receptive field of TSM / GSF becomes a reshaped spatial one (the paper's Fig. 1b and 4).
* :func:`rf_spread` summarises an ERF by its standard deviation per axis; :func:`erf_stats` puts numbers
  on "reshapes the receptive field": the radii holding 50% / 90% of the ERF's mass, the spread per axis,
  the anisotropy of its covariance (elongation along any direction) and its centre of mass.
* :func:`save_rf_figure` draws heatmaps with matplotlib (an optional dependency, imported only there).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, Optional

import torch
from torch import Tensor, nn

__all__ = [
    "RFLayer",
    "empirical_rf",
    "erf_stats",
    "network_rf",
    "rf_layers",
    "rf_spread",
    "save_rf_figure",
    "theoretical_rf",
]


# --------------------------------------------------------------------------------------------------
# Theoretical receptive field (Eq. 8)
# --------------------------------------------------------------------------------------------------


class RFLayer(NamedTuple):
    """One layer of a single path, as Eq. 8 sees it.

    Attributes:
        name: the module's qualified name in the network.
        kernel: effective kernel ``(k_h, k_w)``; a dilation ``d`` makes it ``d * (k - 1) + 1``.
        stride: ``(s_h, s_w)``.
    """

    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int]


def theoretical_rf(layers: Iterable[tuple[int, int]]) -> int:
    """The theoretical receptive field of a single path, the paper's Eq. 8 (Araujo et al., 2019).

    ``r0 = sum_{l=1..L} (k_l - 1) * prod_{j=1..l-1} s_j + 1``, along one axis.

    Args:
        layers: ``(kernel, stride)`` per layer, input side first; integers ``>= 1``. An empty path
            has a receptive field of 1 (each output sees its own input pixel).

    Returns:
        The receptive field size in input pixels.

    Examples:
        >>> theoretical_rf([(3, 1), (3, 1)])  # two 3x3 convolutions
        5
        >>> theoretical_rf([(7, 2), (3, 2), (3, 1)])  # ResNet stem, max-pool, one 3x3 conv
        19
    """
    rf, jump = 1, 1
    for position, layer in enumerate(layers):
        try:
            kernel, stride = layer
        except (TypeError, ValueError):
            raise ValueError(f"layer {position} must be a (kernel, stride) pair, got {layer!r}") from None
        for what, value in (("kernel", kernel), ("stride", stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"layer {position}: {what} must be an integer >= 1, got {value!r}")
        rf += (kernel - 1) * jump
        jump *= stride
    return rf


# Modules that act on each pixel alone, so they leave the receptive field as it is.
_POINTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.InstanceNorm2d, nn.Identity,
    nn.Dropout, nn.Dropout2d,
)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    first, second = value
    return (int(first), int(second))


def rf_layers(net: nn.Module) -> list[RFLayer]:
    """The ``(kernel, stride)`` layers of a single-path network, in order, for Eq. 8.

    ``Conv2d``, ``MaxPool2d`` and ``AvgPool2d`` count (dilation folded into an effective kernel
    ``d * (k - 1) + 1``); pointwise modules (activations, normalisation, dropout, ``Identity``) are
    passed over; ``nn.Sequential`` containers are entered in order. Padding does not change the size.

    Args:
        net: an ``nn.Sequential``-like single-path network, or one such layer.

    Raises:
        ValueError: a module that is neither of these, e.g. a residual block (not a single path), a
            global pooling or a linear layer (its receptive field is the whole input). The message
            names the module, so the path can be cut just before it.
    """
    if not isinstance(net, nn.Module):
        raise ValueError(f"rf_layers takes an nn.Module, got {type(net).__name__}")
    found: list[RFLayer] = []
    _collect(net, "", found)
    return found


def _collect(module: nn.Module, name: str, found: list[RFLayer]) -> None:
    label = name or type(module).__name__
    if isinstance(module, nn.Conv2d):
        dilation = _pair(module.dilation)
        kernel = _pair(module.kernel_size)
        effective = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
        found.append(RFLayer(label, effective, _pair(module.stride)))
    elif isinstance(module, nn.MaxPool2d):
        dilation = _pair(module.dilation)
        kernel = _pair(module.kernel_size)
        effective = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
        stride = _pair(module.stride if module.stride is not None else module.kernel_size)
        found.append(RFLayer(label, effective, stride))
    elif isinstance(module, nn.AvgPool2d):
        kernel = _pair(module.kernel_size)
        stride = _pair(module.stride if module.stride is not None else module.kernel_size)
        found.append(RFLayer(label, kernel, stride))
    elif isinstance(module, nn.Sequential):
        for child_name, child in module.named_children():
            _collect(child, f"{name}.{child_name}" if name else child_name, found)
    elif isinstance(module, _POINTWISE):
        return
    else:
        raise ValueError(
            f"{label} ({type(module).__name__}) is not a single-path layer that Eq. 8 covers; "
            "rf_layers reads nn.Sequential paths of Conv2d, MaxPool2d, AvgPool2d and pointwise modules "
            "(cut the network before residual blocks, global pooling or linear heads)"
        )


def network_rf(net: nn.Module) -> tuple[int, int]:
    """Eq. 8 applied to each axis of a single-path network. Returns ``(height, width)`` in pixels.

    Examples:
        >>> network_rf(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, (3, 5))))
        (8, 12)
    """
    layers = rf_layers(net)
    return (theoretical_rf((layer.kernel[0], layer.stride[0]) for layer in layers),
            theoretical_rf((layer.kernel[1], layer.stride[1]) for layer in layers))


# --------------------------------------------------------------------------------------------------
# Empirical receptive field (Sec. 3.2)
# --------------------------------------------------------------------------------------------------

Normalize = Optional[Literal["max", "sum"]]


def empirical_rf(
    model: nn.Module | Sequence[nn.Module],
    inputs: Tensor | tuple[int, int, int],
    *,
    video: Callable[[Tensor], Tensor] | None = None,
    frame: int | None = None,
    samples: int = 8,
    seed: int = 0,
    normalize: Normalize = "max",
) -> Tensor:
    """The Empirical Receptive Field of Sec. 3.2: ``|d y(centre) / d x|`` over the input image.

    For each input, the gradient of the output's central unit (all output channels at the centre
    location ``(h // 2, w // 2)``, as in Luo et al., 2016) is taken with respect to the input image;
    its absolute value is summed over input channels and averaged over inputs and models.

    * A 2D network: ``model`` maps ``(B, C, H, W)`` to a feature map ``(B, K, h, w)``.
    * A temporalized network fed by a clip: pass ``video=ImageToVideo(genotype, T)``; the model maps
      ``(B, T, C, H, W)`` to ``(B, T, K, h, w)`` (``temporalize(..., reduce=None)``; the unit is taken
      on frame ``frame``) or to the frame average ``(B, K, h, w)``. The gradient is with respect to the
      *original image*, through the clip, so it lands on the image where each frame's content came
      from: with temporal fusion, the unit of one frame sees its neighbours' content, moved by the
      motion (the paper's Fig. 4).
    * :func:`~img2vid.wrap`: pass the wrapped model as a 2D network (it takes images).

    Dict outputs use their ``"out"`` entry (torchvision segmentation models). Models are evaluated in
    ``eval()`` mode (so inputs of a batch do not interact through batch statistics) and put back in
    their former mode; their parameters are not changed and get no ``.grad``.

    Args:
        model: the network, or several (e.g. differently initialised copies) to average over.
        inputs: a batch ``(B, C, H, W)``, or an image shape ``(C, H, W)`` to draw ``samples`` standard
            normal images for (from ``seed``).
        video: a callable image -> clip, normally an :class:`~img2vid.ImageToVideo`.
        frame: the frame whose central unit is used, for per-frame outputs. Default: the frame of power
            0 (the unmoved image) when ``video`` has ``powers`` and one is 0, else the middle frame.
        samples: how many random inputs to draw when ``inputs`` is a shape.
        seed: the seed they are drawn from.
        normalize: ``"max"`` (peak 1, for pictures), ``"sum"`` (a distribution summing to 1) or
            ``None`` (raw mean ``|grad|``).

    Shape:
        - Output: ``(H, W)``, float, on the input's device.

    Raises:
        ValueError: inputs of the wrong shape or an empty batch, an output with no spatial map (e.g.
            class logits: pass the feature extractor instead), a ``frame`` out of range, or an all-zero
            gradient.
    """
    models = [model] if isinstance(model, nn.Module) else list(model)
    if not models or not all(isinstance(m, nn.Module) for m in models):
        raise ValueError("model must be an nn.Module or a non-empty sequence of them")
    if normalize not in ("max", "sum", None):
        raise ValueError(f"normalize must be 'max', 'sum' or None, got {normalize!r}")
    x = _erf_inputs(inputs, samples, seed, models[0])
    total = torch.zeros(x.shape[-2:], dtype=x.dtype, device=x.device)
    for net in models:
        total += _erf_one(net, x, video, frame)
    total /= len(models)
    scale = total.max() if normalize == "max" else total.sum() if normalize == "sum" else None
    if scale is not None:
        if not torch.isfinite(scale) or scale <= 0:
            raise ValueError("the gradient of the central unit is zero everywhere (a dead or constant network?)")
        total = total / scale
    return total


def _erf_inputs(inputs: Tensor | tuple[int, int, int], samples: int, seed: int, model: nn.Module) -> Tensor:
    if isinstance(inputs, Tensor):
        if inputs.ndim != 4 or not inputs.is_floating_point():
            raise ValueError(f"inputs must be a float batch (B, C, H, W), got {inputs.dtype} of shape "
                             f"{tuple(inputs.shape)}")
        if inputs.numel() == 0:
            raise ValueError(f"inputs is an empty batch of shape {tuple(inputs.shape)}; the empirical RF averages "
                             "over images, so give at least one image with H, W >= 1")
        return inputs.detach()
    shape = tuple(inputs)
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ValueError(f"inputs must be a tensor (B, C, H, W) or an image shape (C, H, W), got {inputs!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((samples, *shape), generator=generator, dtype=dtype).to(device)


def _erf_one(net: nn.Module, x: Tensor, video: Callable[[Tensor], Tensor] | None, frame: int | None) -> Tensor:
    was_training = net.training
    net.eval()
    try:
        image = x.clone().requires_grad_(True)
        out = net(video(image) if video is not None else image)
        if isinstance(out, Mapping):
            if "out" not in out:
                raise ValueError(f"a dict output needs an 'out' entry, got keys {sorted(out)}")
            out = out["out"]
        if not isinstance(out, Tensor):
            raise ValueError(f"the model must return a tensor (or a dict with 'out'), got {type(out).__name__}")
        if out.ndim == 5:
            # (B, T, K, h, w): one frame's central unit.
            index = _default_frame(video, out.shape[1]) if frame is None else frame
            if isinstance(index, bool) or not isinstance(index, int) or not -out.shape[1] <= index < out.shape[1]:
                raise ValueError(f"frame must be an integer in [0, {out.shape[1]}), got {index!r}")
            out = out[:, index]
        elif out.ndim != 4:
            raise ValueError(
                f"the empirical RF needs a spatial output (B, K, h, w) or (B, T, K, h, w), got shape "
                f"{tuple(out.shape)}; pass the feature extractor (the network before its pooling and head)"
            )
        h, w = out.shape[-2:]
        # Sum over samples is fine: in eval mode each sample's unit depends on that sample only.
        unit = out[:, :, h // 2, w // 2].sum()
        (grad,) = torch.autograd.grad(unit, image)
    finally:
        net.train(was_training)
    # (B, C, H, W) -> (H, W)
    return grad.abs().sum(dim=1).mean(dim=0)


def _default_frame(video: Callable[[Tensor], Tensor] | None, T: int) -> int:
    powers = getattr(video, "powers", None)
    if isinstance(powers, list) and len(powers) == T and 0 in powers:
        return powers.index(0)
    return T // 2


def rf_spread(erf: Tensor) -> tuple[float, float]:
    """The standard deviation of an ERF along each axis, in pixels: ``(sigma_y, sigma_x)``.

    The ERF is read as a distribution over pixels (non-negative, normalised to sum 1 here); the
    spread is the square root of its second central moment along ``y`` (rows) and ``x`` (columns).

    Shape:
        - erf: ``(H, W)``, non-negative.
    """
    _, _, var_y, var_x = _moments(_distribution(erf))
    return (math.sqrt(float(var_y)), math.sqrt(float(var_x)))


def erf_stats(erf: Tensor, fractions: Sequence[float] = (0.5, 0.9)) -> dict[str, float]:
    """Numbers for the size and shape of an ERF (Sec. 3.2): mass radii, spread, anisotropy, centre.

    The ERF is read as a distribution over pixels, as Luo et al. (2016) read it: non-negative,
    normalised to sum 1 here, in float64. These are numbers for "the motion *reshapes* the receptive
    field" (the paper's Fig. 1b and 4): the radii say how far the mass reaches, the anisotropy how
    stretched it is in any direction; an ERF stretched along a diagonal has ``sigma_y == sigma_x``, so
    :func:`rf_spread` (one number per axis) cannot tell it from a round one.

    * ``"r50"``, ``"r90"``, ...: one key ``f"r{round(100 * f)}"`` per fraction ``f``: the radius of the
      smallest disc centred on the centre of mass that holds at least ``f`` of the mass. Each pixel
      counts at its centre's distance, so the radius is the distance of a pixel: with the pixels sorted
      by distance (ties in distance go in together), the first at which the cumulative mass reaches
      ``f`` (up to float64 rounding).
    * ``"sigma_y"``, ``"sigma_x"``: the standard deviation along rows and columns, as :func:`rf_spread`.
    * ``"anisotropy"``: ``sqrt(lambda_max / lambda_min)`` of the 2x2 covariance matrix, the ratio of the
      spread along the ERF's longest and shortest directions: 1 for an isotropic ERF (a disc, a square
      block), larger the more elongated it is, whatever the direction. ``math.inf`` when ``lambda_min``
      is 0 (all the mass on one line, e.g. a single row); 1 for a single pixel (no direction at all).
    * ``"centre_y"``, ``"centre_x"``: the centre of mass.

    Args:
        erf: an ERF, e.g. from :func:`empirical_rf` (any normalisation).
        fractions: the mass fractions to give radii for, each in ``(0, 1]``; at least one.

    Returns:
        A dict of Python floats: the radius keys in the order of ``fractions``, then ``"sigma_y"``,
        ``"sigma_x"``, ``"anisotropy"``, ``"centre_y"``, ``"centre_x"``. Lengths are in pixels.

    Shape:
        - erf: ``(H, W)``, non-negative, with a positive sum.

    Convention:
        Pixel ``erf[i, j]`` sits at ``(y, x) = (i, j)``: rows down, columns right, from the top-left
        pixel's centre.

    Raises:
        ValueError: ``erf`` is not a finite, non-negative ``(H, W)`` tensor with a positive sum, or
            ``fractions`` is empty, holds a value outside ``(0, 1]``, or two values that name the same key.

    Examples:
        >>> erf = torch.zeros(9, 9)
        >>> erf[3:6, 3:6] = 1.0  # a uniform 3x3 block: 1/9 of the mass at distance 0, 4/9 at 1, 4/9 at sqrt(2)
        >>> stats = erf_stats(erf)
        >>> {key: round(value, 4) for key, value in stats.items()}  # doctest: +NORMALIZE_WHITESPACE
        {'r50': 1.0, 'r90': 1.4142, 'sigma_y': 0.8165, 'sigma_x': 0.8165, 'anisotropy': 1.0,
         'centre_y': 4.0, 'centre_x': 4.0}
    """
    keys = _radius_keys(fractions)
    weights = _distribution(erf)
    centre_y, centre_x, var_y, var_x = _moments(weights)
    # (H, 1) and (1, W): each pixel's offset from the centre of mass
    dy = (torch.arange(erf.shape[0], dtype=weights.dtype, device=weights.device) - centre_y)[:, None]
    dx = (torch.arange(erf.shape[1], dtype=weights.dtype, device=weights.device) - centre_x)[None, :]

    # The covariance matrix [[var_y, cov], [cov, var_x]] and its eigenvalues, in closed form for 2x2.
    var_y, var_x, cov = float(var_y), float(var_x), float((weights * dy * dx).sum())
    mean, half_gap = (var_y + var_x) / 2, math.hypot((var_y - var_x) / 2, cov)
    lambda_max, lambda_min = mean + half_gap, max(mean - half_gap, 0.0)
    if lambda_max == 0:  # one pixel holds all the mass
        anisotropy = 1.0
    elif lambda_min <= 1e-12 * lambda_max:  # a line; the centre's rounding leaves ~1e-30 rather than 0
        anisotropy = math.inf
    else:
        anisotropy = math.sqrt(lambda_max / lambda_min)

    # (H, W) -> (N,) over the pixels with mass, nearest first: a pixel with no mass never sets a radius.
    has_mass = weights > 0
    distance, order = torch.sort(torch.sqrt(dy**2 + dx**2)[has_mass])
    cumulative = torch.cumsum(weights[has_mass][order], dim=0)
    stats: dict[str, float] = {}
    for key, fraction in zip(keys, fractions):
        # The first pixel whose cumulative mass reaches the fraction; the tolerance keeps a fraction
        # hit exactly (5/9 on a 3x3 block) from slipping one pixel out by rounding, and the clamp
        # covers f = 1 when the total sums to a hair below 1.
        index = min(int((cumulative < fraction - 1e-12).sum()), len(cumulative) - 1)
        stats[key] = float(distance[index])
    stats.update(
        sigma_y=math.sqrt(var_y),
        sigma_x=math.sqrt(var_x),
        anisotropy=anisotropy,
        centre_y=float(centre_y),
        centre_x=float(centre_x),
    )
    return stats


def _distribution(erf: Tensor) -> Tensor:
    """An ERF ``(H, W)`` as float64 weights summing to 1, after checking that it can be read so."""
    if not isinstance(erf, Tensor) or erf.ndim != 2:
        raise ValueError(f"erf must be a tensor (H, W), got {getattr(erf, 'shape', type(erf).__name__)}")
    weights = erf.detach().double()
    if not torch.isfinite(weights).all():
        raise ValueError("erf must be finite, got NaN or infinite values")
    if (weights < 0).any():
        raise ValueError(f"erf must be non-negative (an ERF is |gradient|), got a minimum of {float(weights.min()):g}")
    total = weights.sum()
    if total <= 0:
        raise ValueError(f"erf must have a positive sum to be read as a distribution, got {float(total):g} "
                         f"(an all-zero map of shape {tuple(erf.shape)})")
    return weights / total


def _moments(weights: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(centre_y, centre_x, var_y, var_x)`` of weights ``(H, W)`` summing to 1, from their marginals."""
    ys = torch.arange(weights.shape[0], dtype=weights.dtype, device=weights.device)
    xs = torch.arange(weights.shape[1], dtype=weights.dtype, device=weights.device)
    py, px = weights.sum(dim=1), weights.sum(dim=0)
    centre_y, centre_x = (py * ys).sum(), (px * xs).sum()
    return centre_y, centre_x, (py * (ys - centre_y) ** 2).sum(), (px * (xs - centre_x) ** 2).sum()


def _radius_keys(fractions: Sequence[float]) -> list[str]:
    """The keys ``f"r{round(100 * f)}"`` for ``fractions``, after checking each is in ``(0, 1]``."""
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence) or len(fractions) == 0:
        raise ValueError(f"fractions must be a non-empty sequence of numbers in (0, 1], e.g. (0.5, 0.9), "
                         f"got {fractions!r}")
    keys: dict[str, float] = {}
    for fraction in fractions:
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction <= 1:
            raise ValueError(f"each fraction must be a number in (0, 1] (the share of the ERF's mass a radius "
                             f"holds), got {fraction!r}")
        key = f"r{round(100 * fraction)}"
        if key in keys:
            raise ValueError(f"fractions {keys[key]!r} and {fraction!r} both give the key {key!r} "
                             "(keys are whole percentages): give fractions that round to different ones")
        keys[key] = fraction
    return list(keys)


def save_rf_figure(
    erfs: Tensor | Mapping[str, Tensor],
    path: str | Path,
    *,
    title: str | None = None,
    cmap: str = "inferno",
) -> Path:
    """Draw one or several ERFs side by side as heatmaps into a PNG (our version of Fig. 1b).

    Each panel is scaled to its own peak and titled with its name and spread ``sigma_y / sigma_x``.

    Args:
        erfs: an ERF ``(H, W)``, or a mapping name -> ERF.
        path: the output file (``.png``); parent folders are created.
        title: an overall title.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'img2vid[demo]'``).
    """
    try:
        # A bare Figure with its own Agg canvas: neither pyplot's state nor the user's backend (a
        # notebook's inline one, say) is touched.
        import matplotlib  # noqa: F401  (first, so a missing matplotlib is reported as such)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("save_rf_figure needs matplotlib: pip install 'img2vid[demo]' (or matplotlib)") from None
    panels = {"ERF": erfs} if isinstance(erfs, Tensor) else dict(erfs)
    if not panels:
        raise ValueError("nothing to draw: erfs is empty")
    for name, erf in panels.items():
        if not isinstance(erf, Tensor) or erf.ndim != 2:
            raise ValueError(f"ERF {name!r} must be a tensor (H, W), got {getattr(erf, 'shape', type(erf).__name__)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(2.6 * len(panels), 2.9))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (name, erf) in zip(axes[0], panels.items()):
        data = erf.detach().float().cpu()
        peak = float(data.max())
        ax.imshow((data / peak if peak > 0 else data).numpy(), cmap=cmap, vmin=0.0, vmax=1.0)
        sy, sx = rf_spread(data) if peak > 0 else (0.0, 0.0)
        ax.set_title(f"{name}\nσy {sy:.2f} / σx {sx:.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
