"""Deployment paths of a temporalized ResNet-18: torch.compile, torch.export, ONNX, AMP,
channels_last, SyncBatchNorm. GSF gets a random residual scale so its whole path is exercised."""

import copy

import pytest
import torch
import torchvision.models as tvm
from torch import nn
from torch.testing import assert_close
from torchvision.models.resnet import BasicBlock

from img2vid.fusion import GateShiftFuse
from img2vid.temporalize import temporalize

# Small tensors: one intra-op thread is faster, and far faster on a busy machine (see conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


def temporal_resnet18(fusion: str) -> nn.Module:
    torch.manual_seed(0)
    model = temporalize(tvm.resnet18(num_classes=10), fusion)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, GateShiftFuse):
                m.scale.normal_()
    return model.eval()


@pytest.fixture
def clip():
    return torch.rand(2, 3, 3, 32, 32)


@pytest.mark.parametrize("fusion", ["tsm", "gsf"])
def test_torch_export(fusion, clip):
    model = temporal_resnet18(fusion)
    program = torch.export.export(model, (clip,))
    assert_close(program.module()(clip), model(clip))
    other = torch.rand(2, 3, 3, 32, 32)
    assert_close(program.module()(other), model(other))


def test_torch_compile_forward_and_backward(clip):
    """Dynamo captures the whole model in one graph (fullgraph: no breaks), through AOTAutograd; the
    compiled forward and backward give eager's values and gradients (float64)."""
    model = temporal_resnet18("gsf").train().double()
    clip = clip.double()
    twin = copy.deepcopy(model)
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    out, expected = compiled(clip), model(clip)
    assert_close(out, expected)
    out.sum().backward()
    expected.sum().backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert_close(q.grad, p.grad, msg=name)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.layer1 = BasicBlock(4, 4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.layer1(self.conv1(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("style", ["torch.compile(model)", "model.compile()"])
def test_code_compiled_for_the_plain_network_is_refused_not_reused(style):
    """Dynamo does not guard on module hooks: once a plain network is compiled, a temporalized one of
    the same class, compiled and called on frames of the same shape, would run the plain graph and
    return the 2D network's output. The call notices that no site fused and says what to do."""

    def compiled(model):
        if style == "model.compile()":
            model.compile(backend="eager")
            return model
        return torch.compile(model, backend="eager")

    torch.compiler.reset()
    try:
        torch.manual_seed(0)
        base = _Tiny()
        compiled(copy.deepcopy(base))(torch.rand(6, 1, 8, 8))  # plain, 2 x 3 frames
        model = temporalize(copy.deepcopy(base), "gsf")
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, GateShiftFuse):
                    module.scale.normal_()
        eager = copy.deepcopy(model)
        fast = compiled(model)
        clip = torch.rand(2, 3, 1, 8, 8)
        with pytest.raises(RuntimeError, match=r"none of the \d+ fusion sites.*torch\.compiler\.reset\(\)"):
            fast(clip)
        torch.compiler.reset()
        assert_close(fast(clip), eager(clip))
        assert not torch.allclose(eager(clip), base(clip.flatten(0, 1)).view(2, 3, 5).mean(1))
    finally:
        torch.compiler.reset()


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["tsm", "gsf"])
def test_torch_compile_inductor(fusion, clip):
    """Inductor's C++ code generation (about 90 s per model on 2 cores)."""
    model = temporal_resnet18(fusion)
    assert_close(torch.compile(model)(clip), model(clip), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fusion", ["tsm", "gsf"])
def test_onnx_export_runs_in_onnxruntime(fusion, clip, run_in_onnxruntime):
    model = temporal_resnet18(fusion)
    assert_close(run_in_onnxruntime(model, clip), model(clip), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fusion", ["tsm", "gsf"])
def test_bf16_autocast_on_cpu(fusion, clip):
    model = temporal_resnet18(fusion).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(clip)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # Values against a float64 run, in eval mode (train-mode BN over 6 frames of 1x1 maps in layer4
    # amplifies any rounding). bf16 keeps 8 significant bits (unit roundoff 2^-8 = 0.4 %), and
    # autocast rounds the input and weights of each of ResNet-18's 20 convolutions and linear layer:
    # allow 8 roundoffs of the largest logit (3.1 %). Measured: 0.4-1.1 % over 8 seeds; rounding
    # only the input and the parameters to bf16 already costs 0.3-0.5 %.
    model.eval()
    reference = copy.deepcopy(model).double()(clip.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(clip)
    assert_close(out.double(), reference, rtol=0, atol=8 * 2**-8 * reference.abs().max().item())


@pytest.mark.parametrize("fusion", ["tsm", "gsf"])
def test_channels_last(fusion, clip):
    model = temporal_resnet18(fusion)
    expected = model(clip)
    model = model.to(memory_format=torch.channels_last)
    assert model.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert_close(model(clip), expected, rtol=1e-4, atol=1e-5)


def test_sync_batchnorm_conversion(clip):
    """Conversion keeps the class, the names and the fusion modules (GSF's BN included). SyncBatchNorm
    only runs in train mode on accelerators with a process group; eval mode runs anywhere."""
    model = temporal_resnet18("gsf")
    expected = model(clip)
    keys = list(model.state_dict())
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert type(converted) is tvm.ResNet and list(converted.state_dict()) == keys
    assert isinstance(converted.layer1[0].conv2.fusion.norm, nn.SyncBatchNorm)
    assert isinstance(converted.bn1, nn.SyncBatchNorm)
    assert_close(converted(clip), expected)


def test_wrapped_model_exports():
    """The whole pipeline (clip making with grid_sample, network, frame mean) is traceable too."""
    from img2vid.wrap import wrap

    torch.manual_seed(0)
    model = wrap(tvm.resnet18(num_classes=5), "translate_x:0.1,rotate:5", T=3, fusion="tsm").eval()
    images = torch.rand(2, 3, 32, 32)
    program = torch.export.export(model, (images,))
    # Tracing builds the clip's grid in the graph and keeps nothing traced on the transform.
    assert model.image_to_video._grids == {}
    assert_close(program.module()(images), model(images))
    kept = model.image_to_video._grids[torch.device("cpu")][1]
    assert type(kept) is torch.Tensor  # eager calls keep a real grid
