"""The upper level of DAS's bi-level problem (the paper's Eq. 2): update ``τ`` on validation batches.

Eq. 2 asks for ``min_τ L_val(τ, w*(τ))`` with ``w*(τ) = argmin_w L_train(w, τ)``. Following DARTS
(Liu et al., ICLR 2019, Sec. 2.3), ``w*(τ)`` is approximated by one step of the network's optimiser:

* **first order**: ``w*(τ) ≈ w``, so the update direction is ``∇_τ L_val(w, τ)``;
* **second order**: ``w*(τ) ≈ w' = w - ξ d(w, τ)`` with ``d`` the step the network's SGD would take
  (gradient of ``L_train``, plus its momentum and weight decay), and::

      ∇_τ L_val(w', τ) - ∇²_{τ,w} L_train(w, τ) · v,    v = ξ c ⊙ ∇_{w'} L_val(w', τ)

  where the Hessian-vector product is a central finite difference,
  ``(∇_τ L_train(w⁺, τ) - ∇_τ L_train(w⁻, τ)) / 2ε`` with ``w± = w ± ε v`` and ``ε = radius / ‖v‖``
  (DARTS: ``radius = 0.01``). ``ξ`` is each weight's own learning rate (its parameter group's), so
  groups with different rates unroll exactly. With SGD momentum (Nesterov, dampening) the step's
  derivative in the gradient is a factor ``c`` (``1 + μ`` for Nesterov); DARTS's plain-momentum
  case has ``c = 1``.

Under ``DistributedDataParallel`` every gradient the architect forms is averaged over the ranks, so
``τ`` gets the same update everywhere and stays identical.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .stem import arch_parameters, network_parameters

__all__ = ["Architect"]

Batch = Sequence[Any]  # (inputs, targets)
LossFn = Callable[[Any, Any], Tensor]


class Architect:
    """DARTS update of the stem's ``τ`` (and learnt magnitudes) on validation batches (Eq. 2).

    Args:
        model: the whole searched model (stem + video network), plain or wrapped in
            ``DistributedDataParallel``; its stems' :meth:`arch_parameters` are what gets updated.
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar``, e.g. ``nn.CrossEntropyLoss()``.
        order: ``"first"`` or ``"second"`` (unrolled, finite-difference Hessian-vector product).
        optimizer: the upper-level optimiser over the arch parameters; default DARTS's
            ``Adam(lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)``.
        network_optimizer: the lower-level optimiser; the second order reads each weight's learning rate
            ``ξ`` from that weight's parameter group (and, for ``torch.optim.SGD``, momentum, momentum
            buffers and weight decay) to unroll.
        unrolled_lr: ``ξ`` when no ``network_optimizer`` is given.
        radius: the finite difference's step length in weight space, ``ε ‖v‖`` (DARTS: 0.01).

    Examples:
        >>> architect = Architect(model, nn.CrossEntropyLoss(), order="second", network_optimizer=w_opt)
        >>> for (x, y), (x_val, y_val) in zip(train_loader, val_loader):
        ...     architect.step((x, y), (x_val, y_val))     # τ, on validation data
        ...     w_opt.zero_grad(); loss_fn(model(x), y).backward(); w_opt.step()   # w, as usual

    ``step`` changes nothing but the arch parameters (and its optimiser's state): network weights,
    their ``.grad`` and buffers such as BatchNorm statistics are left as they were.

    Raises:
        ValueError: no searchable stem in ``model``; an arch parameter with ``requires_grad=False``
            (when built, or at a ``step``); the second order with every network weight frozen, or
            without ``network_optimizer`` or ``unrolled_lr``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        *,
        order: Literal["first", "second"] = "first",
        optimizer: torch.optim.Optimizer | None = None,
        network_optimizer: torch.optim.Optimizer | None = None,
        unrolled_lr: float | None = None,
        radius: float = 0.01,
    ) -> None:
        if order not in ("first", "second"):
            raise ValueError(f"order must be one of ['first', 'second'], got {order!r}")
        self.model, self.loss_fn, self.order = model, loss_fn, order
        self.arch = arch_parameters(model)
        if not self.arch:
            raise ValueError("the model holds no searchable stem: build one with img2vid.searchable_stem")
        self.weights = [p for p in network_parameters(model) if p.requires_grad]
        if order == "second" and not self.weights:
            raise ValueError("the second order unrolls a step of the network's weights, but every weight has "
                             "requires_grad=False; use order='first', or leave some weights trainable")
        self._check_arch_trainable()
        self.optimizer = optimizer or torch.optim.Adam(self.arch, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
        self.network_optimizer = network_optimizer
        self.unrolled_lr = unrolled_lr
        self.radius = radius
        if order == "second" and network_optimizer is None and unrolled_lr is None:
            raise ValueError("the second order needs network_optimizer= or unrolled_lr= (the step size ξ)")

    # -- public ------------------------------------------------------------------------------------

    def step(self, train_batch: Batch, val_batch: Batch) -> Tensor:
        """One upper-level update. Returns the validation loss it saw (detached; at the unrolled
        weights ``w'`` for the second order)."""
        grads, loss = self.arch_gradients(train_batch, val_batch)
        for p, g in zip(self.arch, grads):
            p.grad = g
        self.optimizer.step()
        for p in self.arch:
            p.grad = None
        return loss

    def arch_gradients(self, train_batch: Batch, val_batch: Batch) -> tuple[list[Tensor], Tensor]:
        """The upper-level gradient (first or second order) and the validation loss, without stepping."""
        self._check_arch_trainable()  # again: τ may have been frozen since the architect was built
        with self._kept_buffers(), self._no_sync():
            if self.order == "first":
                loss = self._loss(val_batch)
                return self._average(self._grad(loss, self.arch)), loss.detach()
            return self._second_order(train_batch, val_batch)

    # -- the unrolled gradient ---------------------------------------------------------------------

    def _second_order(self, train_batch: Batch, val_batch: Batch) -> tuple[list[Tensor], Tensor]:
        xis = self._xis()
        original = [w.detach().clone() for w in self.weights]
        try:
            # w' = w - ξ d(w, τ): the step the network optimiser is about to take, each weight with the
            # learning rate of its own parameter group.
            train_grads = self._average(self._grad(self._loss(train_batch), self.weights))
            steps, factors = self._direction(original, train_grads)
            self._assign([w - xi * d for w, d, xi in zip(original, steps, xis)])
            loss = self._loss(val_batch)
            grads = self._average(self._grad(loss, self.arch + self.weights))
            arch_grads = grads[: len(self.arch)]
            # ∂w'/∂τ = -ξ c ∂²L_train/∂w∂τ per weight, so the finite difference runs along
            # v = ξ c ⊙ ∇_{w'} L_val and its result is subtracted as it is.
            v = [xi * c * g for xi, c, g in zip(xis, factors, grads[len(self.arch):])]

            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in v]))
            if float(norm) == 0.0:  # L_val does not depend on w: no second-order term
                return arch_grads, loss.detach()
            eps = self.radius / norm
            self._assign([w + eps * g for w, g in zip(original, v)])
            plus = self._average(self._grad(self._loss(train_batch), self.arch))
            self._assign([w - eps * g for w, g in zip(original, v)])
            minus = self._average(self._grad(self._loss(train_batch), self.arch))
            hessian_v = [(p - m) / (2 * eps) for p, m in zip(plus, minus)]
            return [g - h for g, h in zip(arch_grads, hessian_v)], loss.detach()
        finally:
            self._assign(original)

    def _xis(self) -> list[float]:
        """``ξ`` per weight: ``unrolled_lr``, or the learning rate of the weight's own parameter group."""
        if self.unrolled_lr is not None:
            return [float(self.unrolled_lr)] * len(self.weights)
        return [float(self._group(w)["lr"]) for w in self.weights]

    def _group(self, p: Tensor) -> dict[str, Any]:
        assert self.network_optimizer is not None
        for group in self.network_optimizer.param_groups:
            if any(q is p for q in group["params"]):
                return group
        return self.network_optimizer.param_groups[0]

    def _direction(self, weights: list[Tensor], grads: list[Tensor]) -> tuple[list[Tensor], list[float]]:
        """The step ``torch.optim.SGD`` is about to take, before its learning rate (gradient plus weight
        decay, through its momentum buffer and Nesterov), and per weight the factor ``c = ∂step/∂grad``
        (1 without momentum; ``1 - dampening``, or ``1 + momentum (1 - dampening)`` with Nesterov).
        Other optimisers: the plain gradient, ``c = 1``."""
        opt = self.network_optimizer
        if not isinstance(opt, torch.optim.SGD):
            return grads, [1.0] * len(grads)
        steps, factors = [], []
        for p, w, g in zip(self.weights, weights, grads):
            group = self._group(p)
            d = g + group["weight_decay"] * w
            momentum, factor = group["momentum"], 1.0
            if momentum:
                buf = opt.state.get(p, {}).get("momentum_buffer")
                if buf is None:  # SGD's first step starts the buffer at d
                    buf = d
                else:
                    buf = momentum * buf + (1 - group["dampening"]) * d
                    factor = 1 - group["dampening"]
                if group["nesterov"]:
                    d, factor = d + momentum * buf, 1 + momentum * factor
                else:
                    d = buf
            steps.append(d)
            factors.append(factor)
        return steps, factors

    # -- helpers -----------------------------------------------------------------------------------

    def _check_arch_trainable(self) -> None:
        frozen = [p for p in self.arch if not p.requires_grad]
        if frozen:
            names = {id(p): name for name, p in self.model.named_parameters()}
            listed = [names.get(id(p), f"a {tuple(p.shape)} parameter") for p in frozen]
            raise ValueError(f"the architect updates the stem's arch parameters, but {listed} have "
                             "requires_grad=False; call requires_grad_(True) on them (to hold τ still, skip "
                             "architect.step instead)")

    def _loss(self, batch: Batch) -> Tensor:
        inputs, targets = batch
        return self.loss_fn(self.model(inputs), targets)

    @staticmethod
    def _grad(loss: Tensor, params: list[nn.Parameter]) -> list[Tensor]:
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    @staticmethod
    def _average(grads: list[Tensor]) -> list[Tensor]:
        """Mean over the ranks of a process group (a no-op on one process)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return grads
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        return [chunk.view_as(g) for chunk, g in zip(flat.split([g.numel() for g in grads]), grads)]

    @torch.no_grad()
    def _assign(self, values: list[Tensor]) -> None:
        for w, value in zip(self.weights, values):
            w.copy_(value)

    @contextlib.contextmanager
    def _kept_buffers(self) -> Iterator[None]:
        saved = [(b, b.detach().clone()) for b in self.model.buffers()]
        try:
            yield
        finally:
            with torch.no_grad():
                for b, value in saved:
                    b.copy_(value)

    def _no_sync(self) -> contextlib.AbstractContextManager[Any]:
        # The architect reduces its own gradients; DDP's bucketed all-reduce must not wait on them.
        no_sync = getattr(self.model, "no_sync", None)
        return no_sync() if isinstance(self.model, nn.parallel.DistributedDataParallel) and no_sync else \
            contextlib.nullcontext()
