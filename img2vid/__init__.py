"""img2vid: "Your Image is My Video" (Casarin et al., CVPR 2024) for any PyTorch training loop.

Images become clips by repeating one affine motion (:class:`ImageToVideo`); a 2D CNN becomes a video
network by temporal fusion (:func:`temporalize`); :func:`wrap` does both in one call; and the motion
itself is found by differentiable search (:func:`searchable_stem`, :func:`derive_genotype`).
"""

from . import functional, fusion, pictures, rf, search, sites
from .genotype import Genotype
from .ops import OPS
from .search import derive_genotype, searchable_stem
from .temporalize import temporalize
from .video import ImageToVideo
from .wrap import checkpoint_motion, wrap

__version__ = "1.0.0"

__all__ = [
    "OPS",
    "Genotype",
    "ImageToVideo",
    "__version__",
    "checkpoint_motion",
    "derive_genotype",
    "functional",
    "fusion",
    "pictures",
    "rf",
    "search",
    "searchable_stem",
    "sites",
    "temporalize",
    "wrap",
]
