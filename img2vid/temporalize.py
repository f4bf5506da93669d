"""temporalize: any 2D CNN or vision transformer becomes a video network, in one call, without losing
its weights.

The surgery edits the model in place and returns it, through module hooks only (no class changes):

1. **Sites.** Fusion modules go on *sites*, layers that see frame batches ``(B*T, C, H, W)``
   (found by :mod:`img2vid.sites`, or named with ``where=``). Each site gains one child, ``fusion``,
   and one hook: a forward pre-hook when the fusion acts on the site's input (TSM), a forward hook
   when it acts on its output (GSF, ``"none"``). The site's class, attributes and parameter names
   are untouched.
2. **The root.** The model gets a forward pre-hook that takes the clip ``(B, T, C, H, W)``, opens a
   :class:`Call` (its ``B`` and ``T``) for the current thread and hands the frames ``(B*T, C, H, W)``
   to the model's own forward, and a forward hook (``always_call``) that closes the call and gives
   the per-frame outputs a ``T`` axis, averaged (``reduce="mean"``) or kept (``reduce=None``).
3. **T travels with the call.** A site's hook reads the innermost open call of its thread
   (:func:`current_call`) to view its frames as clips; no module attribute holds ``T``, so one model
   serves concurrent threads with any ``T``. A site that sees another batch than its call's ``B*T``
   frames, or runs outside a temporalized model's forward, raises.

``isinstance(model, ResNet)`` holds because the model *is* a ResNet; a checkpoint of the 2D model
loads with ``strict=False``, missing only ``*.fusion.*`` keys; hooks are module-level functions, so
the model pickles, deep-copies, compiles and exports as it did. See ``docs/design.md``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, Optional, Union

import torch
from einops import rearrange
from torch import Tensor, nn

from .fusion import FUSIONS, TOKEN_FUSIONS, make_fusion
from .sites import default_sites, transformer_blocks
from .training_check import watch_fusion

__all__ = [
    "Call",
    "close_call",
    "current_call",
    "insert_fusion",
    "is_site",
    "is_temporal",
    "map_named_outputs",
    "map_outputs",
    "open_call",
    "per_frame",
    "reduce_frames",
    "temporal_call",
    "temporalize",
]

Where = Union[Iterable[str], Callable[[str, nn.Module], bool], None]
Reduce = Optional[str]

_REDUCES = ("mean", None)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_FUSION_CLASSES = tuple({*FUSIONS.values(), *TOKEN_FUSIONS.values()})


# --------------------------------------------------------------------------------------------------
# The call: what one forward of a temporalized model tells its sites
# --------------------------------------------------------------------------------------------------


class Call(NamedTuple):
    """One forward call of a temporalized model, as its sites see it.

    Attributes:
        model: the temporalized model whose forward is running.
        batch: ``B``, the clips in the call.
        T: frames per clip.
        fused: one entry per site that fused during the call (checked when the call closes).
    """

    model: nn.Module
    batch: int
    T: int
    fused: list[int]


# Per thread, the stack of open calls, innermost last (a temporalized model may run inside another's
# forward). Thread-local like torch.no_grad and autocast; torch.compile traces its reads and writes.
_calls = threading.local()


def current_call() -> Call | None:
    """The innermost temporalized forward running in this thread, or ``None`` outside any."""
    stack = getattr(_calls, "stack", ())
    return stack[-1] if stack else None


def _open(call: Call) -> None:
    _calls.stack = (*getattr(_calls, "stack", ()), call)


def _close(model: nn.Module) -> Call | None:
    """Close ``model``'s innermost call and return it (``None`` if its forward never opened one)."""
    stack = getattr(_calls, "stack", ())
    if not stack or stack[-1].model is not model:
        return None
    _calls.stack = stack[:-1]
    return stack[-1]


