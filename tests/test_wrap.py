"""wrap: images in, the 2D model's kind of output out (logits averaged, dense maps undone first)."""

import copy
import io
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm
import torchvision.models.segmentation as seg
import torchvision.transforms.v2.functional as TF
from torch import nn
from torch.testing import assert_close

from img2vid.genotype import Genotype
from img2vid.temporalize import temporalize
from img2vid.video import ImageToVideo
from img2vid.wrap import checkpoint_motion, wrap

# Small tensors: one intra-op thread is faster, and far faster on a busy machine (see conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


class DenseIdentity(nn.Module):
    """A "segmentation model" whose output map is its input: 1x1 identity convs."""

    def __init__(self, as_dict: bool = False):
        super().__init__()
        self.as_dict = as_dict
        self.stem = nn.Conv2d(3, 3, 1, bias=False)
        self.head = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.stem.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.head.weight.copy_(torch.eye(3).view(3, 3, 1, 1))

    def forward(self, x):
        out = self.head(self.stem(x))
        return {"out": out, "pooled": out.mean((-2, -1))} if self.as_dict else out


@pytest.mark.parametrize(
    "builder",
    [
        lambda: tvm.resnet18(num_classes=7),
        lambda: seg.fcn_resnet50(weights=None, weights_backbone=None, num_classes=3, aux_loss=True),
        lambda: seg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3),
    ],
    ids=["resnet18", "fcn_resnet50", "lraspp"],
)
def test_identity_genotype_equals_the_model(builder):
    torch.manual_seed(0)
    plain = builder().eval()
    wrapped = wrap(copy.deepcopy(plain), "identity", T=3).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out, expected = wrapped(images), plain(images)
    if isinstance(expected, dict):
        assert list(out) == list(expected) and type(out) is type(expected)
        for key in expected:
            assert out[key].shape == expected[key].shape
            assert_close(out[key], expected[key], rtol=1e-4, atol=1e-5)
    else:
        assert_close(out, expected)


def test_train_mode_batch_norm():
    """Identity genotype, train mode: T copies of each image give BN the same batch mean and biased
    variance (so the same outputs and running mean); only the unbiased running-variance update sees
    T times more samples: n / (n - 1) with n = B*T*H*W instead of B*H*W."""
    torch.manual_seed(0)
    plain = tvm.resnet18(num_classes=7).train()
    wrapped = wrap(copy.deepcopy(plain), "identity", T=3).train()
    images = torch.rand(4, 3, 32, 32)
    assert_close(wrapped(images), plain(images), rtol=1e-4, atol=1e-4)
    m = plain.bn1.momentum
    assert_close(wrapped.bn1.running_mean, plain.bn1.running_mean)
    n = 4 * 16 * 16  # bn1 sees (B, 64, 16, 16) per frame
    biased_var = (plain.bn1.running_var - (1 - m)) / m * (n - 1) / n
    expected_var = (1 - m) + m * biased_var * (3 * n) / (3 * n - 1)
    assert_close(wrapped.bn1.running_var, expected_var)
    assert not torch.allclose(wrapped.bn1.running_var, plain.bn1.running_var, rtol=0, atol=1e-7)


@pytest.mark.parametrize("as_dict", [False, True])
def test_dense_outputs_are_warped_back(as_dict):
    """An exact 2-pixel translation: frames move by -2, 0, +2 px; undoing each one before the mean gives
    back the image away from the borders, where a plain mean would blur it."""
    images = torch.rand(2, 3, 16, 32)
    genotype = "translate_x:0.0625"  # 0.0625 * 32 = 2 px
    wrapped = wrap(DenseIdentity(as_dict), genotype, T=3, fusion="none").eval()
    out = wrapped(images)
    dense = out["out"] if as_dict else out
    assert dense.shape == images.shape
    assert_close(dense[..., 4:-4], images[..., 4:-4])
    assert not torch.allclose(ImageToVideo(genotype, 3)(images).mean(1)[..., 4:-4], images[..., 4:-4])
    if as_dict:  # not dense: a plain mean over frames
        assert_close(out["pooled"], ImageToVideo(genotype, 3)(images).mean((1, -2, -1)))


class DenseTwoResolutions(DenseIdentity):
    """A "segmentation model" with a full-resolution map and an auxiliary map at half resolution."""

    def forward(self, x):
        out = self.head(self.stem(x))
        return {"out": out, "aux": F.avg_pool2d(out, 2)}


