"""The searchable stem: Eq. 1 mixtures, the chain it discretises to, gradients and memory."""

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call
from torch.testing import assert_close

import img2vid as i2v
from img2vid.functional import matrix_powers
from img2vid.search import SPACES, network_parameters, searchable_stem
from img2vid.search.stem import _warp_edges, _WarpEdgesFunction

NON_RANDOM_OPS = [name for name in i2v.OPS if name != "cutout"]


def one_hot_tau(stem, choices):
    with torch.no_grad():
        stem.tau.fill_(-1e4)
        for k, t in enumerate(choices):
            stem.tau[k, t] = 1e4


def test_default_stem_is_the_papers_affine_cell():
    stem = searchable_stem()
    assert stem.ops == ("identity", "translate_x", "translate_y", "scale", "rotate")
    assert len(stem.edges) == 10  # 5^10 choices
    assert stem.edges[:3] == ((0, 1), (0, 2), (1, 2))
    assert stem.tau.shape == (10, 5)
    assert_close(stem.weights().sum(1), torch.ones(10))
    assert stem(torch.rand(2, 3, 16, 16)).shape == (2, 5, 3, 16, 16)
    assert len(SPACES["autoaugment"]) == 15


@pytest.mark.parametrize("frames", ["centered", "forward"])
@pytest.mark.parametrize("T", [1, 4, 5])
def test_single_edge_is_the_softmax_mixture_of_image_to_video_clips(T, frames, dtype):
    # One edge, no context: Eq. 1 by hand, each op's clip from ImageToVideo.
    stem = searchable_stem("affine", T, nodes=1, frames=frames).to(dtype)
    with torch.no_grad():
        stem.tau.copy_(torch.tensor([[0.3, -1.0, 2.0, 0.5, 1.2]]))
    x = torch.rand(2, 3, 16, 20, dtype=dtype)
    w = torch.softmax(stem.tau[0].detach(), 0)
    expected = sum(
        w[t] * i2v.ImageToVideo(i2v.Genotype([(name, i2v.OPS[name].default)]) if name != "identity" else "identity",
                                T, frames=frames)(x)
        for t, name in enumerate(stem.ops)
    )
    assert_close(stem(x), expected, atol=1e-5 if dtype == torch.float32 else 1e-10, rtol=1e-5)


@pytest.mark.parametrize("frames", ["centered", "forward"])
def test_one_hot_stem_is_image_to_video_of_its_genotype(frames):
    stem = searchable_stem("affine", 5, nodes=4, frames=frames)
    choices = [1, 4, 3, 0, 2, 2, 4, 1, 3, 0]
    one_hot_tau(stem, choices)
    genotype = stem.genotype()
    assert [name for name, _ in genotype] == [stem.ops[t] for t in choices]
    x = torch.rand(3, 3, 24, 24)
    assert_close(stem(x), i2v.ImageToVideo(genotype, 5, frames=frames)(x), atol=2e-5, rtol=1e-5)


def test_one_hot_stem_with_pixel_ops_is_image_to_video_of_its_genotype():
    stem = searchable_stem(NON_RANDOM_OPS, 5, nodes=2)
    names = ["rotate", "color", "solarize"]
    one_hot_tau(stem, [stem.ops.index(n) for n in names])
    x = torch.rand(2, 3, 16, 16)
    genotype = stem.genotype()
    assert [name for name, _ in genotype] == names
    assert_close(stem(x), i2v.ImageToVideo(genotype, 5)(x), atol=2e-5, rtol=1e-5)


def test_centre_frame_is_the_image_and_mixture_is_a_convex_combination():
    stem = searchable_stem()
    x = torch.rand(2, 3, 16, 16)
    clip = stem(x)
    assert_close(clip[:, 2], x)
    assert clip.min() >= 0 and clip.max() <= 1 + 1e-6


def test_genotype_is_the_arg_max_chain_and_image_to_video_accepts_it():
    stem = searchable_stem(nodes=2)
    with torch.no_grad():
        stem.tau.copy_(torch.tensor([[0.0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 2, 0, 0, 0]]))
    assert str(stem.genotype()) == "scale:1.05,rotate:5.0,translate_x:0.05"
    assert i2v.ImageToVideo(stem.genotype())(torch.rand(1, 3, 8, 8)).shape == (1, 5, 3, 8, 8)


def test_gradcheck_tau_and_magnitudes_float64(one_thread):
    stem = searchable_stem(["identity", "translate_x", "rotate", "scale"], 3, nodes=2, learn_magnitudes=True).double()
    with torch.no_grad():
        stem.magnitudes.copy_(stem.magnitudes + 0.01 * torch.randn_like(stem.magnitudes))
    x = torch.rand(1, 2, 6, 7, dtype=torch.float64)

    def f(tau, magnitudes):
        return functional_call(stem, {"tau": tau, "magnitudes": magnitudes}, (x,))

    tau = (0.5 * torch.randn_like(stem.tau)).requires_grad_()
    magnitudes = stem.magnitudes.detach().clone().requires_grad_()
    assert gradcheck(f, (tau, magnitudes), eps=1e-6, atol=1e-5)


