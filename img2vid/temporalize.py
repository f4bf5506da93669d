"""temporalize: any 2D CNN or vision transformer becomes a video network, in one call, without losing
its weights.

The surgery edits the model in place and returns it:

1. **Sites.** Fusion modules go on *sites*, layers that see frame batches ``(B*T, C, H, W)``. TSM
   shifts a site's input; GSF (and ``"none"``) fuses its output. By default the sites are found per
   *block* (see :func:`default_sites`): TSM on the input of a block's first branch convolution, GSF
   after its last branch convolution. For torchvision ResNet/ResNeXt/Wide-ResNet blocks these are the
   reference placements (TSM ``"blockres"`` on ``conv1``; GSF after ``conv2`` of a ``BasicBlock`` or
   ``conv3`` of a ``Bottleneck``, before its BN). In a vision transformer the site is each block's
   norm before attention, and the token fusions (:mod:`img2vid.fusion.token_shift`) act on its input.
2. **Names are kept.** A site keeps its class's behaviour and every parameter name; it gains one
   child, ``fusion``, and its class becomes a subclass of the original (``nn.Conv2d`` ->
   ``TemporalConv2d``). The model's class likewise becomes a subclass (``ResNet`` ->
   ``TemporalResNet``), so ``isinstance(model, ResNet)`` still holds, ``model.fc`` is still there and
   a checkpoint of the 2D model loads with ``strict=False``, missing only ``*.fusion.*`` keys.
3. **Clips in.** The model then takes clips ``(B, T, C, H, W)``; ``T`` is read from each input, the
   frames run as one ``(B*T, C, H, W)`` batch, and per-frame outputs are averaged over ``T``
   (``reduce="mean"``) or returned with a ``T`` axis after ``B`` (``reduce=None``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable, Optional, Union, cast

from einops import rearrange
from torch import Tensor, nn
from torch.nn.modules.module import _EXTRA_STATE_KEY_SUFFIX as _EXTRA_STATE
from torchvision.models.resnet import BasicBlock, Bottleneck

from .fusion import FUSIONS, make_fusion

__all__ = [
    "Mixin",
    "Temporal",
    "TemporalSite",
    "default_sites",
    "is_temporal",
    "map_outputs",
    "mix_in",
    "temporalize",
    "transformer_blocks",
]

Where = Union[Iterable[str], Callable[[str, nn.Module], bool], None]
Reduce = Optional[str]

_REDUCES = ("mean", None)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Children with these names are heads (they see pooled or final features) and stay 2D.
HEAD_NAMES = frozenset({"classifier", "aux_classifier", "AuxLogits", "fc", "head", "heads"})
# Children of a block with these names are its shortcut, not its residual branch.
SHORTCUT_NAMES = frozenset({"downsample", "proj", "shortcut", "skip"})
# Transformer blocks whose norm follows the attention (Swin V2's "res-post-norm"), though registered first.
POST_NORM_BLOCKS = frozenset({"SwinTransformerBlockV2", "SwinTransformerV2Block"})
# The TSM reference shifts every other block when a ResNet stage is this deep (ResNet-101/152).
_TSM_DEEP_STAGE = 23


# --------------------------------------------------------------------------------------------------
# Class swapping: a module becomes an instance of a subclass of its own class, so its parameter
# names, attributes and isinstance checks survive. Like torch.nn.utils.parametrize, the subclass is
# made on the fly (cached per class); unlike it, instances still pickle and deepcopy, through
# __reduce_ex__, which rebuilds the subclass from importable classes.
# --------------------------------------------------------------------------------------------------

_SUBCLASSES: dict[tuple[type, ...], type] = {}


def _swapped_class(chain: tuple[type, ...]) -> type:
    """The class ``chain[0](chain[1](...(chain[-1])))``: mixins over an original module class."""
    if chain not in _SUBCLASSES:
        *mixins, original = chain
        base = _swapped_class(tuple(chain[1:])) if len(mixins) > 1 else original
        name = f"{getattr(mixins[0], 'prefix', '')}{original.__name__}"
        _SUBCLASSES[chain] = type(name, (mixins[0], base), {"_chain": chain, "__module__": __name__})
    return _SUBCLASSES[chain]


def _rebuild(chain: tuple[type, ...]) -> nn.Module:
    cls: Any = _swapped_class(chain)
    return cls.__new__(cls)


class Mixin(nn.Module):
    """Base of the classes :func:`mix_in` mixes into a module's own class (:class:`TemporalSite`,
    :class:`Temporal`, :class:`~img2vid.wrap.Wrapped`); pickles and deepcopies their instances.

    Attributes:
        prefix: put before the original class name (``"Temporal"``: ``ResNet`` -> ``TemporalResNet``).
    """

    prefix = ""
    _chain: tuple[type, ...]

    def __reduce_ex__(self, protocol: Any) -> Any:
        return _rebuild, (self._chain,), self.__dict__.copy()


def mix_in(module: nn.Module, mixin: type[Mixin]) -> None:
    """Make ``module`` an instance of a subclass of its own class with ``mixin`` in front, in place:
    its attributes, parameter names and ``isinstance`` checks are kept; ``mixin`` overrides methods
    and calls the original ones through ``super()``."""
    chain = getattr(type(module), "_chain", (type(module),))
    module.__class__ = _swapped_class((mixin, *chain))


# --------------------------------------------------------------------------------------------------
# The modules
# --------------------------------------------------------------------------------------------------


class TemporalSite(Mixin):
    """A layer with a fusion module on its input or output (mixed into the layer's own class).

    The layer still sees and returns frame batches; only around the fusion module are they viewed as
    clips, with ``T`` set by the enclosing :class:`Temporal` model for the duration of its forward
    (``None`` outside it: a site called on its own raises instead of using a stale ``T``).

    Shape:
        - Input and output: the layer's, with ``B*T`` frames on the batch axis.
    """

    prefix = "Temporal"
    fusion: nn.Module
    T: int | None

    def _fuse(self, frames: Tensor) -> Tensor:
        T = self.T
        if T is None:
            raise RuntimeError("a fusion site runs only inside its temporalized model's forward (T unknown)")
        if not isinstance(frames, Tensor) or frames.ndim < 2 or frames.shape[0] % T:
            shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
            raise ValueError(f"a fusion site expects frames (B*T, ...) with T = {T}, got {shape}")
        # (B*T, C, H, W) for a CNN, (B*T, N, D) or (B*T, H, W, D) tokens for a transformer
        clip = rearrange(frames, "(b t) ... -> b t ...", t=T)
        return rearrange(self.fusion(clip), "b t ... -> (b t) ...")

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        at = self.fusion.at
        if at == "input":
            x = self._fuse(x)
        out = super().forward(x, *args, **kwargs)
        return self._fuse(out) if at == "output" else out


class Temporal(Mixin):
    """A temporalized model (mixed into the model's own class): clips in, frame-averaged outputs out.

    Attributes:
        temporal_sites: names of the layers that got a fusion module.
        temporal_fusion: the fusion's name (``"gsf"``, ``"tsm"`` or ``"none"``).
        temporal_reduce: ``"mean"`` or ``None``.
        temporal_in_channels: ``in_channels`` of the first ``nn.Conv2d``, used to check clip layouts.

    Shape:
        - Input: ``(B, T, C, H, W)``, any ``T >= 1``.
        - Output: the 2D model's output for each frame, averaged over ``T`` (``reduce="mean"``), or
          with ``T`` after ``B`` (``reduce=None``), per key for dicts and per item for tuples.
    """

    prefix = "Temporal"
    temporal_sites: tuple[str, ...]
    temporal_fusion: str
    temporal_reduce: Reduce
    temporal_in_channels: int
    _temporal_first_conv: str

    def forward(self, clip: Any, *args: Any, **kwargs: Any) -> Any:
        _check_clip(clip, self.temporal_in_channels, self._temporal_first_conv)
        batch, T = clip.shape[:2]
        # The sites by name (not a walk over every module), so a replaced site module still counts.
        sites = [cast(TemporalSite, self.get_submodule(name)) for name in self.temporal_sites]
        for site in sites:
            site.T = T
        try:
            out = super().forward(rearrange(clip, "b t c h w -> (b t) c h w"), *args, **kwargs)
        finally:  # T exists only during this forward
            for site in sites:
                site.T = None
        return per_frame(out, batch, T, self.temporal_reduce)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        unexpected_keys = args[3]  # (local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        super()._load_from_state_dict(state_dict, prefix, *args)
        # A wrapped checkpoint's motion (its extra state) is for wrap: a model that takes clips ignores it.
        if prefix + _EXTRA_STATE in unexpected_keys:
            unexpected_keys.remove(prefix + _EXTRA_STATE)

    def extra_repr(self) -> str:
        own = f"fusion={self.temporal_fusion!r}, reduce={self.temporal_reduce!r}, sites={len(self.temporal_sites)}"
        base = super().extra_repr()
        return f"{base}, {own}" if base else own


def _check_clip(clip: Any, in_channels: int, first_conv: str) -> None:
    if not isinstance(clip, Tensor):
        raise TypeError(f"a temporalized model takes a clip tensor (B, T, C, H, W), got {type(clip).__name__}")
    if clip.ndim == 4:
        raise ValueError(
            f"a temporalized model takes clips (B, T, C, H, W), got a 4-D batch {tuple(clip.shape)}; "
            "images go through img2vid.wrap (or add a frame axis: x.unsqueeze(1))"
        )
    if clip.ndim != 5:
        raise ValueError(f"a temporalized model takes clips (B, T, C, H, W), got shape {tuple(clip.shape)}")
    if clip.shape[2] != in_channels:
        raise ValueError(
            f"expected clips (B, T, C, H, W) with C = {in_channels} (in_channels of the first conv "
            f"{first_conv!r}), got shape {tuple(clip.shape)}; a (B, C, T, H, W) clip must be permuted "
            "first: clip.transpose(1, 2)"
        )
    if clip.shape[1] < 1:
        raise ValueError(f"expected T >= 1 frames, got shape {tuple(clip.shape)}")


def map_outputs(out: Any, fn: Callable[[Tensor], Any], what: str = "split") -> Any:
    """Apply ``fn`` to every tensor of a model output, keeping its structure: dicts per key (their
    own type kept), named tuples, tuples and lists per item; ``None`` stays ``None``.

    Raises:
        TypeError: an output of another type (``what`` names the operation in the message).
    """
    if out is None:
        return None
    if isinstance(out, Tensor):
        return fn(out)
    if isinstance(out, Mapping):
        mapping: Any = type(out)  # dict, OrderedDict ...: keep the model's own type
        return mapping((key, map_outputs(value, fn, what)) for key, value in out.items())
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # named tuple, e.g. InceptionOutputs
        return type(out)(*(map_outputs(item, fn, what) for item in out))
    if isinstance(out, (tuple, list)):
        return type(out)(map_outputs(item, fn, what) for item in out)
    raise TypeError(f"cannot {what} a model output of type {type(out).__name__}")


def per_frame(out: Any, batch: int, T: int, reduce: Reduce) -> Any:
    """Give per-frame outputs ``(B*T, ...)`` a ``T`` axis, ``(B, T, ...)``, then reduce it.

    Dicts are handled per key, tuples and lists (named tuples too) per item; ``None`` stays ``None``
    (see :func:`map_outputs`).
    """

    def split(frames: Tensor) -> Tensor:
        if frames.ndim == 0 or frames.shape[0] != batch * T:
            raise ValueError(
                f"expected a per-frame output with B*T = {batch * T} rows, got shape {tuple(frames.shape)}"
            )
        clip = rearrange(frames, "(b t) ... -> b t ...", t=T)
        return clip.mean(1) if reduce == "mean" else clip

    return map_outputs(out, split, "split into frames")


# --------------------------------------------------------------------------------------------------
# Where the sites are
# --------------------------------------------------------------------------------------------------


def _weight_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _is_block(module: nn.Module) -> bool:
    layers = _weight_layers(module)
    return len(layers) >= 2 and any(isinstance(m, nn.Conv2d) for m in layers)


def _has_stage(module: nn.Module) -> bool:
    """Whether ``module`` holds a stage, a container with at least two blocks, or has two blocks as
    its own children (timm's ``RegStage``): it is a network or a stage, not a block."""
    if sum(1 for c in module.children() if not isinstance(c, _CONTAINERS) and _is_block(c)) >= 2:
        return True
    for m in module.modules():
        if isinstance(m, _CONTAINERS) and sum(
            1 for c in m.children() if not isinstance(c, _CONTAINERS) and _is_block(c)
        ) >= 2:
            return True
    return False


def _blocks(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """Blocks, outermost first: modules with two or more conv/linear layers, one at least a Conv2d,
    reached through containers and through modules that hold stages of blocks; heads are skipped."""
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if name in HEAD_NAMES:
            continue
        if isinstance(child, _CONTAINERS) or _has_stage(child):
            yield from _blocks(child, full + ".")
        elif _is_block(child):
            yield full, child


def _branch_convs(block: nn.Module, prefix: str) -> list[tuple[str, nn.Conv2d]]:
    """The block's Conv2d layers outside its shortcut, in registration order (a shortcut child is
    skipped at any depth: a stage of one block, such as timm RegNet's, is found as the block)."""
    convs: list[tuple[str, nn.Conv2d]] = []

    def visit(module: nn.Module, path: str) -> None:
        for name, child in module.named_children():
            if name in SHORTCUT_NAMES:
                continue
            if isinstance(child, nn.Conv2d):
                convs.append((f"{path}{name}", child))
            visit(child, f"{path}{name}.")

    visit(block, prefix)
    return convs


def _tsm_every_other(model: nn.Module) -> bool:
    """The TSM reference shifts every other block if a ResNet stage has >= 23 blocks."""
    return any(
        isinstance(m, nn.Sequential)
        and sum(isinstance(c, (BasicBlock, Bottleneck)) for c in m.children()) >= _TSM_DEEP_STAGE
        for m in model.modules()
    )


def _is_attention(module: nn.Module) -> bool:
    """``nn.MultiheadAttention``, or a class named ``*Attention`` or ``*AttentionV2`` (..V3 ...)."""
    name = type(module).__name__
    return isinstance(module, nn.MultiheadAttention) or re.fullmatch(r"\w*Attention(V\d+)?", name) is not None


def transformer_blocks(model: nn.Module) -> list[tuple[str, str]]:
    """The transformer blocks of ``model``: ``(block name, name of the child that first sees the
    attention branch's input)``.

    A transformer block is a module with an attention child (an ``nn.MultiheadAttention`` or a class
    named ``*Attention`` or ``*AttentionV2``: timm's ``Attention``, Swin's ``ShiftedWindowAttention``,
    ``ShiftedWindowAttentionV2``, ``WindowAttention``) and an ``nn.LayerNorm`` child (so the optional
    attention wrappers of CNN decoders, e.g. smp's Unet, are not blocks).
    The child returned is the ``nn.LayerNorm`` registered before the attention in pre-norm blocks
    (torchvision's ``EncoderBlock``: ``ln_1``; its ``SwinTransformerBlock`` and timm's ``Block`` and
    ``SwinTransformerBlock``: ``norm1``), or the attention itself in post-norm blocks, whose norm
    follows it (:data:`POST_NORM_BLOCKS`: torchvision's ``SwinTransformerBlockV2`` and timm's
    ``SwinTransformerV2Block``, ``attn``; their norm is registered first but runs after the attention,
    which registration order cannot tell). Blocks inside a found block are not searched.
    """
    blocks: list[tuple[str, str]] = []
    for name, module in model.named_modules():
        if blocks and name.startswith(blocks[-1][0] + "."):
            continue
        children = list(module.named_children())
        attention = next((i for i, (_, child) in enumerate(children) if _is_attention(child)), None)
        norms = [i for i, (_, child) in enumerate(children) if isinstance(child, nn.LayerNorm)]
        if attention is None or not norms:
            continue
        before = [i for i in norms if i < attention]
        post_norm = type(module).__name__ in POST_NORM_BLOCKS or not before
        blocks.append((name, children[attention if post_norm else before[0]][0]))
    return blocks


def default_sites(model: nn.Module, fusion: str = "gsf") -> list[str]:
    """The layers :func:`temporalize` fuses by default.

    **Vision transformers** (any model with :func:`transformer_blocks`): one site per block, the
    norm before its attention (``ln_1``/``norm1``), or the attention itself in a post-norm block
    (Swin V2); the token fusion acts on that site's input, the attention branch's input, so the
    block's identity path stays unshifted (TSM's residual shift).

    The generic rule, for any torchvision CNN:

    - **Blocks** are found from the root through containers (``nn.Sequential``, ``nn.ModuleList``,
      ``nn.ModuleDict``) and through modules that hold a stage (a container with two or more blocks).
      A block is a module with at least two ``Conv2d``/``Linear`` layers, one at least a ``Conv2d``:
      a ResNet ``BasicBlock``/``Bottleneck``, a MobileNet/EfficientNet inverted residual, a RegNet
      ``ResBottleneckBlock``, a ConvNeXt ``CNBlock``, a DenseNet ``_DenseLayer``, an Inception module.
      Children named like heads (:data:`HEAD_NAMES`: ``classifier``, ``aux_classifier``, ``fc``,
      ``AuxLogits``...) are not searched.
    - A block's **residual branch** is its ``Conv2d`` layers outside a shortcut child
      (:data:`SHORTCUT_NAMES`: ``downsample``, ``proj``...). TSM shifts the input of the branch's
      first ``Conv2d``; GSF (and ``"none"``) follows its last ``Conv2d``.
    - A network without blocks (VGG) gets a site at every ``Conv2d`` but the first, which sees the
      image.
    - As in the TSM reference, TSM goes on every other ResNet block when a stage has 23 or more
      blocks (ResNet-101/152).

    Returns:
        Module names, in the order of ``model.named_modules()``.
    """
    cls = _fusion_class(fusion)
    token_blocks = transformer_blocks(model)
    if token_blocks:
        return [f"{block}.{site}" if block else site for block, site in token_blocks]
    blocks = list(_blocks(model))
    sites: list[str] = []
    if blocks:
        every_other = cls.at == "input" and _tsm_every_other(model)
        index_in_stage: dict[str, int] = {}
        for name, block in blocks:
            parent = name.rpartition(".")[0]
            index = index_in_stage.get(parent, 0)
            index_in_stage[parent] = index + 1
            if every_other and isinstance(block, (BasicBlock, Bottleneck)) and index % 2:
                continue
            convs = _branch_convs(block, name + ".")
            if convs:
                sites.append(convs[0][0] if cls.at == "input" else convs[-1][0])
    else:
        all_convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        sites = all_convs[1:]
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    return sorted(dict.fromkeys(sites), key=order.__getitem__)


def _select(model: nn.Module, where: Where, fusion: str) -> list[str]:
    if where is None:
        return default_sites(model, fusion)
    named = dict(model.named_modules())
    if callable(where):
        return [name for name, module in named.items() if name and where(name, module)]
    if isinstance(where, str):
        where = [where]
    names = list(dict.fromkeys(where))
    unknown = [name for name in names if name not in named or not name]
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
                    getattr(module, "embed_dim", None) or getattr(linear, "in_features", None))
        what = "normalized_shape, embed_dim or a Linear layer, e.g. nn.LayerNorm, nn.Linear or an attention"
    else:
        channels = getattr(module, "out_channels", None) or getattr(module, "num_features", None)
        what = "out_channels or num_features, e.g. nn.Conv2d or nn.BatchNorm2d"
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


def is_temporal(model: nn.Module) -> bool:
    """Whether ``model`` (or a part of it) was already temporalized."""
    return any(isinstance(m, (Temporal, TemporalSite)) for m in model.modules())


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
    Swin: any model with :func:`transformer_blocks`) the fusions act on channels-last tokens:
    ``"tsm"`` is :class:`~img2vid.fusion.TokenShift`, ``"gsf"`` :class:`~img2vid.fusion.GatedTokenShift`
    (identity at initialisation), both on the input of the norm before each block's attention.

    Args:
        model: a 2D CNN or vision transformer taking ``(N, C, H, W)``, e.g. any torchvision
            classification or segmentation model. Its weights, parameter names and class are kept
            (the class becomes a subclass).
        fusion: ``"gsf"`` (Gate-Shift-Fuse, identity at initialisation), ``"tsm"`` (Temporal Shift),
            or ``"none"`` (frames processed independently: the paper's "Augment" ablation).
        reduce: ``"mean"`` averages per-frame outputs over ``T``; ``None`` returns them as
            ``(B, T, ...)``.
        where: the sites: module names, or a predicate ``(name, module) -> bool`` over
            ``model.named_modules()``. Default: :func:`default_sites`. TSM shifts a site's input,
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
            ``Conv2d`` or no site, a bad ``where``, ``shift_class_token=False`` without a class token.

    Example:
        >>> net = temporalize(torchvision.models.resnet18(num_classes=10), "gsf")
        >>> net(torch.rand(2, 5, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    _fusion_class(fusion)
    if reduce not in _REDUCES:
        raise ValueError(f"reduce must be one of ['mean', None], got {reduce!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"temporalize takes an nn.Module, got {type(model).__name__}")
    if is_temporal(model):
        raise ValueError(f"{type(model).__name__} is already temporalized; apply temporalize once, to the 2D model")
    first_conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is None:
        raise ValueError(f"temporalize needs a 2D CNN, but {type(model).__name__} has no nn.Conv2d")
    sites = _select(model, where, fusion)
    if not sites:
        raise ValueError(
            f"found no site for temporal fusion in {type(model).__name__} (no block with two or more "
            "conv/linear layers, and no Conv2d after the first); choose layers with where="
        )
    named = dict(model.named_modules())
    for name in sites:
        module = named[name]
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
        make_fusion(fusion, _site_channels(name, named[name], tokens) if needs_channels else None, tokens=tokens,
                    **fusion_options)
        for name in sites
    ]
    for name, fusion_module in zip(sites, fusions):
        module = named[name]
        mix_in(module, TemporalSite)
        module.add_module("fusion", fusion_module)
        module.T = None
    mix_in(model, Temporal)
    temporal = cast(Temporal, model)
    temporal.temporal_sites = tuple(sites)
    temporal.temporal_fusion = fusion
    temporal.temporal_reduce = reduce
    temporal.temporal_in_channels = first_conv[1].in_channels
    temporal._temporal_first_conv = first_conv[0]
    return temporal
