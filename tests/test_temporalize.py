"""temporalize: placements, names, weights, outputs and errors, on real torchvision models
(random weights: nothing is downloaded)."""

import copy
import io
from collections import namedtuple

import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm
import torchvision.models.segmentation as seg
from torch import nn
from torch.testing import assert_close

from img2vid.fusion import GateShiftFuse, NoFusion, TemporalShift, temporal_shift
from img2vid.sites import default_sites
from img2vid.temporalize import current_call, is_site, map_outputs, temporal_call, temporalize

# Small tensors: one intra-op thread is faster, and far faster on a busy machine (see conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


def frame_average(model: nn.Module, clip: torch.Tensor):
    """The 2D model on each frame, averaged over frames (per key for dicts)."""
    outs = [model(clip[:, t]) for t in range(clip.shape[1])]
    if isinstance(outs[0], dict):
        return {key: torch.stack([o[key] for o in outs], 1).mean(1) for key in outs[0]}
    return torch.stack(outs, 1).mean(1)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- paper and references


def test_parameter_counts_match_the_paper():
    """Tab. 6: ResNet-18 (10 classes) TSM 11.18 M, GSF 11.20 M; Tab. 1: ResNet-50 25.6 M -> 25.7 M."""
    plain = n_params(tvm.resnet18(num_classes=10))
    assert round(n_params(temporalize(tvm.resnet18(num_classes=10), "tsm")) / 1e6, 2) == 11.18
    assert n_params(temporalize(tvm.resnet18(num_classes=10), "tsm")) == plain
    assert round(n_params(temporalize(tvm.resnet18(num_classes=10), "gsf")) / 1e6, 2) == 11.20
    assert n_params(temporalize(tvm.resnet18(num_classes=10), "none")) == plain
    resnet50 = tvm.resnet50()
    assert round(n_params(resnet50) / 1e6, 1) == 25.6
    assert round(n_params(temporalize(resnet50, "gsf")) / 1e6, 1) == 25.7


def test_resnet_reference_placements():
    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    tsm = temporalize(tvm.resnet18(), "tsm")
    assert tsm.temporal_sites == tuple(f"{b}.conv1" for b in blocks)  # "blockres"
    assert default_sites(tvm.resnet18(), "gsf") == [f"{b}.conv2" for b in blocks]  # before bn2
    # Bottleneck: GSF after conv3, before bn3 (downsample is the shortcut, not the branch).
    for builder in (tvm.resnet50, tvm.resnext50_32x4d, tvm.wide_resnet50_2):
        sites = default_sites(builder(), "gsf")
        assert len(sites) == 16 and all(s.endswith(".conv3") for s in sites), builder.__name__
        assert default_sites(builder(), "tsm") == [s.replace("conv3", "conv1") for s in sites]


def test_tsm_every_other_block_when_a_stage_is_deep():
    """The TSM reference shifts every other block when layer3 has >= 23 blocks (ResNet-101)."""
    sites = default_sites(tvm.resnet101(), "tsm")
    assert len(sites) == 2 + 2 + 12 + 2
    assert "layer3.0.conv1" in sites and "layer3.1.conv1" not in sites and "layer3.22.conv1" in sites
    assert len(default_sites(tvm.resnet101(), "gsf")) == 33


def test_tsm_site_shifts_the_branch_input_only():
    torch.manual_seed(0)
    model = temporalize(tvm.resnet18(), "tsm").eval()
    conv = model.layer1[0].conv1
    assert type(conv) is nn.Conv2d and is_site(conv) and isinstance(conv.fusion, TemporalShift)
    frames = torch.randn(6, 64, 8, 8)
    expected = F.conv2d(temporal_shift(frames.view(2, 3, 64, 8, 8)).view(6, 64, 8, 8), conv.weight, padding=1)
    with temporal_call(model, batch=2, T=3):
        assert_close(conv(frames), expected)


