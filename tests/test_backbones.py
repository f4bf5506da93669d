"""temporalize and wrap beyond torchvision's CNNs: vision transformers (torchvision ViT and Swin, timm ViT,
DeiT and Swin), timm's CNNs and segmentation_models_pytorch. Small random-weight configurations; timm and
smp tests are skipped with a reason when the package is absent."""

import copy
import io

import pytest
import torch
import torchvision.models as tvm
from torch import nn
from torch.testing import assert_close

from img2vid.fusion import GatedTokenShift, GateShiftFuse, TokenShift
from img2vid.fusion.gsf import fused_channels
from img2vid.temporalize import is_site, temporalize
from img2vid.video import ImageToVideo
from img2vid.wrap import wrap

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def frame_average(model: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    return torch.stack([model(clip[:, t]) for t in range(clip.shape[1])], 1).mean(1)


def timm_model(name: str, **kwargs) -> nn.Module:
    timm = pytest.importorskip("timm", reason="timm is not installed (pip install img2vid[timm])")
    return timm.create_model(name, pretrained=False, **kwargs)


# ----------------------------------------------------------------------------- vision transformers

# builder, and the norm before each block's attention, written out by hand from the architectures
TRANSFORMERS = {
    "torchvision_vit": (
        lambda: tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                                      mlp_dim=64, num_classes=5),
        [f"encoder.layers.encoder_layer_{i}.ln_1" for i in range(2)]),
    "torchvision_swin": (
        lambda: tvm.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[1, 2],
                                    window_size=[2, 2], num_classes=5),
        [f"features.{stage}.{i}.norm1" for stage in (1, 3) for i in range(2)]),
    "torchvision_swin_v2": (  # post-norm blocks: the attention itself sees the branch input
        lambda: tvm.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[1, 2],
                                    window_size=[2, 2], num_classes=5,
                                    block=tvm.swin_transformer.SwinTransformerBlockV2,
                                    downsample_layer=tvm.swin_transformer.PatchMergingV2),
        [f"features.{stage}.{i}.attn" for stage in (1, 3) for i in range(2)]),
    "timm_vit": (
        lambda: timm_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=5),
        [f"blocks.{i}.norm1" for i in range(2)]),
    "timm_deit": (
        lambda: timm_model("deit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=5),
        [f"blocks.{i}.norm1" for i in range(2)]),
    "timm_swin": (
        lambda: timm_model("swin_tiny_patch4_window7_224", img_size=32, window_size=2, embed_dim=16,
                           depths=(2, 2), num_heads=(1, 2), num_classes=5),
        [f"layers.{stage}.blocks.{i}.norm1" for stage in (0, 1) for i in range(2)]),
    "timm_swin_v2": (  # its attention sees windows folded into the batch: the block's input is the site
        lambda: timm_model("swinv2_tiny_window8_256", img_size=32, window_size=2, embed_dim=16,
                           depths=(2, 2), num_heads=(1, 2), num_classes=5),
        [f"layers.{stage}.blocks.{i}" for stage in (0, 1) for i in range(2)]),
}


# the token width each site sees, from the configurations above (Swin doubles it per stage)
WIDTHS = {"torchvision_vit": [32] * 2, "torchvision_swin": [16, 16, 32, 32], "torchvision_swin_v2": [16, 16, 32, 32],
          "timm_vit": [192] * 2, "timm_deit": [192] * 2, "timm_swin": [16, 16, 32, 32],
          "timm_swin_v2": [16, 16, 32, 32]}


def plain_transformer(family: str) -> nn.Module:
    torch.manual_seed(0)
    model = TRANSFORMERS[family][0]()
    with torch.no_grad():  # torchvision's ViT starts with a zero head, timm's Swin V2 with zero post-norms:
        for module in model.modules():  # make them read their input, as trained weights do
            if isinstance(module, nn.Linear) and module.weight.abs().sum() == 0:
                module.weight.normal_(0, 0.2)
            if isinstance(module, nn.LayerNorm) and module.weight.abs().sum() == 0:
                module.weight.fill_(1.0)
    return model.eval()