def test_dense_outputs_at_another_resolution_are_undone_at_theirs():
    """translate_x:0.25 is 8 px at 32 px wide and 4 px at the auxiliary map's 16 px: the half-resolution
    output is warped back at its own size. Oracle: torchvision's affine, frame by frame (integer
    translations, so exact), the negated motion applied at half resolution."""
    images = torch.rand(2, 3, 16, 32)
    wrapped = wrap(DenseTwoResolutions(), "translate_x:0.25", T=3, fusion="none").eval()
    out = wrapped(images)
    assert out["aux"].shape == (2, 3, 8, 16)
    frames = []
    for power in (-1, 0, 1):
        moved = TF.affine(images, angle=0.0, translate=[power * 8, 0], scale=1.0, shear=[0.0, 0.0])
        aux = F.avg_pool2d(moved, 2)
        frames.append(TF.affine(aux, angle=0.0, translate=[-power * 4, 0], scale=1.0, shear=[0.0, 0.0]))
    assert_close(out["aux"], torch.stack(frames, 1).mean(1))
    assert_close(out["aux"][..., 4:-4], F.avg_pool2d(images, 2)[..., 4:-4])  # aligned away from the borders
    assert_close(out["out"][..., 8:-8], images[..., 8:-8])


def test_checkpoints_remember_the_motion():
    torch.manual_seed(0)
    wrapped = wrap(tvm.resnet18(num_classes=3), "translate_x:0.1,rotate:10", T=3, frames="forward").eval()
    buffer = io.BytesIO()
    torch.save(wrapped.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # plain types: loads without unpickling code
    other = wrap(tvm.resnet18(num_classes=3), "identity", T=5).eval()
    with pytest.warns(UserWarning, match=r"motion \(genotype 'translate_x:0.1,rotate:10.0', T=3, frames='forward'\) "
                      r"replaces the model's \(genotype 'identity', T=5, frames='centered'\)"):
        assert other.load_state_dict(state) is not None  # strict: the motion is a key like the weights
    video = other.image_to_video
    assert video.genotype == Genotype.parse("translate_x:0.1,rotate:10") and video.T == 3
    assert video.frames == "forward"
    images = torch.rand(2, 3, 32, 32)
    assert_close(other(images), wrapped(images))
    # a 2D checkpoint keeps the current motion and reports only the fusion keys missing
    result = other.load_state_dict(tvm.resnet18(num_classes=3).state_dict(), strict=False)
    assert result.missing_keys and all(".fusion." in key for key in result.missing_keys)
    assert other.image_to_video.T == 3
    with pytest.raises(ValueError, match="genotype, T and frames"):
        other.load_state_dict({**state, "_extra_state": {"T": 3}})
    # a model that takes clips loads the wrapped weights strictly; the motion is wrap's alone
    clips_in = temporalize(tvm.resnet18(num_classes=3), "gsf", reduce=None).eval()
    clips_in.load_state_dict(state)
    clip = ImageToVideo("translate_x:0.1,rotate:10", 3, frames="forward")(images)
    assert_close(clips_in(clip).mean(1), wrapped(images))


def test_logits_are_averaged_over_the_clip():
    torch.manual_seed(0)
    plain = tvm.resnet18(num_classes=4).eval()
    wrapped = wrap(copy.deepcopy(plain), "translate_x:0.1,rotate:10", T=4, fusion="none", frames="forward").eval()
    images = torch.rand(2, 3, 32, 32)
    clip = ImageToVideo("translate_x:0.1,rotate:10", 4, frames="forward")(images)
    expected = torch.stack([plain(clip[:, t]) for t in range(4)], 1).mean(1)
    assert_close(wrapped(images), expected)


def test_gradients_reach_the_images_and_a_tensor_magnitude():
    magnitude = torch.tensor(5.0, requires_grad=True)
    wrapped = wrap(tvm.resnet18(num_classes=3), Genotype([("rotate", magnitude)]), T=3, fusion="tsm")
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    wrapped(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert magnitude.grad is not None and magnitude.grad != 0


def test_keeps_type_names_and_checkpoints():
    torch.manual_seed(0)
    plain = tvm.resnet18(num_classes=5).eval()
    buffer = io.BytesIO()
    torch.save(plain.state_dict(), buffer)
    wrapped = wrap(tvm.resnet18(num_classes=5), "identity", T=3)
    assert type(wrapped) is tvm.ResNet and wrapped.temporal_reduce is None  # the class is kept
    buffer.seek(0)
    result = wrapped.load_state_dict(torch.load(buffer), strict=False)
    assert result.unexpected_keys == [] and all(".fusion." in k for k in result.missing_keys)
    images = torch.rand(2, 3, 32, 32)
    assert_close(wrapped.eval()(images), plain(images))
    twin = copy.deepcopy(wrapped)
    assert type(twin) is type(wrapped)
    assert_close(twin(images), plain(images))
    buffer = io.BytesIO()
    torch.save(wrapped, buffer)
    buffer.seek(0)
    assert_close(torch.load(buffer, weights_only=False)(images), plain(images))


def test_errors():
    plain = tvm.resnet18()
    with pytest.raises(ValueError, match="unknown op"):
        wrap(plain, "translate:0.1")
    with pytest.raises(ValueError, match="T"):
        wrap(plain, "identity", T=0)
    with pytest.raises(ValueError, match="unknown fusion"):
        wrap(plain, "identity", fusion="3d")
    with pytest.raises(TypeError, match="reduce"):
        wrap(plain, "identity", reduce=None)
    assert type(plain) is tvm.ResNet  # untouched by the failures above
    wrapped = wrap(plain, "identity", T=2)
    with pytest.raises(ValueError, match=r"takes images \(B, C, H, W\), got \(1, 2, 3, 32, 32\)"):
        wrapped(torch.rand(1, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="already temporalized"):
        wrap(wrapped, "identity")


def test_wrap_sequential_model():
    # The transform must not become a child that nn.Sequential would run as a last layer.
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 6))
    from img2vid.wrap import wrap

    wrapped = wrap(net, "translate_x:0.1", T=3, fusion="tsm")
    assert wrapped(torch.rand(2, 3, 16, 16)).shape == (2, 6)
    assert not any("image_to_video" in key for key in wrapped.state_dict())


class DenseLayouts(DenseIdentity):
    """The identity map in another layout: ``(B, h, w)`` (binary segmentation), channels-last
    ``(B, h, w, K)``, or a token sequence ``(B, N, D)``."""

    def __init__(self, layout: str):
        super().__init__()
        self.layout = layout

    def forward(self, x):
        out = self.head(self.stem(x))
        if self.layout == "map":
            return out[:, 0]
        if self.layout == "channels_last":
            return out.permute(0, 2, 3, 1)
        return out.flatten(2).transpose(1, 2)  # tokens (B, H*W, K)


def test_a_one_channel_map_is_undone_like_a_k_channel_map():
    """Binary segmentation heads return (B, h, w): warped back per frame like (B, 1, h, w)."""
    images = torch.rand(2, 3, 16, 32)
    out = wrap(DenseLayouts("map"), "translate_x:0.25", T=3, fusion="none").eval()(images)
    expected = wrap(DenseIdentity(), "translate_x:0.25", T=3, fusion="none").eval()(images)[:, 0]
    assert out.shape == (2, 16, 32)
    assert_close(out, expected)
    assert_close(out[..., 8:-8], images[:, 0, :, 8:-8])  # aligned with the input again


@pytest.mark.parametrize("layout", ["channels_last", "tokens"])
def test_dense_layouts_that_cannot_be_aligned_are_refused(layout):
    wrapped = wrap(DenseLayouts(layout), "translate_x:0.25", T=3, fusion="none").eval()
    with pytest.raises(ValueError, match=r"wrap cannot align the model's output of shape .* \(16, 32\) input"):
        wrapped(torch.rand(2, 3, 16, 32))


def test_a_checkpoint_rebuilds_its_wrapped_model():
    torch.manual_seed(0)
    wrapped = wrap(tvm.resnet18(num_classes=3), "translate_x:0.1,rotate:10", T=3, fusion="tsm",
                   frames="forward", padding_mode="border").eval()
    buffer = io.BytesIO()
    torch.save(wrapped.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    motion = checkpoint_motion(state)
    assert motion == {"genotype": Genotype.parse("translate_x:0.1,rotate:10"), "T": 3, "frames": "forward",
                      "interpolation": "bilinear", "padding_mode": "border", "fusion": "tsm"}
    rebuilt = wrap(tvm.resnet18(num_classes=3), **motion).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same motion: no warning
        rebuilt.load_state_dict(state)
    images = torch.rand(2, 3, 32, 32)
    assert_close(rebuilt(images), wrapped(images))
    with pytest.raises(ValueError, match="not a wrapped model's checkpoint"):
        checkpoint_motion(tvm.resnet18().state_dict())
    nested = nn.Sequential(wrapped).state_dict()
    assert checkpoint_motion(nested, prefix="0.")["T"] == 3