def test_gsf_site_fuses_the_conv_output():
    model = temporalize(tvm.resnet18(), "gsf").eval()
    conv = model.layer2[1].conv2
    assert isinstance(conv.fusion, GateShiftFuse) and conv.fusion.channels == 128 and conv.fusion.fused == 32
    with torch.no_grad():
        conv.fusion.scale.normal_()
    frames = torch.randn(4, 128, 4, 4)
    expected = conv.fusion(F.conv2d(frames, conv.weight, padding=1).view(2, 2, 128, 4, 4)).view(4, 128, 4, 4)
    with temporal_call(model, batch=2, T=2):
        assert_close(conv(frames), expected)


# ----------------------------------------------------------------------------- weights, names, class


def test_names_type_and_checkpoint():
    torch.manual_seed(0)
    plain = tvm.resnet18(num_classes=10).eval()
    buffer = io.BytesIO()
    torch.save(plain.state_dict(), buffer)  # a 2D checkpoint
    keys_2d = set(plain.state_dict())
    model = temporalize(tvm.resnet18(num_classes=10), "gsf").eval()  # other random weights
    assert type(model) is tvm.ResNet  # the class is kept, not swapped
    assert isinstance(model.fc, nn.Linear)
    keys = set(model.state_dict())
    assert keys_2d <= keys and all(".fusion." in key for key in keys - keys_2d)
    buffer.seek(0)
    result = model.load_state_dict(torch.load(buffer), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(".fusion." in key for key in result.missing_keys)
    clip = torch.rand(2, 3, 3, 32, 32)
    assert_close(model(clip), frame_average(plain, clip))  # GSF is the identity at step 0


def test_edits_in_place_and_keeps_parameters():
    plain = tvm.resnet18()
    weight = plain.conv1.weight
    model = temporalize(plain, "tsm")
    assert model is plain and model.conv1.weight is weight


def test_deepcopy_and_pickle():
    model = temporalize(tvm.resnet18(num_classes=4), "gsf").eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, GateShiftFuse):
                m.scale.normal_()
    clip = torch.rand(1, 3, 3, 32, 32)
    expected = model(clip)
    twin = copy.deepcopy(model)
    assert type(twin) is type(model) and type(twin.layer1[0].conv2) is type(model.layer1[0].conv2)
    assert_close(twin(clip), expected)
    with torch.no_grad():
        twin.layer1[0].conv2.fusion.scale.zero_()  # the copy is independent
    assert_close(model(clip), expected)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is tvm.ResNet and loaded.temporal_sites == model.temporal_sites
    assert_close(loaded(clip), expected)


# ----------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("fusion", ["gsf", "none"])
def test_equals_frame_average_of_the_2d_model(fusion):
    torch.manual_seed(0)
    plain = tvm.resnet18(num_classes=5).eval()
    model = temporalize(copy.deepcopy(plain), fusion).eval()
    for T in (1, 3, 4):  # one model serves any T
        clip = torch.rand(2, T, 3, 32, 32)
        assert_close(model(clip), frame_average(plain, clip))


def test_tsm_mixes_frames():
    """Inside the model, a block's first conv sees its input shifted as the definition says, element
    by element, and the frames' outputs then differ from the 2D network's."""
    torch.manual_seed(0)
    plain = tvm.resnet18(num_classes=5).eval()
    model = temporalize(copy.deepcopy(plain), "tsm").eval()
    clip = torch.rand(2, 3, 3, 32, 32)
    assert not torch.allclose(model(clip), frame_average(plain, clip), atol=1e-4)

    block = model.layer2[0]  # (B*T, 64, 8, 8) in, stride 2: the shift runs before the conv's stride
    seen = {}
    block.register_forward_hook(lambda module, args, out: seen.update(block_input=args[0]))
    block.bn1.register_forward_hook(lambda module, args, out: seen.update(conv1_output=args[0]))
    model(clip)
    x = seen["block_input"].view(2, 3, 64, 8, 8)  # (B, T, C, H, W)
    fold = 64 // 8
    shifted = torch.zeros_like(x)  # frames past either end read zeros
    for t in range(3):
        for c in range(64):
            source = t + 1 if c < fold else t - 1 if c < 2 * fold else t
            if 0 <= source < 3:
                shifted[:, t, c] = x[:, source, c]
    expected = F.conv2d(shifted.flatten(0, 1), block.conv1.weight, stride=2, padding=1)
    assert_close(seen["conv1_output"], expected)
    # ... and a frame's shifted channels really are its neighbours' values, not its own
    assert not torch.allclose(shifted[:, 1, :2 * fold], x[:, 1, :2 * fold])


