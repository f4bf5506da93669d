"""ImageToVideo: the transform that turns images into clips (the paper's Sec. 3.2)."""

from __future__ import annotations

from typing import Any

import PIL.Image
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

from . import functional as I2VF
from .functional import Frames, Interpolation
from .genotype import Genotype, GenotypeLike, as_genotype

__all__ = ["ImageToVideo"]


def _is_tracing() -> bool:
    """Inside torch.compile / torch.export, where a kept tensor must not leak into or out of a graph."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling is not None and is_compiling())


# Inputs the kernels take in their own dtypes (or refuse, as videos); anything else is an image.
_OTHER_KINDS = (tv_tensors.Mask, tv_tensors.BoundingBoxes, tv_tensors.KeyPoints, tv_tensors.Video)


class ImageToVideo(v2.Transform):
    """Turn each image into a clip of ``T`` frames by repeating one motion.

    Frame ``t`` is the image warped by ``M^p(t)``, where ``M`` is the composed forward matrix of the
    genotype's affine steps and ``p(t)`` is the frame's power (:attr:`powers`). Every frame is
    resampled once, in one batched warp, with torchvision's geometry. The module is also a
    torchvision v2 transform: it composes in ``v2.Compose``, handles ``tv_tensors``, pickles for
    ``DataLoader`` workers and runs on the input's device. Like torchvision's transforms it only
    dispatches: each kind of input goes to its public kernel in :mod:`img2vid.functional`
    (:func:`~img2vid.functional.image_to_video_image`, ``_mask``, ``_bounding_boxes``,
    ``_keypoints``), with the sampling grid this transform keeps.

    Args:
        genotype: the motion, as a :class:`~img2vid.Genotype` or its string, e.g. ``"translate_x:0.05"``.
        T: number of frames, ``>= 1``.
        frames: ``"centered"`` (powers ``-(T // 2) ... T - 1 - T // 2``; the middle frame is the input)
            or ``"forward"`` (powers ``1 ... T``, the paper's Eq. 7).
        interpolation: ``"bilinear"`` or ``"nearest"`` (or the torchvision ``InterpolationMode``) for
            images; masks always use nearest.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        generator: where random pixel ops (``cutout``) draw their numbers; ``None`` (default) is
            torch's global generator. A ``DataLoader`` worker gets a copy of it, so seed each worker's
            copy in ``worker_init_fn`` if the workers must differ.

    Shape:
        - Input: ``(B, C, H, W)`` or ``(C, H, W)``.
        - Output: ``(B, T, C, H, W)`` or ``(T, C, H, W)``. A ``tv_tensors.Image`` becomes a
          ``tv_tensors.Video``; a ``tv_tensors.Mask`` stays a mask (warped with nearest, pixel ops
          skipped, labels stay labels): ``(H, W)`` as torchvision's datasets hand it out becomes
          ``(T, H, W)``, ``(N, H, W)`` becomes ``(T, N, H, W)``, ``(B, N, H, W)`` becomes
          ``(B, T, N, H, W)``. ``tv_tensors.KeyPoints`` ``(*, 2)`` become ``(T, *, 2)`` and
          ``tv_tensors.BoundingBoxes`` a list of ``T`` ``BoundingBoxes``, each frame's moved as
          torchvision's ``affine`` moves them for that frame's matrix (boxes: the enclosing box of the
          moved corners, clamped by their ``clamping_mode``; axis-aligned formats only).
          ``uint8`` in gives ``uint8`` out; float dtypes are kept.

    Convention:
        ``M`` moves the content at pixel ``(x, y)`` to ``M @ (x, y, 1)``: ``x`` right, ``y`` down,
        origin at the top-left pixel's centre; ``rotate`` is counter-clockwise on screen.

    Examples:
        >>> clip = ImageToVideo("translate_x:0.05,rotate:5", T=5)(torch.rand(8, 3, 32, 32))
        >>> clip.shape
        torch.Size([8, 5, 3, 32, 32])
    """

    _transformed_types = (Tensor, PIL.Image.Image)

    def __init__(
        self,
        genotype: GenotypeLike,
        T: int = 5,
        *,
        frames: Frames = "centered",
        interpolation: Interpolation = "bilinear",
        padding_mode: str = "zeros",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.genotype: Genotype = as_genotype(genotype)
        self.T = T
        self.frames: Frames = frames
        self.interpolation = interpolation
        self.padding_mode = padding_mode
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator
        # Validate every option now, not at the first batch.
        I2VF.frame_powers(T, frames)
        I2VF._check_options(interpolation, padding_mode)
        # device -> (what the grid was made for, the grid). One dict, filled in place: DataParallel's
        # replicas share it (they copy this module's __dict__ shallowly), so each device keeps its own.
        self._grids: dict[torch.device, tuple[tuple, Tensor]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        return {**state, "_grids": {}}  # grids are remade where the copy runs

    @property
    def powers(self) -> list[int]:
        """The power of ``M`` that makes each frame."""
        return I2VF.frame_powers(self.T, self.frames)

    def matrices(
        self, height: int, width: int, *, dtype: torch.dtype | None = None, device: Any = None
    ) -> Tensor:
        """Forward matrices ``M^p`` of the frames, in pixel coordinates. Shape: ``(T, 3, 3)``."""
        return I2VF.video_matrices(self.genotype, self.T, height, width, frames=self.frames, dtype=dtype,
                                   device=device)

    def inverse(self, y: Tensor) -> Tensor:
        """Warp each frame's dense output back by ``M^-p``, so it lines up with the input image.

        Shape:
            - y: ``(B, T, K, H, W)`` with ``T`` equal to this transform's; output: the same.
        """
        if isinstance(y, Tensor) and y.ndim == 5 and y.shape[1] != self.T:
            raise ValueError(f"expected {self.T} frames on dim 1 of (B, T, K, H, W), got shape {tuple(y.shape)}")
        return I2VF.video_to_image(y, self.genotype, frames=self.frames, interpolation=self.interpolation,
                                   padding_mode=self.padding_mode)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        # torchvision v2's shape: the transform only dispatches; the work is in the public kernels of
        # img2vid.functional (image, mask, boxes, keypoints), handed this transform's kept grid.
        if isinstance(inpt, Tensor) and not isinstance(inpt, _OTHER_KINDS) and not (
            inpt.is_floating_point() or inpt.dtype == torch.uint8
        ):
            raise TypeError(
                f"images must be float (values in [0, 1]) or uint8, got {inpt.dtype}; "
                "wrap label maps in tv_tensors.Mask"
            )
        return I2VF._dispatch(inpt, self.genotype, self.T, self._options(), self._frames_grid)

    def _options(self) -> dict[str, Any]:
        return dict(frames=self.frames, interpolation=self.interpolation, padding_mode=self.padding_mode,
                    pixel_ops=True, generator=self.generator)

    def _clip(self, x: Tensor, interpolation: Interpolation | None = None) -> Tensor:
        """The image kernel on a plain tensor with this transform's options and kept grid (no tv_tensor
        dispatch, so ``torch.compile`` and ``torch.export`` see plain tensor code)."""
        options = self._options()
        if interpolation is not None:
            options["interpolation"] = interpolation
        grid = None
        if isinstance(x, Tensor) and x.ndim in (3, 4) and min(x.shape[-2:]) >= 2:  # the kernel checks the rest
            grid = self._frames_grid(x.shape[-2], x.shape[-1], I2VF._sampling_dtype(x), x.device)
        return I2VF.image_to_video_image(x, self.genotype, self.T, grid=grid, **options)

    def _frames_grid(self, height: int, width: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The frames' sampling grid (:func:`img2vid.functional.video_grid`), kept per device for the
        last image size and remade when anything changes.

        A genotype's motion is fixed, so the grid is the same for every batch of one size: keeping it
        spares composing the matrices and building the grid on each call (a third of a small clip's
        time). Tensor magnitudes (which may carry gradients) and traced calls always build a fresh one.
        Safe under threads and ``nn.DataParallel``: a call returns the grid it found or built itself,
        never what the kept slot holds by then, and each device has its own slot.
        """
        key = (self.genotype, self.T, self.frames, height, width, dtype, device)
        cacheable = not _is_tracing() and not any(isinstance(m, Tensor) for _, m in self.genotype)
        if not cacheable:
            return self._grid(height, width, dtype, device)
        kept = self._grids.get(device)
        if kept is not None and kept[0] == key:
            return kept[1]
        with torch.inference_mode(False):  # a normal tensor even if first made in inference mode
            grid = self._grid(height, width, dtype, device)
        self._grids[device] = (key, grid)
        return grid

    def _grid(self, height: int, width: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        return I2VF.video_grid(self.genotype, self.T, height, width, frames=self.frames, dtype=dtype, device=device)

    def extra_repr(self) -> str:
        options = [f"genotype='{self.genotype}'", f"T={self.T}", f"frames={self.frames!r}"]
        if self.interpolation != "bilinear":
            options.append(f"interpolation={self.interpolation!r}")
        if self.padding_mode != "zeros":
            options.append(f"padding_mode={self.padding_mode!r}")
        return ", ".join(options)