@contextlib.contextmanager
def temporal_call(model: nn.Module, batch: int, T: int) -> Iterator[Call]:
    """Run a temporalized ``model``'s parts (e.g. one site) outside its forward, as inside a call of
    ``batch`` clips of ``T`` frames: what the model's forward does around its own body.

    Examples:
        >>> with temporal_call(model, batch=2, T=3):
        ...     out = model.layer1[0].conv1(frames)  # frames: (2 * 3, 64, H, W)
    """
    call = Call(model, int(batch), int(T), [])
    _open(call)
    try:
        yield call
    finally:
        _close(model)


# --------------------------------------------------------------------------------------------------
# The hooks (module-level functions: they pickle and deep-copy by reference)
# --------------------------------------------------------------------------------------------------


def _fuse(site: nn.Module, frames: Any) -> Tensor:
    """View a site's frames ``(B*T, ...)`` as clips of the current call, fuse, and flatten back."""
    call = current_call()
    if call is None:
        raise RuntimeError(
            f"a fusion site ({type(site).__name__}) runs only inside its temporalized model's forward, "
            "which tells it T; call the whole model, or wrap a standalone call in "
            "img2vid.temporalize.temporal_call(model, batch, T)"
        )
    if not isinstance(frames, Tensor) or frames.ndim < 2 or frames.shape[0] != call.batch * call.T:
        shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(
            f"a fusion site ({type(site).__name__}) expects the call's B*T = {call.batch}*{call.T} = "
            f"{call.batch * call.T} frames on the batch axis, got {shape}; a model that folds patches or "
            "views into the batch needs its sites chosen (where=) where the batch holds the frames only"
        )
    # (B*T, C, H, W) for a CNN, (B*T, N, D) or (B*T, H, W, D) tokens for a transformer
    clip = rearrange(frames, "(b t) ... -> b t ...", t=call.T)
    call.fused.append(1)
    return rearrange(site.fusion(clip), "b t ... -> (b t) ...")