def test_reduce_none_returns_per_frame_outputs():
    torch.manual_seed(0)
    plain = tvm.resnet18(num_classes=5).eval()
    model = temporalize(copy.deepcopy(plain), "gsf", reduce=None).eval()
    clip = torch.rand(2, 3, 3, 32, 32)
    out = model(clip)
    assert out.shape == (2, 3, 5)
    assert_close(out, torch.stack([plain(clip[:, t]) for t in range(3)], 1))


def test_non_contiguous_clip():
    """A (B, T, C, H, W) view of a (B, C, T, H, W) buffer is read by value, not reinterpreted."""
    plain = tvm.resnet18(num_classes=5).eval()
    model = temporalize(copy.deepcopy(plain), "gsf").eval()
    buffer = torch.rand(2, 3, 4, 32, 32)
    clip = buffer.permute(0, 2, 1, 3, 4)
    assert_close(model(clip), frame_average(plain, clip.contiguous()))


def test_dict_outputs_per_key():
    torch.manual_seed(0)
    plain = seg.fcn_resnet50(weights=None, weights_backbone=None, num_classes=3, aux_loss=True).eval()
    model = temporalize(copy.deepcopy(plain), "gsf").eval()
    clip = torch.rand(1, 2, 3, 32, 32)
    out = model(clip)
    assert list(out) == ["out", "aux"] and out["out"].shape == (1, 3, 32, 32)
    expected = frame_average(plain, clip)
    for key in out:
        assert_close(out[key], expected[key], rtol=1e-4, atol=1e-5)
    per_frame = temporalize(copy.deepcopy(plain), "tsm", reduce=None).eval()(clip)
    assert per_frame["aux"].shape == (1, 2, 3, 32, 32)


class TwoHeads(nn.Module):
    """Returns a named tuple with a None, as Inception-v3 and GoogLeNet do."""

    Out = namedtuple("Out", ["logits", "aux", "extra"])

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        h = self.body(self.stem(x)).mean((-2, -1))
        return self.Out(self.fc(h), [h], None)


def test_tuple_outputs_per_item():
    plain = TwoHeads().eval()
    model = temporalize(copy.deepcopy(plain), "gsf").eval()
    assert model.temporal_sites == ("body.0",)  # no blocks: every Conv2d but the first
    clip = torch.rand(2, 3, 3, 8, 8)
    out = model(clip)
    assert isinstance(out, TwoHeads.Out) and out.extra is None and isinstance(out.aux, list)
    outs = [plain(clip[:, t]) for t in range(3)]
    assert_close(out.logits, torch.stack([o.logits for o in outs], 1).mean(1))
    assert_close(out.aux[0], torch.stack([o.aux[0] for o in outs], 1).mean(1))


# ----------------------------------------------------------------------------- other families

FAMILIES = {
    "mobilenet_v2": (lambda: tvm.mobilenet_v2(num_classes=4), 32, 17, "features.1.conv.1"),
    "mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(num_classes=4), 32, 11, "features.1.block.2.0"),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(num_classes=4), 32, 16, "features.1.0.block.2.0"),
    "regnet_y_400mf": (lambda: tvm.regnet_y_400mf(num_classes=4), 32, 16, "trunk_output.block1.block1-0.f.c.0"),
    "convnext_tiny": (lambda: tvm.convnext_tiny(num_classes=4), 32, 18, "features.1.0.block.0"),
    "densenet121": (lambda: tvm.densenet121(num_classes=4), 32, 58, "features.denseblock1.denselayer1.conv2"),
    "vgg11_bn": (lambda: tvm.vgg11_bn(num_classes=4), 32, 7, "features.4"),
    "inception_v3": (lambda: tvm.inception_v3(num_classes=4, aux_logits=False, init_weights=False), 75, 11,
                     "Mixed_5b.branch_pool.conv"),
    "deeplabv3_mobilenet_v3_large": (
        lambda: seg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3), 32, 15,
        "backbone.1.block.1.0"),
    "lraspp_mobilenet_v3_large": (
        lambda: seg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3), 32, 15,
        "backbone.1.block.1.0"),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_other_families(family):
    """The generic rule finds a site per block; GSF at init gives the 2D frame average; TSM runs."""
    builder, size, n_sites, first_gsf_site = FAMILIES[family]
    torch.manual_seed(0)
    plain = builder().eval()
    model = temporalize(copy.deepcopy(plain), "gsf").eval()
    assert len(model.temporal_sites) == n_sites and model.temporal_sites[0] == first_gsf_site
    named = dict(model.named_modules())
    assert all(isinstance(named[s].fusion, GateShiftFuse) and isinstance(named[s], nn.Conv2d)
               for s in model.temporal_sites)
    assert isinstance(model, type(plain))
    clip = torch.rand(1, 2, 3, size, size)
    with torch.no_grad():
        out, expected = model(clip), frame_average(plain, clip)
    if isinstance(out, dict):
        assert list(out) == list(expected)
        out, expected = out["out"], expected["out"]
    assert_close(out, expected, rtol=1e-4, atol=1e-5)
    tsm = temporalize(copy.deepcopy(plain), "tsm").eval()
    with torch.no_grad():
        shifted = tsm(clip)
    assert (shifted["out"] if isinstance(shifted, dict) else shifted).shape == out.shape


