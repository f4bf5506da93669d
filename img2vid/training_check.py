"""A check on the user's training loop: fusion parameters that get gradients but never change.

:func:`~img2vid.temporalize` and :func:`~img2vid.wrap` add new parameters (GSF's gates, fusion convs
and residual scales). An optimizer built *before* them does not hold those parameters: GSF's
zero-initialised scale then stays zero and the video network is the 2D network plus its cost, with
no error anywhere. So for its first optimizer steps a temporalized model with fusion parameters is
watched, through PyTorch's public optimizer step hook
(:func:`torch.optim.optimizer.register_optimizer_step_post_hook`): an optimizer that steps the
model's other weights but holds none of its fusion parameters, while those get non-zero gradients
and never change, draws one ``UserWarning`` naming the optimizer and the fix. An optimizer that holds
them ends the watch at its first step, so a loop that builds it after ``wrap`` is never warned.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

__all__ = ["PATIENCE", "STEPS", "watch_fusion"]

STEPS = 20  # optimizer steps of a model after which it is no longer watched
PATIENCE = 3  # steps with gradients and no change before the warning

_lock = threading.Lock()
_watches: list[_Watch] = []
_handle: Any = None


class _Watch:
    """The fusion parameters of one temporalized model, and what its optimizer steps did to them."""

    def __init__(self, model: nn.Module, fusion: list[nn.Parameter]) -> None:
        self.model = weakref.ref(model)
        self.name = type(model).__name__
        self.fusion = fusion
        self.initial = [p.detach().clone() for p in fusion]
        fusion_ids = {id(p) for p in fusion}
        self.others = {id(p) for p in model.parameters()} - fusion_ids
        self.fusion_ids = fusion_ids
        self.steps = self.stale = 0

    def after(self, optimizer: torch.optim.Optimizer) -> bool:
        """Look at the model after an optimizer step; ``True`` when the watch is over."""
        if self.model() is None:
            return True
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if not held & self.others:  # an optimizer of another model
            return False
        if held & self.fusion_ids:  # built after temporalize/wrap: the fusion trains
            return True
        self.steps += 1
        with torch.no_grad():
            if any(not torch.equal(p, start) for p, start in zip(self.fusion, self.initial)):
                return True  # another optimizer trains them
            if any(p.grad is not None and bool(p.grad.ne(0).any()) for p in self.fusion):
                self.stale += 1
        if self.stale >= PATIENCE:
            warnings.warn(
                f"{type(optimizer).__name__} has taken {self.steps} steps on {self.name}'s weights but holds "
                f"none of its {len(self.fusion)} fusion parameters (added by img2vid's temporalize/wrap), "
                "which get gradients and never change: the optimizer was built before wrap. Build the "
                "optimizer after wrap/temporalize, or add them: optimizer.add_param_group({'params': "
                "[p for n, p in model.named_parameters() if '.fusion.' in n]})",
                UserWarning, stacklevel=4)
            return True
        return self.steps >= STEPS


def _after_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    global _handle
    with _lock:
        _watches[:] = [watch for watch in _watches if not watch.after(optimizer)]
        if not _watches and _handle is not None:
            _handle.remove()
            _handle = None


def watch_fusion(model: nn.Module) -> None:
    """Watch the first optimizer steps of a temporalized ``model`` (see the module docstring); a model
    without fusion parameters (TSM, ``"none"``) is not watched."""
    global _handle
    fusion = [p for name in model.temporal_sites for p in model.get_submodule(name).fusion.parameters()]
    if not fusion:
        return
    with _lock:
        _watches.append(_Watch(model, fusion))
        if _handle is None:
            _handle = register_optimizer_step_post_hook(_after_step)
