"""The searchable stem: a DARTS-style cell of transformation edges in front of a video network.

Each edge holds every candidate op of the search space and mixes their outputs with the softmax of its
architecture logits ``τ`` (the paper's Eq. 1). Discretised, the cell is a *chain*: edge ``k`` gives
step ``k`` of a :class:`~img2vid.Genotype`, which :class:`~img2vid.ImageToVideo` composes into one
motion. ``docs/search.md`` explains why the cell composes instead of summing at its nodes.

Relaxation (what :meth:`SearchableStem.forward` computes):
    Let ``A[k, t]`` be the forward matrix of op ``t`` on edge ``k`` (the identity for pixel ops) and
    ``w[k] = softmax(τ[k])``. The *context* of edge ``k`` is the rest of the chain at its expected
    matrices ``Ā[j] = Σ_t w[j, t] A[j, t]``::

        M[k, t] = Ā[K] ... Ā[k+1] · A[k, t] · Ā[k-1] ... Ā[1]

    and frame ``p`` of the clip is the average over edges of each edge's Eq. 1 mixture, every term
    resampled once, as ``ImageToVideo`` does::

        clip[p] = 1/K Σ_k Σ_t w[k, t] · warp(Y[|p|], M[k, t]^p)

    ``Y[r]`` is the image after ``r`` passes of the soft pixel chain (each edge mixes its pixel ops'
    outputs with their weights and lets the affine weight through unchanged); it is the image itself
    in a purely affine space. With one-hot weights every term is the discrete chain, so the stem gives
    exactly ``ImageToVideo(stem.genotype())`` — the tests use that as the oracle.

Memory:
    All ops and frames of a chunk of edges go through one ``grid_sample``, and autograd keeps none of
    those warps: their backward (:class:`_WarpEdgesFunction`) warps once more for the weights'
    gradient and runs one ``grid_sample`` backward for the matrices' (the soft pixel passes are
    recomputed with ``torch.utils.checkpoint``). So the stem keeps only its input, a few ``3 x 3``
    matrices and its output clip, however many edges and ops it has; the transient peak is one chunk
    (at most :attr:`SearchableStem.chunk_bytes`, or one edge if that is larger).

Sampling is bilinear with zero padding, ``ImageToVideo``'s defaults.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Union

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..functional import Frames, _check_size, _sample, _sampling_grid, frame_powers, matrix_powers
from ..genotype import Genotype
from ..ops import OPS, check_magnitude, op_names

__all__ = [
    "SPACES",
    "SearchableStem",
    "arch_parameters",
    "edge_list",
    "find_stems",
    "network_parameters",
    "searchable_stem",
]

#: Named search spaces. ``"affine"`` is the paper's own (Sec. 3.2); ``"autoaugment"`` its first space,
#: in the order the paper lists it (Sec. 3.1).
SPACES: dict[str, tuple[str, ...]] = {
    "affine": ("identity", "translate_x", "translate_y", "scale", "rotate"),
    "autoaugment": (
        "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "auto_contrast", "invert", "equalize",
        "solarize", "posterize", "color", "brightness", "sharpness", "cutout", "identity",
    ),
}

Space = Union[str, Sequence[str]]


def edge_list(nodes: int) -> list[tuple[int, int]]:
    """The DARTS edges ``(i, j)``, ``0 <= i < j <= nodes``, in chain order: by ``j``, then by ``i``.

    Node 0 is the input image; ``nodes`` intermediate nodes give ``nodes * (nodes + 1) / 2`` edges
    (10 at ``nodes=4``, the paper's ``5^10``).
    """
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"expected an integer nodes >= 1, got {nodes!r}")
    return [(i, j) for j in range(1, nodes + 1) for i in range(j)]


def _resolve_space(space: Space) -> tuple[str, ...]:
    if isinstance(space, str):
        if space not in SPACES:
            raise ValueError(f"unknown search space {space!r}; valid spaces are {sorted(SPACES)} or a list of "
                             f"op names from {op_names()}")
        return SPACES[space]
    names = tuple(space)
    if not names:
        raise ValueError("a search space needs at least one op")
    for name in names:
        if not isinstance(name, str) or name not in OPS:
            raise ValueError(f"unknown op {name!r} in the search space; valid ops are {op_names()}")
    if len(set(names)) != len(names):
        raise ValueError(f"the search space names an op twice: {list(names)}")
    return names


def _warp_edges(images: Tensor, backward: Tensor, weights: Tensor) -> Tensor:
    """Eq. 1 mixtures of a few edges for every non-zero frame power, summed, in one ``grid_sample``.

    Args:
        images: the frame inputs ``Y[|p|]``, one per frame, or one shared by all frames (``G = 1``).
        backward: per frame, edge and op, the matrix from output to input pixels, ``M[k, t]^-p``.
        weights: per edge and op, the weight of the term (``w[k, t] / K``).

    Shape:
        - images: ``(G, B, C, H, W)`` with ``G`` 1 or ``F``; backward: ``(F, E, N, 3, 3)``;
          weights: ``(E, N)``.
        - Output: ``(B, F, C, H, W)``, the sum over the ``E`` edges.
    """
    groups, batch, channels, height, width = images.shape
    terms = weights.numel()
    grid = _sampling_grid(rearrange(backward, "f e n r c -> (f e n) r c"), height, width)  # (F*E*N, H, W, 2)
    grid = grid.reshape(groups, -1, width, 2)  # (G, F/G * E * N * H, W, 2), rows ordered (f, e, n, h)
    sampled = _sample(rearrange(images, "g b c h w -> g (b c) h w"), grid, "bilinear", "zeros")
    # Contract the (edge, op) axis with one batched matrix product, without permuting the samples:
    # (B*C*F or F*B*C, E*N, H*W). bmm with the weights repeated per batch, not matmul's broadcast,
    # which folds the batch into one mm and so copies the samples transposed, forward and backward.
    sampled = sampled.reshape(-1, terms, height * width)
    mixed = torch.bmm(weights.reshape(1, 1, terms).expand(sampled.shape[0], 1, terms).contiguous(), sampled)
    pattern = "(b c f) 1 (h w) -> b f c h w" if groups == 1 else "(f b c) 1 (h w) -> b f c h w"
    return rearrange(mixed, pattern, b=batch, c=channels, h=height)


class _WarpEdgesFunction(torch.autograd.Function):
    """:func:`_warp_edges` that keeps no samples for backward, with a leaner backward than
    ``torch.utils.checkpoint`` of it.

    The output is ``Σ_t w[t] S_t(images)`` over the terms ``t`` (edge, op), ``S_t`` sampling through
    term ``t``'s grids. Its backward, for the output gradient ``g``:

    - ``∂/∂w[t] = <g, S_t(images)>``: the samples, warped again (as checkpointing would) and
      contracted with ``g`` in one matrix-vector product;
    - ``∂/∂grid_t = w[t] · (grid gradient of S_t under g)``: ``grid_sample``'s backward (through
      ``torch.autograd.grad`` of the samples) with ``g`` shared by all terms (a stride-0 view), scaled
      per term afterwards, then on to the matrices;
    - ``∂/∂images = Σ_t w[t] S_t^T g``, from the same backward when the images need a gradient.

    The terms go through backward in two halves: ``grid_sample``'s backward copies the shared
    gradient into a buffer as large as the samples, and the samples are alive beside it (they are
    its autograd output), so whole chunks would double the transient peak.

    Checkpointing the plain autograd version costs more: its mixing backward writes ``w[t] g`` for
    every term (as large as all samples) before the ``grid_sample`` backward reads it, and it replays
    the forward's bookkeeping. Memory is the same: the frame inputs, the matrices and the weights.

    Shape: as :func:`_warp_edges`.
    """

    @staticmethod
    def forward(ctx: Any, images: Tensor, backward: Tensor, weights: Tensor) -> Tensor:  # type: ignore[override]
        inputs, grid = _per_term(images, backward, weights.numel())
        sampled = _sample(inputs, grid, "bilinear", "zeros")  # (G * terms, B*C, F/G * H, W)
        ctx.save_for_backward(images, backward, weights)
        return _mix(sampled, weights, images.shape)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        images, backward, weights = ctx.saved_tensors
        groups, terms = images.shape[0], weights.numel()
        needs_images, needs_matrices, needs_weights = ctx.needs_input_grad
        with torch.enable_grad():
            matrices = backward.detach().requires_grad_(needs_matrices)
            inputs, grid = _per_term(images.detach(), matrices, terms)
        per_term_inputs = inputs.detach().unflatten(0, (groups, terms))  # (G, terms, B*C, H, W)
        per_term_grid = grid.detach().unflatten(0, (groups, terms))  # (G, terms, F/G * H, W, 2)
        # The output gradient, one copy per group, shared by the terms: (G, B*C, F/G * H, W).
        per_group = rearrange(grad, "b (g f) c h w -> g (b c) (f h) w", g=groups).contiguous()
        images_grad = torch.zeros_like(images) if needs_images else None
        weights_grad = torch.zeros(terms, dtype=weights.dtype, device=weights.device) if needs_weights else None
        grid_grads = []
        # grid_sample's backward copies its (shared) output gradient into a buffer as large as the
        # samples, which are alive too: the terms go in two halves, so the two never exceed one chunk.
        for part in torch.arange(terms).tensor_split(min(2, terms)):
            part = slice(int(part[0]), int(part[-1]) + 1)
            count = part.stop - part.start
            # This half's samples once more, as leaves of a graph of their own: grid_sample's backward
            # under autograd (which keeps the inputs and the grid, not the samples).
            piece_inputs = per_term_inputs[:, part].flatten(0, 1).requires_grad_(needs_images)
            piece_grid = per_term_grid[:, part].flatten(0, 1).requires_grad_(needs_matrices)
            with torch.enable_grad():
                sampled = _sample(piece_inputs, piece_grid, "bilinear", "zeros")  # (G * count, B*C, F/G * H, W)
            if weights_grad is not None:
                weights_grad[part] = (sampled.detach().view(groups, count, -1) @ per_group.view(groups, -1, 1)).sum(
                    (0, 2))
            leaves = [leaf for leaf, needed in ((piece_inputs, needs_images), (piece_grid, needs_matrices)) if needed]
            if not leaves:
                continue
            shared = per_group.unsqueeze(1).expand(groups, count, *per_group.shape[1:]).flatten(0, 1)  # stride 0
            piece_grads = iter(torch.autograd.grad(sampled, leaves, shared))
            del sampled
            if images_grad is not None:  # Σ_t w[t] S_t^T g over this half's terms
                adjoint = next(piece_grads).view(groups, count, -1)
                mixing = weights.reshape(1, 1, terms)[..., part].expand(groups, 1, count).contiguous()
                images_grad += (mixing @ adjoint).view_as(images)
            if needs_matrices:
                grid_grads.append(next(piece_grads).view(groups, count, *per_group.shape[-2:], 2))
        backward_grad = None
        if needs_matrices:
            grid_grad = torch.cat(grid_grads, dim=1) * weights.reshape(1, terms, 1, 1, 1)
            (backward_grad,) = torch.autograd.grad(grid, matrices, grid_grad.flatten(0, 1))
        return images_grad, backward_grad, None if weights_grad is None else weights_grad.view_as(weights)


def _per_term(images: Tensor, backward: Tensor, terms: int) -> tuple[Tensor, Tensor]:
    """Each term's frame inputs (a stride-0 view where all frames share one image) and its grid.

    Shape:
        - images: ``(G, B, C, H, W)``; backward: ``(F, E, N, 3, 3)`` with ``E * N = terms``.
        - Output: inputs ``(G * terms, B*C, H, W)`` and grid ``(G * terms, F/G * H, W, 2)``, rows
          ordered ``(f, h)``.
    """
    groups, batch, channels, height, width = images.shape
    grid = _sampling_grid(rearrange(backward, "(g f) e n r c -> (g e n f) r c", g=groups), height, width)
    grid = grid.reshape(groups * terms, -1, width, 2)
    inputs = rearrange(images, "g b c h w -> g 1 (b c) h w").expand(groups, terms, batch * channels, height, width)
    return inputs.flatten(0, 1), grid  # a copy only when G > 1


def _mix(sampled: Tensor, weights: Tensor, shape: torch.Size) -> Tensor:
    """``Σ_t w[t] sampled[t]`` per group, as the clip ``(B, F, C, H, W)``: one batched matrix product
    over the samples as they lie, ``(G, 1, terms) @ (G, terms, B*C*F/G*H*W)``."""
    groups, batch, channels, height, width = shape
    terms = weights.numel()
    mixing = weights.reshape(1, 1, terms).expand(groups, 1, terms).contiguous()
    mixed = mixing @ sampled.view(groups, terms, -1)
    return rearrange(mixed, "g 1 (b c f h w) -> b (g f) c h w", b=batch, c=channels, h=height, w=width)


class SearchableStem(nn.Module):
    """A DARTS-style cell of transformation edges: images in, relaxed clips out (Sec. 3.1, Eq. 1).

    Build it with :func:`searchable_stem`. Its upper-level parameters (Eq. 2) are :attr:`tau` and, with
    ``learn_magnitudes=True``, :attr:`magnitudes`; :meth:`arch_parameters` lists them, and a network's
    own weights never include them (see :func:`img2vid.search.network_parameters`).

    Attributes:
        ops: the candidate op names, in column order of :attr:`tau`.
        edges: the DARTS edges ``(i, j)`` in chain order; edge ``k`` gives genotype step ``k``.
        tau: ``(K, N)`` architecture logits (Eq. 1's ``τ``), initialised to ``1e-3 · randn`` as in DARTS.
        magnitudes: ``(K, N)`` op magnitudes, from ``OPS[name].default``; a parameter when learnt.

    Shape:
        - Input: ``(B, C, H, W)`` float images in ``[0, 1]``.
        - Output: ``(B, T, C, H, W)``; frame powers as :class:`~img2vid.ImageToVideo`'s.
    """

    #: Edges are warped in chunks whose samples take at most this many bytes (one edge at least).
    chunk_bytes: int = 8 * 2**20

    magnitudes: Tensor
    _low: Tensor
    _high: Tensor
    _keep: Tensor
    _fixed: Tensor

    def __init__(
        self,
        ops: Sequence[str],
        T: int = 5,
        *,
        nodes: int = 4,
        learn_magnitudes: bool = False,
        frames: Frames = "centered",
        magnitudes: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.ops: tuple[str, ...] = _resolve_space(ops)
        self.edges: tuple[tuple[int, int], ...] = tuple(edge_list(nodes))
        self.powers: list[int] = frame_powers(T, frames)
        self.T, self.nodes, self.frames = T, nodes, frames
        self.learn_magnitudes = bool(learn_magnitudes)
        num_edges, num_ops = len(self.edges), len(self.ops)

        self.tau = nn.Parameter(1e-3 * torch.randn(num_edges, num_ops))
        start = _start_magnitudes(self.ops, magnitudes)
        defaults = torch.tensor([start[name] for name in self.ops]).expand(num_edges, num_ops).clone()
        if self.learn_magnitudes:
            self.magnitudes = nn.Parameter(defaults)
        else:
            self.register_buffer("magnitudes", defaults)
        self.register_buffer("_low", torch.tensor([OPS[name].range[0] for name in self.ops]), persistent=False)
        self.register_buffer("_high", torch.tensor([OPS[name].range[1] for name in self.ops]), persistent=False)
        # Selection state (derive_genotype): ops masked out, and edges fixed to one op (-1: free).
        self.register_buffer("_keep", torch.ones(num_edges, num_ops, dtype=torch.bool), persistent=False)
        self.register_buffer("_fixed", torch.full((num_edges,), -1, dtype=torch.long), persistent=False)
        self._affine = [OPS[name].kind == "affine" for name in self.ops]
        self._pixel_columns = [t for t, affine in enumerate(self._affine) if not affine]
        self._affine_columns = [t for t, affine in enumerate(self._affine) if affine]

    # -- the upper level ---------------------------------------------------------------------------

    def arch_parameters(self) -> list[nn.Parameter]:
        """``τ``, and the magnitudes when they are learnt: the upper level of Eq. 2."""
        params = [self.tau]
        if isinstance(self.magnitudes, nn.Parameter):
            params.append(self.magnitudes)
        return params

    def weights(self) -> Tensor:
        """The per-edge softmax of ``τ`` (Eq. 1), over the ops not masked out; a fixed edge is one-hot.

        Shape:
            - Output: ``(K, N)``, rows sum to one.
        """
        logits = self.tau.masked_fill(~self._keep, float("-inf"))
        if not bool(self._keep.any(dim=1).all()):
            raise RuntimeError("every op of an edge is masked out")
        weights = torch.softmax(logits, dim=1)
        fixed = self._fixed >= 0
        if bool(fixed.any()):
            one_hot = torch.nn.functional.one_hot(self._fixed.clamp(min=0), len(self.ops)).to(weights)
            weights = torch.where(fixed.unsqueeze(1), one_hot, weights)
        return weights

    # -- selection state (derive_genotype) --------------------------------------------------------

    @contextlib.contextmanager
    def masked(self, edge: int, op: int) -> Iterator[None]:
        """Inside the block, op ``op`` of edge ``edge`` is left out of its mixture (the others renormalise)."""
        self._check_edge_op(edge, op)
        if not bool(self._keep[edge, op]):
            raise ValueError(f"op {op} of edge {edge} is masked already")
        self._keep[edge, op] = False
        try:
            yield
        finally:
            self._keep[edge, op] = True

    def fix(self, edge: int, op: int) -> None:
        """Fix edge ``edge`` to op ``op`` (one-hot) until :meth:`release`."""
        self._check_edge_op(edge, op)
        self._fixed[edge] = op

    def release(self) -> None:
        """Unfix every edge and unmask every op: the relaxed cell of ``τ`` again."""
        self._keep.fill_(True)
        self._fixed.fill_(-1)

    @contextlib.contextmanager
    def fixed(self, choices: Sequence[int]) -> Iterator[None]:
        """Inside the block every edge ``k`` is fixed to op ``choices[k]``: the discrete chain."""
        if len(choices) != len(self.edges):
            raise ValueError(f"choices needs one op per edge ({len(self.edges)}), got {len(choices)}")
        saved = self._fixed.clone()
        try:
            for k, t in enumerate(choices):
                self.fix(k, t)
            yield
        finally:
            self._fixed.copy_(saved)

    def _check_edge_op(self, edge: int, op: int) -> None:
        if not (isinstance(edge, int) and 0 <= edge < len(self.edges)):
            raise ValueError(f"edge must be an integer in [0, {len(self.edges)}), got {edge!r}")
        if not (isinstance(op, int) and 0 <= op < len(self.ops)):
            raise ValueError(f"op must be an integer in [0, {len(self.ops)}) (a column of tau), got {op!r}")

    def op_magnitudes(self) -> Tensor:
        """The magnitudes in use: learnt ones clamped to each op's range. Shape: ``(K, N)``."""
        return torch.maximum(torch.minimum(self.magnitudes, self._high), self._low)

    def genotype(self) -> Genotype:
        """The naive arg-max of ``τ`` per edge, as a chain in edge order (kept for comparison;
        :func:`~img2vid.search.derive_genotype` is the paper's selection)."""
        return self.genotype_of(self.weights().argmax(dim=1).tolist())

    def genotype_of(self, choices: Sequence[int]) -> Genotype:
        """The chain that picks op ``choices[k]`` on edge ``k``, with the stem's magnitudes."""
        magnitudes = self.op_magnitudes().detach().cpu()
        steps: list[tuple[str, float] | str] = []
        for k, t in enumerate(choices):
            op = OPS[self.ops[t]]
            if not op.takes_magnitude:
                steps.append(op.name)
                continue
            value = _shortest(magnitudes[k, t])
            steps.append((op.name, float(round(value)) if op.integer else value))
        return Genotype(steps)

    # -- the relaxed clip --------------------------------------------------------------------------

    def _matrices(self, magnitudes: Tensor, height: int, width: int) -> Tensor:
        """Forward matrix of every (edge, op); identity for pixel ops. Shape: ``(K, N, 3, 3)``."""
        eye = torch.eye(3, dtype=magnitudes.dtype, device=magnitudes.device).expand(len(self.edges), 3, 3)
        columns = [OPS[name].matrix(magnitudes[:, t], height, width) if self._affine[t] else eye
                   for t, name in enumerate(self.ops)]
        return torch.stack(columns, dim=1)

    def _soft_pixel_pass(self, y: Tensor, weights: Tensor, magnitudes: Tensor) -> Tensor:
        """One pass of the soft pixel chain: edge by edge, ``y <- a_k y + Σ_pixel w[k, t] op_t(y)``."""
        for k in range(len(self.edges)):
            mixed = y * weights[k, self._affine_columns].sum()
            for t in self._pixel_columns:
                mixed = mixed + weights[k, t] * OPS[self.ops[t]](y, magnitudes[k, t])
            y = mixed
        return y

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"the stem takes float images (B, C, H, W), got {shape}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            what = "an empty batch" if x.shape[0] == 0 else "images with no channels"
            raise ValueError(f"the stem takes at least one image with at least one channel, got {what}: shape "
                             f"{tuple(x.shape)}")
        _check_size(x.shape[-2], x.shape[-1], "image", x.shape)
        _, _, height, width = x.shape
        weights = self.weights().to(x.dtype)  # (K, N)
        magnitudes = self.op_magnitudes().to(x.dtype)
        matrices = self._matrices(magnitudes, height, width)  # (K, N, 3, 3)
        num_edges = len(self.edges)

        # Context of edge k: the expected matrices of the edges before (prefix) and after (suffix) it.
        expected = torch.einsum("kn,knij->kij", weights, matrices)
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        prefix, suffix = [eye], [eye]
        for k in range(num_edges - 1):
            prefix.append(expected[k] @ prefix[-1])
            suffix.append(suffix[-1] @ expected[num_edges - 1 - k])
        in_context = torch.stack(suffix[::-1])[:, None] @ matrices @ torch.stack(prefix)[:, None]  # (K, N, 3, 3)

        moving = [p for p in self.powers if p != 0]
        # Frame inputs Y[|p|]: r passes of the soft pixel chain (just the image in an affine space).
        passes = [x]
        if self._pixel_columns:
            for _ in range(max((abs(p) for p in self.powers), default=0)):
                passes.append(self._checkpointed(self._soft_pixel_pass, passes[-1], weights, magnitudes))

        frames: dict[int, Tensor] = {0: passes[0]}
        if moving:
            if self._pixel_columns:
                images = torch.stack([passes[abs(p)] for p in moving])  # (F, B, C, H, W)
            else:
                images = x.unsqueeze(0)  # every frame warps the image itself: (1, B, C, H, W)
            backward = rearrange(matrix_powers(in_context, [-p for p in moving]), "k n f r c -> f k n r c")
            terms = weights / num_edges  # the mean over edges, folded into the Eq. 1 weights
            # Edges go through grid_sample a few at a time, each chunk recomputed in backward, so the
            # transient samples stay under chunk_bytes (or one edge's, if that is larger).
            per_edge = x.numel() * len(moving) * len(self.ops) * x.element_size()
            step = max(1, self.chunk_bytes // max(per_edge, 1))
            mixed = None
            for start in range(0, num_edges, step):
                chunk = slice(start, start + step)
                part = self._checkpointed(_warp_edges, images, backward[:, chunk], terms[chunk])
                mixed = part if mixed is None else mixed + part
            assert mixed is not None
            frames.update({p: mixed[:, i] for i, p in enumerate(moving)})
        return torch.stack([frames[p] for p in self.powers], dim=1)

    def _checkpointed(self, fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
        # Never keep every op's clip for backward (the paper's memory limit): the warps go through
        # _WarpEdgesFunction, whose backward needs no samples; other steps are recomputed in backward.
        if torch.is_grad_enabled() and any(a.requires_grad for a in args):
            if fn is _warp_edges and not (args[0].is_cuda and torch.are_deterministic_algorithms_enabled()):
                return _WarpEdgesFunction.apply(*args)  # (its grid_sample backward scatters on CUDA)
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def extra_repr(self) -> str:
        return (f"ops={list(self.ops)}, T={self.T}, nodes={self.nodes} ({len(self.edges)} edges), "
                f"learn_magnitudes={self.learn_magnitudes}, frames={self.frames!r}")


def searchable_stem(
    space: Space = "affine",
    T: int = 5,
    *,
    nodes: int = 4,
    learn_magnitudes: bool = False,
    frames: Frames = "centered",
    magnitudes: Mapping[str, float] | None = None,
) -> SearchableStem:
    """A searchable stem: ``(B, C, H, W) -> (B, T, C, H, W)``, a cell of mixed transformation edges.

    Args:
        space: ``"affine"`` (identity, translate_x, translate_y, scale, rotate: ``5^10`` choices at
            ``nodes=4``), ``"autoaugment"`` (the paper's first space, 15 ops), or a list of op names.
        T: frames per clip, ``>= 1``.
        nodes: intermediate nodes of the cell; it has ``nodes * (nodes + 1) / 2`` edges.
        learn_magnitudes: make the magnitudes (from ``OPS[name].default``) upper-level parameters too,
            clamped to ``OPS[name].range``.
        frames: ``"centered"`` or ``"forward"``, as in :class:`~img2vid.ImageToVideo`.
        magnitudes: op name -> magnitude, replacing ``OPS[name].default`` for those ops (the start
            value when learnt), e.g. ``{"translate_x": 0.12, "rotate": 20.0}``; every name must be an
            op of the space that takes a magnitude, every value in that op's range.

    Shape:
        - Input: ``(B, C, H, W)``; output: ``(B, T, C, H, W)``.

    Examples:
        >>> stem = searchable_stem("affine", T=5)
        >>> stem(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 5, 3, 32, 32])
    """
    return SearchableStem(_resolve_space(space), T, nodes=nodes, learn_magnitudes=learn_magnitudes, frames=frames,
                          magnitudes=magnitudes)


def _start_magnitudes(ops: Sequence[str], magnitudes: Mapping[str, float] | None) -> dict[str, float]:
    """Each op's magnitude: ``OPS[name].default`` unless ``magnitudes`` names it (checked)."""
    start = {name: OPS[name].default for name in ops}
    for name, value in (magnitudes or {}).items():
        if name not in start or not OPS[name].takes_magnitude:
            valid = [op for op in ops if OPS[op].takes_magnitude]
            raise ValueError(f"magnitudes names {name!r}, which is not an op of this space taking a magnitude; "
                             f"valid: {valid}")
        check_magnitude(name, value)
        start[name] = float(value)
    return start


def _shortest(value: Tensor) -> float:
    # A float32 magnitude of 0.05 reads 0.05, not 0.05000000074505806 (numpy prints the shortest repr).
    return float(str(value.numpy())) if value.dtype == torch.float32 else float(value)


def find_stems(model: nn.Module) -> list[SearchableStem]:
    """Every :class:`SearchableStem` inside ``model`` (itself included)."""
    return [m for m in model.modules() if isinstance(m, SearchableStem)]


def network_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The lower-level weights of Eq. 2: every parameter of ``model`` that no stem lists as an
    architecture parameter. Give these to the network optimiser."""
    arch = {id(p) for stem in find_stems(model) for p in stem.arch_parameters()}
    return [p for p in model.parameters() if id(p) not in arch]


def arch_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The upper-level parameters of every stem inside ``model``."""
    return [p for stem in find_stems(model) for p in stem.arch_parameters()]