def test_generic_rule_details():
    # A RegNet block's shortcut ("proj") is not its branch: TSM goes on f.a, not proj.
    regnet_tsm = default_sites(tvm.regnet_y_400mf(), "tsm")
    assert regnet_tsm[0] == "trunk_output.block1.block1-0.f.a.0" and not any("proj" in s for s in regnet_tsm)
    # MobileNetV2: TSM on the block input (the expansion conv), GSF after the projection, before its BN.
    mnv2 = tvm.mobilenet_v2()
    assert default_sites(mnv2, "tsm")[1] == "features.2.conv.0.0"
    assert default_sites(mnv2, "gsf")[1] == "features.2.conv.2"
    assert isinstance(dict(mnv2.named_modules())["features.2.conv.3"], nn.BatchNorm2d)
    # VGG has no blocks: every conv but the first one, which sees the image.
    vgg_convs = [n for n, m in tvm.vgg11().named_modules() if isinstance(m, nn.Conv2d)]
    assert default_sites(tvm.vgg11(), "tsm") == vgg_convs[1:]
    # Heads stay 2D.
    deeplab = seg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    assert all(s.startswith("backbone.") for s in default_sites(deeplab, "gsf"))


# ----------------------------------------------------------------------------- where=


def test_where_names_and_predicate():
    model = temporalize(tvm.resnet18(), "tsm", where=["layer4.1.conv2", "layer1.0.conv1"])
    assert model.temporal_sites == ("layer4.1.conv2", "layer1.0.conv1")
    assert isinstance(model.layer4[1].conv2.fusion, TemporalShift)
    assert not hasattr(model.layer2[0].conv1, "fusion")
    model = temporalize(tvm.resnet18(), "gsf", where=lambda name, m: name.startswith("layer3") and
                        isinstance(m, nn.BatchNorm2d), fraction=0.5)
    assert model.temporal_sites == ("layer3.0.bn1", "layer3.0.bn2", "layer3.0.downsample.1", "layer3.1.bn1",
                                    "layer3.1.bn2")
    assert model.layer3[0].bn1.fusion.fused == 128
    assert model(torch.rand(1, 2, 3, 32, 32)).shape == (1, 1000)


def test_where_errors_leave_the_model_untouched():
    plain = tvm.resnet18()
    with pytest.raises(ValueError, match=r"where= names no module of ResNet: \['layer9.conv1'\]"):
        temporalize(plain, "tsm", where=["layer1.0.conv1", "layer9.conv1"])
    with pytest.raises(ValueError, match="'layer1' is a Sequential; choose a layer inside it"):
        temporalize(plain, "tsm", where=["layer1"])
    with pytest.raises(ValueError, match=r"GSF needs the channel count of site 'relu' \(ReLU\)"):
        temporalize(plain, "gsf", where=["relu"])
    with pytest.raises(ValueError, match="fraction"):
        temporalize(plain, "gsf", fraction=2.0)
    with pytest.raises(TypeError):
        temporalize(plain, "tsm", fraction=0.5)
    assert type(plain) is tvm.ResNet
    assert not any(is_site(m) or hasattr(m, "fusion") for m in plain.modules())
    assert not hasattr(plain, "temporal_sites")


