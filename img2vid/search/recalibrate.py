"""BatchNorm statistics recalibrated for the network as it is now, and put back afterwards.

A searched network's running BatchNorm statistics describe the *mixture* of clips it was trained on.
Masking an op, or fixing an edge, changes the clips, and the stale statistics then judge the new
network unfairly; one-shot NAS recalibrates them per evaluated configuration (SPOS, Guo et al. 2020),
and darts-pt's selection (Wang et al. 2021) evaluates after training on the perturbed supernet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["recalibrated_batchnorm"]


@contextlib.contextmanager
def recalibrated_batchnorm(model: nn.Module, inputs: Iterable[Tensor]) -> Iterator[nn.Module]:
    """Inside the block, ``model`` is in eval mode with BatchNorm statistics re-estimated on ``inputs``.

    Every BatchNorm layer that tracks running statistics forgets them and re-estimates them as the
    plain average over the batches of ``inputs`` (``momentum=None``), with gradients off; nothing else
    changes (parameters, other buffers). On leaving, statistics, momenta and the train/eval mode are put
    back exactly as they were, also after an error.

    Examples:
        >>> with recalibrated_batchnorm(model, (x[i:i + 64] for i in range(0, 256, 64))):
        ...     accuracy = (model(x_val).argmax(1) == y_val).float().mean()

    Shape:
        - ``inputs``: batches the model takes, e.g. ``(B, C, H, W)`` training images.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, {name: buf.clone() for name, buf in m.named_buffers(recurse=False) if buf is not None})
             for m in norms]
    was_training = [(m, m.training) for m in model.modules()]
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        seen = 0
        with torch.no_grad():
            for batch in inputs:
                model(batch)
                seen += 1
        if seen == 0 and norms:
            raise ValueError("recalibrated_batchnorm got no input batch to estimate BatchNorm statistics from")
        model.eval()
        yield model
    finally:
        with torch.no_grad():
            for m, (momentum, buffers) in zip(norms, saved):
                m.momentum = momentum
                for name, value in buffers.items():
                    getattr(m, name).copy_(value)
        for m, mode in was_training:
            m.training = mode
