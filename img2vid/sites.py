"""Where temporal fusion goes: the heuristics that find a model's *sites* (the layers that see frame
batches) for :func:`~img2vid.temporalize.temporalize`.

Two rules, both overridable with ``where=``: vision transformers get one site per block
(:func:`transformer_blocks`), CNNs one per residual block (:func:`default_sites`), placed as the TSM and
GSF references place them in a torchvision ResNet.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from .fusion import FUSIONS

__all__ = ["HEAD_NAMES", "POST_NORM_BLOCKS", "SHORTCUT_NAMES", "WINDOWED_BLOCKS", "default_sites",
           "transformer_blocks"]

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Children with these names are heads (they see pooled or final features) and stay 2D.
HEAD_NAMES = frozenset({"classifier", "aux_classifier", "AuxLogits", "fc", "head", "heads"})
# Children of a block with these names are its shortcut, not its residual branch.
SHORTCUT_NAMES = frozenset({"downsample", "proj", "shortcut", "skip"})
# Transformer blocks whose norm follows the attention (Swin V2's "res-post-norm"), though registered first.
POST_NORM_BLOCKS = frozenset({"SwinTransformerBlockV2", "SwinTransformerV2Block"})
# Transformer blocks that fold their windows into the batch before the attention sees them (timm's Swin
# V2): no child sees the branch input as B*T frames, so the block itself is the site (its input).
WINDOWED_BLOCKS = frozenset({"SwinTransformerV2Block"})
# The TSM reference shifts every other block when a ResNet stage is this deep (ResNet-101/152).
_TSM_DEEP_STAGE = 23




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
    which registration order cannot tell). In blocks that fold their attention windows into the
    batch before any child sees them (:data:`WINDOWED_BLOCKS`: timm's ``SwinTransformerV2Block``) the
    child is ``""``: the block itself is the site, since a fusion site must see its call's ``B*T``
    frames. Blocks inside a found block are not searched.
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
        if type(module).__name__ in WINDOWED_BLOCKS:
            blocks.append((name, ""))
            continue
        before = [i for i in norms if i < attention]
        post_norm = type(module).__name__ in POST_NORM_BLOCKS or not before
        blocks.append((name, children[attention if post_norm else before[0]][0]))
    return blocks


def default_sites(model: nn.Module, fusion: str = "gsf") -> list[str]:
    """The layers :func:`~img2vid.temporalize` fuses by default.

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
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {sorted(FUSIONS)}")
    at = FUSIONS[fusion].at
    token_blocks = transformer_blocks(model)
    if token_blocks:
        return [".".join(part for part in (block, site) if part) for block, site in token_blocks]
    blocks = list(_blocks(model))
    sites: list[str] = []
    if blocks:
        every_other = at == "input" and _tsm_every_other(model)
        index_in_stage: dict[str, int] = {}
        for name, block in blocks:
            parent = name.rpartition(".")[0]
            index = index_in_stage.get(parent, 0)
            index_in_stage[parent] = index + 1
            if every_other and isinstance(block, (BasicBlock, Bottleneck)) and index % 2:
                continue
            convs = _branch_convs(block, name + ".")
            if convs:
                sites.append(convs[0][0] if at == "input" else convs[-1][0])
    else:
        all_convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        sites = all_convs[1:]
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    return sorted(dict.fromkeys(sites), key=order.__getitem__)
