"""One temporalized or wrapped model, many callers: T travels with each call, never on the modules.
Also the mechanisms that replaced class swapping: lazy modules, torch.jit, module aliases."""

import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torchvision.models as tvm
from torch import nn
from torch.testing import assert_close

from img2vid.fusion import GateShiftFuse
from img2vid.temporalize import current_call, temporal_call, temporalize
from img2vid.wrap import wrap

pytestmark = pytest.mark.usefixtures("one_thread")


def random_scales(model: nn.Module) -> nn.Module:
    """GSF with non-zero residual scales, so the fusion changes the outputs (frames mix)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, GateShiftFuse):
                m.scale.normal_()
    return model.eval()


def run_threads(calls, threads=4, rounds=5):
    """Run every ``(fn, arg)`` of ``calls`` ``rounds`` times from ``threads`` threads at once (a barrier
    lines them up), returning the outputs in the order of the calls."""
    barrier = threading.Barrier(threads)

    def job(i):
        fn, arg = calls[i % len(calls)]
        if i < threads:
            barrier.wait()
        return fn(arg)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(job, range(len(calls) * rounds)))


@pytest.mark.parametrize("fusion", ["tsm", "gsf"])
def test_concurrent_calls_with_different_T_equal_lone_calls(fusion):
    torch.manual_seed(0)
    model = random_scales(temporalize(tvm.resnet18(num_classes=4), fusion))
    clips = [torch.rand(2, T, 3, 32, 32) for T in (3, 5, 2, 4)]
    with torch.no_grad():
        alone = [model(clip) for clip in clips]
        outs = run_threads([(model, clip) for clip in clips])
    for i, out in enumerate(outs):
        assert_close(out, alone[i % len(clips)], rtol=0, atol=0)
    assert current_call() is None


def test_concurrent_calls_with_the_same_T_equal_lone_calls():
    """Same B*T in every thread: a shape check cannot tell one call's frames from another's; only the
    call's own T (and its own clip) may reach its sites."""
    torch.manual_seed(0)
    model = random_scales(wrap(tvm.resnet18(num_classes=4), "translate_x:0.1,rotate:5", T=3))
    images = [torch.rand(2, 3, 32, 32) for _ in range(4)]
    with torch.no_grad():
        alone = [model(x) for x in images]
        outs = run_threads([(model, x) for x in images])
    for i, out in enumerate(outs):
        assert_close(out, alone[i % len(images)], rtol=0, atol=0)


def test_concurrent_training_steps_get_their_own_gradients():
    torch.manual_seed(0)
    model = random_scales(temporalize(tvm.resnet18(num_classes=3), "gsf")).train()
    for m in model.modules():  # batch statistics but no running-statistic races between threads
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
    clips = [torch.rand(2, T, 3, 16, 16, requires_grad=True) for T in (2, 3)]

    def grad_of(clip):
        (grad,) = torch.autograd.grad(model(clip).square().sum(), clip)
        return grad

    alone = [grad_of(clip) for clip in clips]
    for i, grad in enumerate(run_threads([(grad_of, clip) for clip in clips], threads=2, rounds=3)):
        assert_close(grad, alone[i % 2])


def test_no_module_attribute_holds_T():
    model = temporalize(tvm.resnet18(num_classes=3), "tsm").eval()
    before = {name: dict(vars(m)) for name, m in model.named_modules()}
    seen = []
    model.layer1[0].conv1.register_forward_pre_hook(lambda m, args: seen.append(current_call()))
    model(torch.rand(2, 3, 3, 32, 32))
    assert seen[0].T == 3 and seen[0].batch == 2 and seen[0].model is model
    after = {name: dict(vars(m)) for name, m in model.named_modules()}
    assert after.keys() == before.keys()
    for name in before:  # nothing but the hook just added changed on any module
        assert {k for k in before[name] if before[name][k] is not after[name].get(k)} <= {"_forward_pre_hooks"}


def test_nested_temporalized_models_keep_their_own_calls():
    """A temporalized model that runs inside another one's forward opens its own call."""
    inner = temporalize(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)),
                        "tsm", reduce=None, where=["2"]).eval()

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, padding=1)
            self.mix = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):  # frames (B*T, 3, H, W); the inner model sees each frame as a 1-frame clip
            y = inner(self.stem(x).unsqueeze(1)).squeeze(1)
            return self.mix(y).mean((1, 2, 3))

    outer = temporalize(Outer(), "tsm", where=["mix"]).eval()
    clip = torch.rand(2, 3, 3, 8, 8)
    out = outer(clip)
    assert out.shape == (2,) and current_call() is None