def _fuse_input(site: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook of a site whose fusion acts on its input (TSM)."""
    return (_fuse(site, args[0]), *args[1:])


def _fuse_output(site: nn.Module, args: tuple[Any, ...], out: Any) -> Tensor:
    """Forward hook of a site whose fusion acts on its output (GSF, ``"none"``)."""
    return _fuse(site, out)


def open_call(model: nn.Module, clip: Tensor) -> Tensor:
    """Open a call of ``model`` for ``clip`` and return its frames. Shape: ``(B, T, C, H, W) -> (B*T, C, H, W)``."""
    _open(Call(model, clip.shape[0], clip.shape[1], []))
    return rearrange(clip, "b t c h w -> (b t) c h w")


def close_call(model: nn.Module, out: Any) -> Any:
    """Close ``model``'s call and give its per-frame outputs a ``T`` axis, ``(B*T, ...) -> (B, T, ...)``.

    ``None`` (the model's forward raised, or never ran) closes the call and returns ``None``.
    """
    call = _close(model)
    if call is None or out is None:
        return None
    if not call.fused and getattr(model, "temporal_sites", ()):
        name = type(model).__name__
        raise RuntimeError(
            f"none of the {len(model.temporal_sites)} fusion sites of this temporalized {name} fused during its "
            f"forward, so its output would be the 2D network's. Under torch.compile this happens when Dynamo "
            f"reuses code it compiled for a plain {name} called on frames of the same shape (Dynamo does not "
            "guard on module hooks): call torch.compiler.reset() before compiling the temporalized model, or "
            "compile it before any plain model of its class. Otherwise the forward never reaches the sites "
            "chosen with where="
        )
    return per_frame(out, call.batch, call.T, None)


def _clips_in(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict]:
    """Forward pre-hook of a temporalized model: clip in, frames to the model's own forward."""
    if not args:
        raise TypeError(f"a temporalized {type(model).__name__} takes the clip (B, T, C, H, W) as its first "
                        "positional argument")
    _check_clip(args[0], model)
    return (open_call(model, args[0]), *args[1:]), kwargs


def _frames_out(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Any:
    """Forward hook (``always_call``) of a temporalized model: close the call, reduce over ``T``."""
    clips = close_call(model, out)
    return None if clips is None else reduce_frames(clips, model.temporal_reduce)


def _extra_repr(model: nn.Module) -> str:
    """``repr`` of a temporalized model: its own, then the surgery (and a wrapped model's motion)."""
    own = [type(model).extra_repr(model)]
    video = getattr(model, "image_to_video", None)
    if video is not None:
        own.append(f"genotype='{video.genotype}', T={video.T}, frames={video.frames!r}")
    own.append(f"fusion={model.temporal_fusion!r}, reduce={model.temporal_reduce!r}, "
               f"sites={len(model.temporal_sites)}")
    return ", ".join(part for part in own if part)


def _ignore_motion(model: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook of a temporalized model: a wrapped checkpoint's motion (its
    ``"_extra_state"``) is for :func:`~img2vid.wrap`; a model that takes clips has none and drops it."""
    state = state_dict.get(prefix + "_extra_state")
    if isinstance(state, dict) and "genotype" in state:
        del state_dict[prefix + "_extra_state"]


def _check_stem(conv: nn.Conv2d, args: tuple[Any, ...]) -> None:
    """Forward pre-hook of the model's first registered ``Conv2d``: inside a call, frames with another
    channel count than the conv takes get an error that says where they came from. (That conv need not
    be the stem: then it sees features of its own width, and nothing is refused.)"""
    call, frames = current_call(), args[0] if args else None
    expected = conv.in_channels
    if call is None or not isinstance(frames, Tensor) or frames.ndim != 4 or not expected:
        return
    if frames.shape[1] == expected:
        return
    if hasattr(call.model, "image_to_video"):
        raise ValueError(f"the wrapped {type(call.model).__name__} takes images with C = {expected} channels "
                         f"(in_channels of its first Conv2d), got {frames.shape[1]}")
    hint = ("; a (B, C, T, H, W) clip must be permuted first: clip.transpose(1, 2)" if call.T == expected
            else "")
    raise ValueError(f"the temporalized {type(call.model).__name__} takes clips (B, T, C, H, W) with C = "
                     f"{expected} (in_channels of its first Conv2d), got a clip of shape "
                     f"{(call.batch, call.T, *frames.shape[1:])}{hint}")


def _check_clip(clip: Any, model: nn.Module) -> None:
    if not isinstance(clip, Tensor):
        raise TypeError(f"a temporalized model takes a clip tensor (B, T, C, H, W), got {type(clip).__name__}")
    if clip.ndim == 4:
        raise ValueError(
            f"a temporalized model takes clips (B, T, C, H, W), got a 4-D batch {tuple(clip.shape)}; "
            "images go through img2vid.wrap (or add a frame axis: x.unsqueeze(1))"
        )
    if clip.ndim != 5:
        raise ValueError(f"a temporalized model takes clips (B, T, C, H, W), got shape {tuple(clip.shape)}")
    if clip.shape[0] < 1 or clip.shape[1] < 1:
        raise ValueError(f"expected B >= 1 clips of T >= 1 frames, got shape {tuple(clip.shape)}")


# --------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------


def map_outputs(out: Any, fn: Callable[[Tensor], Any], what: str = "split") -> Any:
    """Apply ``fn`` to every tensor of a model output, keeping its structure: dicts per key (their
    own type kept), named tuples, tuples and lists per item; ``None`` stays ``None``.

    Raises:
        TypeError: an output of another type (``what`` names the operation in the message).
    """
    return map_named_outputs(out, lambda tensor, _: fn(tensor), what)


def map_named_outputs(out: Any, fn: Callable[[Tensor, str], Any], what: str = "split", key: str = "output") -> Any:
    """:func:`map_outputs` with ``fn(tensor, key)``: ``key`` names the tensor's place in the output
    (``"output"``, ``"output['out']"``, ``"output[1]"``) for error messages."""
    if out is None:
        return None
    if isinstance(out, Tensor):
        return fn(out, key)
    if isinstance(out, Mapping):
        mapping: Any = type(out)  # dict, OrderedDict ...: keep the model's own type
        return mapping((k, map_named_outputs(value, fn, what, f"{key}[{k!r}]")) for k, value in out.items())
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # named tuple, e.g. InceptionOutputs
        return type(out)(*(map_named_outputs(item, fn, what, f"{key}.{field}")
                           for field, item in zip(out._fields, out)))
    if isinstance(out, (tuple, list)):
        return type(out)(map_named_outputs(item, fn, what, f"{key}[{i}]") for i, item in enumerate(out))
    raise TypeError(f"cannot {what} a model output of type {type(out).__name__}")


def per_frame(out: Any, batch: int, T: int, reduce: Reduce) -> Any:
    """Give per-frame outputs ``(B*T, ...)`` a ``T`` axis, ``(B, T, ...)``, then reduce it
    (:func:`reduce_frames`).

    Dicts are handled per key, tuples and lists (named tuples too) per item; ``None`` stays ``None``
    (see :func:`map_outputs`).
    """

    def split(frames: Tensor, key: str) -> Tensor:
        if frames.ndim == 0 or frames.shape[0] != batch * T:
            raise ValueError(
                f"expected a per-frame {key} with B*T = {batch * T} rows, got shape {tuple(frames.shape)}"
            )
        return rearrange(frames, "(b t) ... -> b t ...", t=T)

    return reduce_frames(map_named_outputs(out, split, "split into frames"), reduce)


def reduce_frames(clips: Any, reduce: Reduce) -> Any:
    """Average per-frame outputs ``(B, T, ...)`` over ``T`` (``reduce="mean"``) or keep them (``None``).

    Raises:
        TypeError: an integer or boolean output with ``reduce="mean"`` (it has no mean; use ``None``).
    """
    if reduce is None:
        return clips

    def mean(clip: Tensor, key: str) -> Tensor:
        if not (clip.is_floating_point() or clip.is_complex()):
            raise TypeError(
                f"cannot average the model's {key} over frames: it is {clip.dtype}, not a float tensor; "
                "return scores (logits), or temporalize with reduce=None and combine the frames yourself"
            )
        return clip.mean(1)

    return map_named_outputs(clips, mean, "average over frames")


# --------------------------------------------------------------------------------------------------
# The surgery
# --------------------------------------------------------------------------------------------------


def _select(model: nn.Module, where: Where, fusion: str) -> list[str]:
    if where is None:
        return default_sites(model, fusion)
    if callable(where):
        # Every name a module is registered under, each module once (its first name).
        chosen: dict[int, str] = {}
        for name, module in model.named_modules(remove_duplicate=False):
            if name and id(module) not in chosen and where(name, module):
                chosen[id(module)] = name
        return list(chosen.values())
    if isinstance(where, str):
        where = [where]
    names, modules, unknown = [], [], []
    for name in dict.fromkeys(where):
        try:
            module = model.get_submodule(name) if name else None
        except AttributeError:
            module = None
        if module is None:
            unknown.append(name)
        elif not any(module is m for m in modules):  # one module under two names is one site
            names.append(name)
            modules.append(module)
    if unknown:
        raise ValueError(f"where= names no module of {type(model).__name__}: {unknown}")
    return names


def _fusion_class(fusion: str) -> Any:
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {sorted(FUSIONS)}")
    return FUSIONS[fusion]


def _site_channels(name: str, module: nn.Module, tokens: bool = False) -> int:
    """The channels GSF sees: a CNN site's output channels; a transformer site's input token width."""
    if tokens:
        shape = getattr(module, "normalized_shape", None)
        # an attention site (post-norm blocks): the width its qkv projection reads
        linear = getattr(module, "qkv", None) or next((m for m in module.modules() if isinstance(m, nn.Linear)), None)
        channels = (shape[-1] if isinstance(shape, tuple) and shape else
                    getattr(module, "embed_dim", None) or getattr(module, "dim", None)  # a block: its width
                    or getattr(linear, "in_features", None))
        what = "normalized_shape, embed_dim or a Linear layer, e.g. nn.LayerNorm, nn.Linear or an attention"
    else:
        channels = getattr(module, "out_channels", None) or getattr(module, "num_features", None)
        what = "out_channels or num_features, e.g. nn.Conv2d or nn.BatchNorm2d"
    if isinstance(module, nn.modules.lazy.LazyModuleMixin) and not channels:
        raise ValueError(f"site {name!r} is a lazy {type(module).__name__} whose channel count is not known "
                         "yet; run one forward pass before temporalize, or choose another site")
    if not isinstance(channels, int):
        raise ValueError(f"GSF needs the channel count of site {name!r} ({type(module).__name__}); "
                         f"choose layers with {what}")
    return channels


def _prefix_tokens(model: nn.Module) -> int:
    """Tokens before the patches: timm's ``num_prefix_tokens``, or torchvision ViT's class token."""
    count = getattr(model, "num_prefix_tokens", None)
    if isinstance(count, int):
        return count
    if isinstance(getattr(model, "class_token", None), nn.Parameter):
        return 1
    raise ValueError(f"shift_class_token=False, but {type(model).__name__} has no class token")


def is_site(module: nn.Module) -> bool:
    """Whether ``module`` is a fusion site: it has a ``fusion`` child that is one of img2vid's fusions."""
    return isinstance(getattr(module, "fusion", None), _FUSION_CLASSES)


def is_temporal(model: nn.Module) -> bool:
    """Whether ``model`` (or a part of it) was already temporalized."""
    return any(hasattr(m, "temporal_sites") or is_site(m) for m in model.modules())


def insert_fusion(model: nn.Module, fusion: str, reduce: Reduce, where: Where = None,
                  **fusion_options: Any) -> list[str]:
    """Put a fusion module and its hook on each site of ``model`` and record the surgery on it
    (``temporal_sites``, ``temporal_fusion``, ``temporal_reduce``); the model's own hooks are the
    caller's (:func:`temporalize` or :func:`~img2vid.wrap`). Returns the site names."""
    _fusion_class(fusion)
    if reduce not in _REDUCES:
        raise ValueError(f"reduce must be one of ['mean', None], got {reduce!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"temporalize takes an nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError("temporalize takes an eager nn.Module, not a torch.jit.script-ed or traced one; "
                        "temporalize the eager model, then export it (torch.export, ONNX)")
    if is_temporal(model):
        raise ValueError(f"{type(model).__name__} is already temporalized; apply temporalize once, to the 2D model")
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is None:
        raise ValueError(f"temporalize needs a 2D CNN, but {type(model).__name__} has no nn.Conv2d")
    sites = _select(model, where, fusion)
    if not sites:
        raise ValueError(
            f"found no site for temporal fusion in {type(model).__name__} (no block with two or more "
            "conv/linear layers, and no Conv2d after the first); choose layers with where="
        )
    modules = [model.get_submodule(name) for name in sites]
    for name, module in zip(sites, modules):
        if isinstance(module, _CONTAINERS) or module is model:
            raise ValueError(f"site {name!r} is a {type(module).__name__}; choose a layer inside it")
        if hasattr(module, "fusion"):
            raise ValueError(f"site {name!r} already has an attribute 'fusion'")
    tokens = bool(transformer_blocks(model))
    if "shift_class_token" in fusion_options:
        shift_class_token = fusion_options.pop("shift_class_token")
        if not tokens:
            raise TypeError("shift_class_token applies to vision transformers; "
                            f"{type(model).__name__} has no transformer block")
        if not shift_class_token and fusion != "none":  # "none" moves no token anyway
            fusion_options["keep_first"] = _prefix_tokens(model)
    # Build every fusion module before touching the model, so a bad option leaves it unchanged.
    needs_channels = fusion == "gsf"
    fusions = [
        make_fusion(fusion, _site_channels(name, module, tokens) if needs_channels else None, tokens=tokens,
                    **fusion_options)
        for name, module in zip(sites, modules)
    ]
    for module, fusion_module in zip(modules, fusions):
        module.add_module("fusion", fusion_module)
        if fusion_module.at == "input":
            module.register_forward_pre_hook(_fuse_input)
        else:
            module.register_forward_hook(_fuse_output)
    model.temporal_sites = tuple(sites)
    model.temporal_fusion = fusion
    model.temporal_reduce = reduce
    first_conv.register_forward_pre_hook(_check_stem)
    # repr shows the surgery: an instance attribute in front of the class's extra_repr (a partial of a
    # module-level function, so the model still pickles and deep-copies)
    object.__setattr__(model, "extra_repr", functools.partial(_extra_repr, model))
    return sites


def temporalize(
    model: nn.Module,
    fusion: str = "gsf",
    *,
    reduce: Reduce = "mean",
    where: Where = None,
    **fusion_options: Any,
) -> nn.Module:
    """Turn a 2D CNN or vision transformer into a video network by inserting temporal fusion; edits
    ``model`` in place.

    On a vision transformer (torchvision ``VisionTransformer``/``SwinTransformer``, timm ViT, DeiT,
    Swin: any model with :func:`~img2vid.sites.transformer_blocks`) the fusions act on channels-last
    tokens: ``"tsm"`` is :class:`~img2vid.fusion.TokenShift`, ``"gsf"``
    :class:`~img2vid.fusion.GatedTokenShift` (identity at initialisation), both on the input of the
    norm before each block's attention.

    Args:
        model: a 2D CNN or vision transformer taking ``(N, C, H, W)``, e.g. any torchvision
            classification or segmentation model (eager, not ``torch.jit.script``-ed). Its weights,
            parameter names and class are kept.
        fusion: ``"gsf"`` (Gate-Shift-Fuse, identity at initialisation), ``"tsm"`` (Temporal Shift),
            or ``"none"`` (frames processed independently: the paper's "Augment" ablation).
        reduce: ``"mean"`` averages per-frame outputs over ``T``; ``None`` returns them as
            ``(B, T, ...)``.
        where: the sites: module names, or a predicate ``(name, module) -> bool`` over every name of
            every module. Default: :func:`~img2vid.sites.default_sites`. TSM shifts a site's input,
            GSF fuses its output (on a transformer both act on the site's input). Sites must be
            layers, not containers.
        fusion_options: options of the fusion class: ``fold_div`` (TSM), ``fraction`` (GSF); on a
            transformer also ``shift_class_token=False`` to leave the class (and other prefix)
            tokens unshifted (default: shifted like the patch tokens).

    Returns:
        ``model`` itself, now taking clips ``(B, T, C, H, W)``; ``model.temporal_sites`` lists the
        layers that got a ``fusion`` child.

    Raises:
        ValueError: an unknown fusion or reduce, a model already temporalized, a model with no
            ``Conv2d`` or no site, a bad ``where``, ``shift_class_token=False`` without a class token,
            a lazy GSF site whose channel count is not known yet.
        TypeError: a ``torch.jit`` scripted or traced model.

    Examples:
        >>> net = temporalize(torchvision.models.resnet18(num_classes=10), "gsf")
        >>> net(torch.rand(2, 5, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    insert_fusion(model, fusion, reduce, where, **fusion_options)
    model.register_forward_pre_hook(_clips_in, with_kwargs=True)
    model.register_forward_hook(_frames_out, with_kwargs=True, always_call=True)
    if type(model).get_extra_state is nn.Module.get_extra_state:
        model.register_load_state_dict_pre_hook(_ignore_motion)
    watch_fusion(model)
    return model
