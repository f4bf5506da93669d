"""DAS: differentiable search for the motion (the paper's Sec. 3.1).

:func:`searchable_stem` builds the relaxed cell (Eq. 1), :class:`Architect` updates its ``τ`` on
validation batches (Eq. 2, first or second order), and :func:`derive_genotype` discretises it by
perturbation-based selection into a :class:`~img2vid.Genotype` that :class:`~img2vid.ImageToVideo` takes.
"""

from .architect import Architect
from .recalibrate import recalibrated_batchnorm
from .select import derive_genotype
from .stem import SPACES, SearchableStem, arch_parameters, edge_list, network_parameters, searchable_stem

__all__ = [
    "SPACES",
    "Architect",
    "SearchableStem",
    "arch_parameters",
    "derive_genotype",
    "edge_list",
    "network_parameters",
    "recalibrated_batchnorm",
    "searchable_stem",
]