def test_a_site_sees_exactly_its_calls_frames():
    """A model that folds views into the batch (here: two crops per frame) before a site: the site sees
    2*B*T rows, a multiple of T, and must refuse them rather than shift across the wrong rows."""

    class TwoCrops(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.body = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            y = self.stem(x)
            y = torch.cat([y[..., :4], y[..., 4:]])  # (2*B*T, 8, H, W/2)
            return self.body(y).mean((1, 2, 3))

    model = temporalize(TwoCrops(), "tsm", where=["body"], reduce=None)
    with pytest.raises(ValueError, match=r"B\*T = 2\*3 = 6 frames on the batch axis, got \(12, 8, 8, 4\)"):
        model(torch.rand(2, 3, 3, 8, 8))
    assert current_call() is None  # the failed call is closed


def test_a_site_called_alone_needs_a_call():
    model = temporalize(tvm.resnet18(num_classes=3), "gsf").eval()
    conv = model.layer1[0].conv2
    frames = torch.rand(6, 64, 8, 8)
    with pytest.raises(RuntimeError, match="only inside its temporalized model's forward.*temporal_call"):
        conv(frames)
    with temporal_call(model, batch=2, T=3):
        assert conv(frames).shape == (6, 64, 8, 8)
    assert current_call() is None


# ----------------------------------------------------------------------------- lazy, jit, aliases


class LazyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.LazyConv2d(8, 3, padding=1)
        self.body = nn.LazyConv2d(8, 3, padding=1)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(self.stem(x).relu()).mean((2, 3)))


@pytest.mark.parametrize("fusion", ["tsm", "gsf"])
def test_lazy_sites_keep_their_fusion_after_materialising(fusion):
    torch.manual_seed(0)
    model = temporalize(LazyNet(), fusion, where=["body"]).eval()
    random_scales(model)
    clip = torch.rand(2, 3, 3, 8, 8)
    first = model(clip)  # materialises: LazyConv2d becomes Conv2d
    assert type(model.body) is nn.Conv2d and hasattr(model.body, "fusion")
    reference = copy.deepcopy(model)
    del reference.body.fusion
    with torch.no_grad():  # the fusion still acts: outputs differ from the same network without it
        plain = reference.body
        reference.body = nn.Conv2d(8, 8, 3, padding=1)
        reference.body.load_state_dict(plain.state_dict())
    assert_close(model(clip), first)
    frames = clip.flatten(0, 1)
    without = reference.head(reference.body(reference.stem(frames).relu()).mean((2, 3))).unflatten(0, (2, 3)).mean(1)
    assert not torch.allclose(first, without, atol=1e-6)


def test_a_lazy_gsf_site_of_unknown_width_is_refused_up_front():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.LazyBatchNorm2d(), nn.Conv2d(8, 8, 3))
    with pytest.raises(ValueError, match=r"site '1' is a lazy LazyBatchNorm2d whose channel count is not known"):
        temporalize(model, "gsf", where=["1"])


def test_scripted_models_are_refused():
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)))
    with pytest.raises(TypeError, match="torch.jit.script-ed"):
        temporalize(scripted, "tsm")
    with pytest.raises(TypeError, match="torch.jit.script-ed"):
        wrap(scripted, "identity", fusion="tsm")


def test_where_finds_a_module_registered_under_two_names():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    net.alias = net[2]  # the same module under "2" and "alias"
    model = temporalize(net, "tsm", where=["alias"])
    assert model.temporal_sites == ("alias",) and hasattr(net[2], "fusion")
    net2 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    net2.alias = net2[2]
    model2 = temporalize(net2, "tsm", where=lambda name, m: name == "alias")
    assert model2.temporal_sites == ("alias",)
    net3 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    net3.alias = net3[2]
    assert temporalize(net3, "tsm", where=["2", "alias"]).temporal_sites == ("2",)  # one site, once
    assert model(torch.rand(1, 2, 3, 8, 8)).shape == (1, 4, 8, 8)


def test_a_first_registered_conv_that_is_not_the_stem_refuses_nothing():
    class LateStem(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
            self.stem = nn.Conv2d(1, 8, 3, padding=1)  # registered after the body

        def forward(self, x):
            return self.body(self.stem(x)).mean((1, 2, 3))

    model = temporalize(LateStem(), "tsm", where=["body.2"])
    assert model(torch.rand(2, 3, 1, 8, 8)).shape == (2,)  # 1-channel clips: valid
    wrapped = wrap(LateStem(), "translate_x:0.1", T=3, fusion="tsm", where=["body.2"])
    assert wrapped(torch.rand(2, 1, 8, 8)).shape == (2,)


def test_integer_outputs_are_refused_clearly():
    class Labels(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return {"labels": self.b(self.a(x)).mean((2, 3)).argmax(1)}

    model = temporalize(Labels(), "tsm", where=["b"])
    with pytest.raises(TypeError, match=r"cannot average the model's output\['labels'\] over frames: it is torch.int64"):
        model(torch.rand(2, 3, 3, 8, 8))
    assert temporalize(Labels(), "tsm", where=["b"], reduce=None)(torch.rand(2, 3, 3, 8, 8))["labels"].shape == (2, 3)
    with pytest.raises(TypeError, match="torch.int64, not a float tensor"):
        wrap(Labels(), "identity", T=2, fusion="tsm", where=["b"])(torch.rand(2, 3, 8, 8))