# ----------------------------------------------------------------------------- errors


def test_unknown_fusion_and_reduce():
    with pytest.raises(ValueError, match=r"unknown fusion 'gsm'; choose one of \['gsf', 'none', 'tsm'\]"):
        temporalize(tvm.resnet18(), "gsm")
    with pytest.raises(ValueError, match=r"reduce must be one of \['mean', None\], got 'sum'"):
        temporalize(tvm.resnet18(), "gsf", reduce="sum")


def test_twice_raises():
    model = temporalize(tvm.resnet18(), "tsm")
    with pytest.raises(ValueError, match="already temporalized"):
        temporalize(model, "gsf")
    outer = nn.Sequential(model)  # a temporalized part counts too
    with pytest.raises(ValueError, match="already temporalized"):
        temporalize(outer, "gsf")


def test_no_site_and_no_conv():
    with pytest.raises(ValueError, match="found no site"):
        temporalize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten()), "tsm")
    with pytest.raises(ValueError, match=r"no nn\.Conv2d"):
        temporalize(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), "gsf")


def test_layout_guards():
    model = temporalize(tvm.resnet18(num_classes=3), "gsf")
    with pytest.raises(ValueError, match=r"4-D batch \(2, 3, 32, 32\); images go through img2vid.wrap"):
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"C = 3 \(in_channels of its first Conv2d\).*\(2, 3, 5, 32, 32\).*transpose"):
        model(torch.rand(2, 3, 5, 32, 32))  # (B, C, T, H, W) passed by mistake
    with pytest.raises(ValueError, match=r"C = 3 .*got a clip of shape \(2, 5, 1, 32, 32\)$"):
        model(torch.rand(2, 5, 1, 32, 32))  # a grey clip for an RGB model: no transpose hint
    with pytest.raises(ValueError, match=r"\(2, 5, 3, 32, 32, 1\)"):
        model(torch.rand(2, 5, 3, 32, 32, 1))
    with pytest.raises(TypeError, match="list"):
        model([torch.rand(2, 5, 3, 32, 32)])


def test_site_outside_its_model_explains():
    model = temporalize(tvm.resnet18(), "tsm")
    with pytest.raises(RuntimeError, match="only inside its temporalized model"):
        model.layer1[0].conv1(torch.rand(2, 64, 8, 8))


def test_no_stale_T_after_a_forward():
    """T exists only during the model's forward: afterwards (even after a failing forward) a site or a
    block called directly raises instead of silently using the last clip's T."""
    model = temporalize(tvm.resnet18(num_classes=3), "tsm").eval()
    model(torch.rand(1, 2, 3, 32, 32))
    assert current_call() is None
    with pytest.raises(RuntimeError, match="only inside its temporalized model"):
        model.layer1[0].conv1(torch.rand(2, 64, 8, 8))
    with pytest.raises(RuntimeError, match="only inside its temporalized model"):
        model.layer2[1](torch.rand(2, 128, 4, 4))  # a block
    model.fc = nn.Linear(7, 3)  # a forward that fails after the sites ran
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        model(torch.rand(1, 2, 3, 32, 32))
    assert current_call() is None


def test_map_outputs_keeps_the_structure():
    Out = namedtuple("Out", ["a", "b"])
    out = map_outputs({"x": torch.ones(2), "y": [torch.zeros(1), None], "z": Out(torch.ones(1), (torch.ones(3),))},
                      lambda t: t.numel())
    assert out == {"x": 2, "y": [1, None], "z": Out(1, (3,))} and isinstance(out["z"], Out)
    with pytest.raises(TypeError, match="cannot average over frames a model output of type str"):
        map_outputs("logits", len, "average over frames")


def test_none_fusion_inserts_identities():
    model = temporalize(tvm.resnet18(), "none")
    assert all(isinstance(dict(model.named_modules())[s].fusion, NoFusion) for s in model.temporal_sites)
    assert "(fusion): NoFusion()" in repr(model)