def shift_frames_by_hand(frames: torch.Tensor, T: int, fold_div: int = 8, keep_first: int = 0) -> torch.Tensor:
    """TSM's definition on (B*T, ..., D) frames of tokens, frame by frame: channels [0, fold) of frame t
    read frame t + 1, [fold, 2 fold) read frame t - 1, zeros past the ends (frames of one clip only)."""
    fold = frames.shape[-1] // fold_div
    out = frames.clone()
    for i in range(frames.shape[0]):
        t = i % T
        out[i, ..., :fold] = frames[i + 1, ..., :fold] if t + 1 < T else 0
        out[i, ..., fold : 2 * fold] = frames[i - 1, ..., fold : 2 * fold] if t > 0 else 0
        if keep_first:
            out[i, :keep_first] = frames[i, :keep_first]
    return out


def hand_shifted_model(plain: nn.Module, sites: list, T: int, **options) -> nn.Module:
    """A copy of the 2D model whose listed layers see their input token-shifted by hand."""
    model = copy.deepcopy(plain)
    for name in sites:
        model.get_submodule(name).register_forward_pre_hook(
            lambda module, args: (shift_frames_by_hand(args[0], T, **options), *args[1:]))
    return model


@pytest.mark.parametrize("family", sorted(TRANSFORMERS))
def test_transformer_token_shift_matches_the_definition(family):
    plain = plain_transformer(family)
    sites = TRANSFORMERS[family][1]
    model = temporalize(copy.deepcopy(plain), "tsm").eval()
    assert list(model.temporal_sites) == sites
    assert type(model) is type(plain)
    assert all(is_site(model.get_submodule(s)) and isinstance(model.get_submodule(s).fusion,
               TokenShift) for s in sites)
    assert n_params(model) == n_params(plain)  # no parameters added
    for T in (1, 3):
        clip = torch.rand(2, T, 3, 32, 32)
        with torch.no_grad():
            expected = hand_shifted_model(plain, sites, T)(clip.flatten(0, 1)).unflatten(0, (2, T)).mean(1)
            out = model(clip)
        assert_close(out, expected, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(out, frame_average(plain, clip), atol=1e-4)  # frames do mix


@pytest.mark.parametrize("family", sorted(TRANSFORMERS))
def test_transformer_gsf_is_the_identity_at_init_and_keeps_checkpoints(family):
    plain = plain_transformer(family)
    buffer = io.BytesIO()
    torch.save(plain.state_dict(), buffer)
    sites = TRANSFORMERS[family][1]
    model = temporalize(TRANSFORMERS[family][0](), "gsf").eval()  # other random weights
    assert list(model.temporal_sites) == sites
    widths = WIDTHS[family]
    assert len(widths) == len(sites)
    assert n_params(model) - n_params(plain) == sum(2 * fused_channels(d) + 2 for d in widths)
    buffer.seek(0)
    result = model.load_state_dict(torch.load(buffer), strict=False)
    assert result.unexpected_keys == [] and result.missing_keys
    assert all(".fusion." in key for key in result.missing_keys)
    assert set(plain.state_dict()) <= set(model.state_dict())
    clip = torch.rand(2, 3, 3, 32, 32)
    with torch.no_grad():
        assert_close(model(clip), frame_average(plain, clip), rtol=1e-4, atol=1e-5)
        for s in sites:
            assert isinstance(model.get_submodule(s).fusion, GatedTokenShift)
            model.get_submodule(s).fusion.scale.normal_()
        assert not torch.allclose(model(clip), frame_average(plain, clip), atol=1e-4)


def test_vit_class_token_option_where_and_guards():
    plain = plain_transformer("torchvision_vit")
    sites = TRANSFORMERS["torchvision_vit"][1]
    model = temporalize(copy.deepcopy(plain), "tsm", shift_class_token=False).eval()
    clip = torch.rand(2, 3, 3, 32, 32)
    with torch.no_grad():
        expected = hand_shifted_model(plain, sites, 3, keep_first=1)(clip.flatten(0, 1)).unflatten(0, (2, 3))
        assert_close(model(clip), expected.mean(1), rtol=1e-4, atol=1e-5)
    ln_2 = [s.replace("ln_1", "ln_2") for s in sites]
    model = temporalize(copy.deepcopy(plain), "tsm", where=ln_2, fold_div=4).eval()
    assert list(model.temporal_sites) == ln_2 and model.get_submodule(ln_2[0]).fusion.fold_div == 4
    with torch.no_grad():
        expected = hand_shifted_model(plain, ln_2, 3, fold_div=4)(clip.flatten(0, 1)).unflatten(0, (2, 3))
        assert_close(model(clip), expected.mean(1), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="already temporalized"):
        temporalize(model, "gsf")
    with pytest.raises(ValueError, match="shift_class_token=False, but SwinTransformer has no class token"):
        temporalize(plain_transformer("torchvision_swin"), "tsm", shift_class_token=False)
    with pytest.raises(TypeError, match="shift_class_token applies to vision transformers"):
        temporalize(tvm.resnet18(), "tsm", shift_class_token=False)


@pytest.mark.parametrize("family", ["torchvision_vit", "torchvision_swin"])
def test_wrap_a_transformer(family):
    plain = plain_transformer(family)
    images = torch.rand(2, 3, 32, 32)
    wrapped = wrap(copy.deepcopy(plain), "identity", T=3).eval()
    with torch.no_grad():
        assert_close(wrapped(images), plain(images), rtol=1e-4, atol=1e-5)  # GSF at init, no motion
    wrapped = wrap(copy.deepcopy(plain), "translate_x:0.1,rotate:10", T=3, fusion="tsm").eval()
    clip = ImageToVideo("translate_x:0.1,rotate:10", 3)(images)
    with torch.no_grad():
        expected = hand_shifted_model(plain, TRANSFORMERS[family][1], 3)(clip.flatten(0, 1)).unflatten(0, (2, 3))
        assert_close(wrapped(images), expected.mean(1), rtol=1e-4, atol=1e-5)


def random_scaled(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, GatedTokenShift):
                m.scale.normal_()
    return model


@pytest.mark.parametrize("fusion", ["tsm", "gsf"])
@pytest.mark.parametrize("family", ["torchvision_vit", "torchvision_swin"])
def test_transformer_torch_export(family, fusion):
    model = random_scaled(temporalize(plain_transformer(family), fusion)).eval()
    clip = torch.rand(2, 3, 3, 32, 32)
    program = torch.export.export(model, (clip,))
    other = torch.rand(2, 3, 3, 32, 32)
    with torch.no_grad():
        assert_close(program.module()(other), model(other), rtol=1e-4, atol=1e-5)


def test_transformer_torch_compile_forward_and_backward():
    model = random_scaled(temporalize(plain_transformer("torchvision_vit"), "gsf")).train()
    twin = copy.deepcopy(model)
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    clip = torch.rand(2, 3, 3, 32, 32)
    out, expected = compiled(clip), model(clip)
    assert_close(out, expected, rtol=1e-4, atol=1e-5)
    out.sum().backward()
    expected.sum().backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("fusion", ["tsm", "gsf"])
def test_transformer_onnx_export_runs_in_onnxruntime(fusion, run_in_onnxruntime):
    model = random_scaled(temporalize(plain_transformer("torchvision_vit"), fusion)).eval()
    clip = torch.rand(2, 3, 3, 32, 32)
    out = run_in_onnxruntime(model, clip)
    with torch.no_grad():
        assert_close(out, model(clip), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["tsm", "gsf"])
def test_transformer_torch_compile_inductor(fusion):
    model = random_scaled(temporalize(plain_transformer("torchvision_vit"), fusion)).eval()
    clip = torch.rand(2, 3, 3, 32, 32)
    with torch.no_grad():
        assert_close(torch.compile(model)(clip), model(clip), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- timm CNNs

# blocks per network, from the architectures' published stage depths
TIMM_CNNS = {
    "resnet18": 2 + 2 + 2 + 2,
    "resnet50d": 3 + 4 + 6 + 3,
    "efficientnet_b0": 1 + 2 + 2 + 3 + 3 + 4 + 1,
    "mobilenetv3_small_100": 1 + 2 + 3 + 2 + 3,
    "convnext_atto": 2 + 2 + 6 + 2,
    "regnety_002": 1 + 1 + 4 + 7,
    "resnext26ts": 2 + 2 + 2 + 2,
}


@pytest.mark.parametrize("name", sorted(TIMM_CNNS))
def test_timm_cnn(name):
    """One site per block, each a Conv2d; TSM adds nothing, GSF its documented 30 Cg + 40 per site; a 2D
    checkpoint loads missing only fusion keys; GSF at init gives the 2D frame average."""
    torch.manual_seed(0)
    plain = timm_model(name, num_classes=4).eval()
    buffer = io.BytesIO()
    torch.save(plain.state_dict(), buffer)
    tsm = temporalize(copy.deepcopy(plain), "tsm")
    assert len(tsm.temporal_sites) == TIMM_CNNS[name] and n_params(tsm) == n_params(plain)
    model = temporalize(timm_model(name, num_classes=4), "gsf").eval()
    assert isinstance(model, type(plain)) and len(model.temporal_sites) == TIMM_CNNS[name]
    sites = [model.get_submodule(s) for s in model.temporal_sites]
    assert all(isinstance(s, nn.Conv2d) and isinstance(s.fusion, GateShiftFuse) for s in sites)
    assert n_params(model) - n_params(plain) == sum(30 * fused_channels(s.out_channels) + 40 for s in sites)
    buffer.seek(0)
    result = model.load_state_dict(torch.load(buffer), strict=False)
    assert result.unexpected_keys == [] and all(".fusion." in key for key in result.missing_keys)
    clip = torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad():
        assert_close(model(clip), frame_average(plain, clip), rtol=1e-4, atol=1e-5)


def test_timm_regnet_one_block_stage():
    """timm's RegNet stages hold their blocks as direct children; a stage of one block is that block,
    and the site is its last branch conv, not the shortcut's (the "downsample" child)."""
    sites = temporalize(timm_model("regnety_002"), "gsf").temporal_sites
    assert sites[:3] == ("s1.b1.conv3.conv", "s2.b1.conv3.conv", "s3.b1.conv3.conv")
    assert not any("downsample" in s for s in sites)


# ----------------------------------------------------------------------------- segmentation_models_pytorch


@pytest.mark.parametrize("arch", ["PSPNet", "DeepLabV3", "Unet", "FPN"])
def test_smp_models_wrap(arch):
    """The paper's PSPNet (Tables 2, 3, 6) and friends: the ResNet-18 encoder gets its 8 reference sites;
    with no fusion, wrap's output is each frame's map undone and averaged; GSF at init with the identity
    motion is the 2D model."""
    smp = pytest.importorskip("segmentation_models_pytorch",
                              reason="segmentation_models_pytorch is not installed (pip install img2vid[smp])")
    torch.manual_seed(0)
    plain = getattr(smp, arch)("resnet18", encoder_weights=None, classes=3).eval()
    images = torch.rand(2, 3, 64, 64)
    wrapped = wrap(copy.deepcopy(plain), "identity", T=3).eval()
    encoder_sites = [s for s in wrapped.temporal_sites if s.startswith("encoder.")]
    assert encoder_sites == [f"encoder.layer{i}.{j}.conv2" for i in range(1, 5) for j in range(2)]
    with torch.no_grad():  # the same maths on 3x the batch: float rounding differs slightly
        assert_close(wrapped(images), plain(images), rtol=1e-4, atol=1e-4)
    genotype = "translate_x:0.125"
    wrapped = wrap(copy.deepcopy(plain), genotype, T=3, fusion="none").eval()
    video = ImageToVideo(genotype, 3)
    with torch.no_grad():
        clip = video(images)
        per_frame = plain(clip.flatten(0, 1)).unflatten(0, (2, 3))
        assert_close(wrapped(images), video.inverse(per_frame).mean(1), rtol=1e-4, atol=1e-5)