def test_gradcheck_pixel_ops_tau_float64(one_thread):
    stem = searchable_stem(["identity", "brightness", "color", "translate_y"], 3, nodes=2).double()
    x = torch.rand(1, 3, 5, 5, dtype=torch.float64) * 0.5 + 0.2  # away from the clamp at 0 and 1
    tau = (0.5 * torch.randn_like(stem.tau)).requires_grad_()
    assert gradcheck(lambda t: functional_call(stem, {"tau": t}, (x,)), (tau,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(("groups", "edges", "ops"), [(1, 2, 3), (3, 2, 3), (1, 1, 1)],
                         ids=["one image", "one image per frame", "one term"])
def test_warp_backward_against_autograd_through_grid_sample_float64(groups, edges, ops, one_thread):
    """The stem's memory-saving warp (no samples kept for backward, grid_sample's backward with the
    output gradient shared by every term): gradcheck, and its gradients equal plain autograd's through
    F.grid_sample."""
    torch.manual_seed(0)
    frames = 3
    images = torch.rand(groups, 2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    matrices = torch.eye(3, dtype=torch.float64).repeat(frames, edges, ops, 1, 1)
    matrices[..., :2, :] += 0.2 * torch.randn(frames, edges, ops, 2, 3, dtype=torch.float64)
    matrices.requires_grad_()
    weights = torch.rand(edges, ops, dtype=torch.float64, requires_grad=True)
    assert gradcheck(_WarpEdgesFunction.apply, (images, matrices, weights), eps=1e-6, atol=1e-6)
    out = _WarpEdgesFunction.apply(images, matrices, weights)
    expected = _warp_edges(images, matrices, weights)  # one plain grid_sample, under autograd
    assert_close(out, expected)
    grad = torch.randn_like(out)
    wanted = (images, matrices, weights)
    plain = torch.autograd.grad(expected, wanted, grad)
    for got, want in zip(torch.autograd.grad(out, wanted, grad), plain):
        assert_close(got, want)
    # Only what is asked for: the matrices' gradient alone (images and weights fixed).
    (alone,) = torch.autograd.grad(_WarpEdgesFunction.apply(images.detach(), matrices, weights.detach()), matrices,
                                   grad)
    assert_close(alone, plain[1])


def test_learnt_magnitudes_are_clamped_and_arch_parameters_are_disjoint():
    stem = searchable_stem(learn_magnitudes=True)
    assert [p.shape for p in stem.arch_parameters()] == [(10, 5), (10, 5)]
    with torch.no_grad():
        stem.magnitudes[:, stem.ops.index("scale")] = 100.0
    assert stem.op_magnitudes()[:, stem.ops.index("scale")].eq(4.0).all()
    model = torch.nn.Sequential(stem, torch.nn.Flatten(2), torch.nn.Linear(3 * 8 * 8, 2))
    net = network_parameters(model)
    assert {id(p) for p in net}.isdisjoint({id(p) for p in stem.arch_parameters()})
    assert len(net) == 2
    fixed = searchable_stem()
    assert len(fixed.arch_parameters()) == 1 and fixed.arch_parameters()[0] is fixed.tau


def test_gradient_with_checkpoint_matches_without():
    stem = searchable_stem(nodes=3)
    x = torch.rand(2, 3, 12, 12)
    target = torch.rand(2, 5, 3, 12, 12)
    ((stem(x) - target) ** 2).mean().backward()
    with_checkpoint = stem.tau.grad.clone()
    stem.tau.grad = None
    stem._checkpointed = lambda fn, *args: fn(*args)  # plain autograd
    ((stem(x) - target) ** 2).mean().backward()
    assert_close(with_checkpoint, stem.tau.grad)
    assert with_checkpoint.abs().sum() > 0


def _saved_bytes(fn):
    """Bytes of the distinct storages autograd keeps for backward."""
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


def test_saved_activations_do_not_grow_with_edges_and_ops():
    x = torch.rand(4, 3, 32, 32)
    clip_bytes = x.numel() * 5 * 4
    small = _saved_bytes(lambda: searchable_stem("affine", nodes=1)(x))
    large = _saved_bytes(lambda: searchable_stem(NON_RANDOM_OPS, nodes=4)(x))  # 10 edges x 15 ops
    assert large < 3 * clip_bytes, (small, large, clip_bytes)
    # Without recomputation autograd keeps every op's warped clip: the bound above would fail.
    plain = searchable_stem(NON_RANDOM_OPS, nodes=4)
    plain._checkpointed = lambda fn, *args: fn(*args)
    assert _saved_bytes(lambda: plain(x)) > 10 * large


def test_batched_matrix_powers():
    m = torch.tensor([[1.1, 0.2, 3.0], [-0.1, 0.9, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    out = matrix_powers(m.expand(4, 3, 3), [-2, 0, 3])[2]
    assert_close(out[0], torch.linalg.matrix_power(torch.linalg.inv(m), 2))
    assert_close(out[1], torch.eye(3, dtype=torch.float64))
    assert_close(out[2], torch.linalg.matrix_power(m, 3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"space": "cifar"}, "unknown search space 'cifar'.*affine.*autoaugment"),
        ({"space": ["translate_x", "warp"]}, "unknown op 'warp'.*translate_y"),
        ({"space": []}, "at least one op"),
        ({"space": ["rotate", "rotate"]}, "twice"),
        ({"nodes": 0}, "nodes >= 1, got 0"),
        ({"T": 0}, "T >= 1, got 0"),
        ({"frames": "backward"}, "frames must be one of"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        searchable_stem(**kwargs)


def test_bad_input():
    with pytest.raises(ValueError, match=r"float images \(B, C, H, W\)"):
        searchable_stem()(torch.rand(3, 8, 8))


@pytest.mark.parametrize(("shape", "match"), [((0, 3, 8, 8), r"empty batch: shape \(0, 3, 8, 8\)"),
                                              ((2, 0, 8, 8), r"no channels: shape \(2, 0, 8, 8\)")])
@pytest.mark.parametrize("space", ["affine", ["identity", "brightness", "rotate"]])
def test_empty_batch_or_channels_are_refused(shape, match, space):
    with pytest.raises(ValueError, match=match):
        searchable_stem(space, nodes=2)(torch.rand(shape))


def test_chunking_of_edges_changes_nothing_but_memory():
    x = torch.rand(2, 3, 12, 12)
    target = torch.rand(2, 5, 3, 12, 12)
    results = []
    for chunk_bytes in (1, 10**9):  # one edge at a time; all edges at once
        torch.manual_seed(0)
        stem = searchable_stem(nodes=3, learn_magnitudes=True)
        stem.chunk_bytes = chunk_bytes
        out = stem(x)
        ((out - target) ** 2).mean().backward()
        results.append((out.detach(), stem.tau.grad, stem.magnitudes.grad))
    for a, b in zip(*results):
        assert_close(a, b)


@pytest.mark.parametrize("size", [(1, 9), (7, 1)])
def test_one_pixel_high_or_wide_images_are_refused(size):
    with pytest.raises(ValueError, match=r"at least 2 x 2 pixels"):
        searchable_stem(nodes=2)(torch.rand(2, 3, *size))


def test_masking_and_fixing_seams():
    stem = searchable_stem(["identity", "translate_x", "rotate"], 3, nodes=2)
    with torch.no_grad():
        stem.tau.copy_(torch.tensor([[0.0, 1.0, 2.0]]).expand(3, 3))
    plain = stem.weights().detach()
    with stem.masked(1, 2):
        w = stem.weights().detach()
        assert float(w[1, 2]) == 0.0
        torch.testing.assert_close(w[1, :2], torch.softmax(torch.tensor([0.0, 1.0]), 0))  # renormalised
        torch.testing.assert_close(w[0], plain[0])
        with pytest.raises(ValueError, match="masked already"):
            with stem.masked(1, 2):
                pass
    torch.testing.assert_close(stem.weights(), plain)
    with stem.fixed([2, 0, 1]):
        assert stem.weights().argmax(1).tolist() == [2, 0, 1] and stem.weights().min().item() == 0.0
        assert stem(torch.rand(1, 1, 8, 8)).shape == (1, 3, 1, 8, 8)
    torch.testing.assert_close(stem.weights(), plain)
    stem.fix(0, 1)
    assert stem.weights()[0].tolist() == [0.0, 1.0, 0.0]
    stem.release()
    torch.testing.assert_close(stem.weights(), plain)
    with pytest.raises(ValueError, match="edge must be"):
        stem.fix(3, 0)
    with pytest.raises(ValueError, match="op must be"):
        stem.masked(0, 5).__enter__()
    with pytest.raises(ValueError, match="one op per edge"):
        stem.fixed([0]).__enter__()


def test_start_magnitudes():
    stem = searchable_stem("affine", 3, nodes=1, magnitudes={"translate_x": 0.12, "rotate": 20.0})
    got = dict(zip(stem.ops, stem.magnitudes[0].tolist()))
    assert got["translate_x"] == pytest.approx(0.12) and got["rotate"] == 20.0 and got["scale"] == pytest.approx(1.05)
    # With one-hot weights the stem is ImageToVideo of that genotype, at the given magnitude.
    x = torch.rand(1, 1, 12, 12)
    with stem.fixed([stem.ops.index("rotate")]):
        torch.testing.assert_close(stem(x), i2v.ImageToVideo("rotate:20", 3)(x), atol=2e-5, rtol=0)
    learnt = searchable_stem("affine", 3, nodes=1, learn_magnitudes=True, magnitudes={"scale": 1.3})
    assert learnt.magnitudes[0, learnt.ops.index("scale")].item() == pytest.approx(1.3)
    with pytest.raises(ValueError, match="not an op of this space"):
        searchable_stem("affine", 3, magnitudes={"shear_x": 5.0})
    with pytest.raises(ValueError, match="not an op of this space"):
        searchable_stem("affine", 3, magnitudes={"identity": 0.0})
    with pytest.raises(ValueError, match="must lie in"):
        searchable_stem("affine", 3, magnitudes={"rotate": 1000.0})
