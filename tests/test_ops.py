import math

import pytest
import torch
from torch.testing import assert_close
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from img2vid.ops import AFFINE_OPS, OPS, PIXEL_OPS, check_magnitude

H, W = 20, 24

# Each affine op as the torchvision call the contract names, for keypoints (the oracle of the geometry).
TORCHVISION_AFFINE = {
    "translate_x": lambda p, m: TF.affine(p, angle=0.0, translate=[m * W, 0.0], scale=1.0, shear=[0.0, 0.0]),
    "translate_y": lambda p, m: TF.affine(p, angle=0.0, translate=[0.0, m * H], scale=1.0, shear=[0.0, 0.0]),
    "rotate": lambda p, m: TF.rotate(p, angle=m),
    "scale": lambda p, m: TF.affine(p, angle=0.0, translate=[0.0, 0.0], scale=m, shear=[0.0, 0.0]),
    "shear_x": lambda p, m: TF.affine(p, angle=0.0, translate=[0.0, 0.0], scale=1.0, shear=[m, 0.0]),
    "shear_y": lambda p, m: TF.affine(p, angle=0.0, translate=[0.0, 0.0], scale=1.0, shear=[0.0, m]),
}
MAGNITUDES = {"translate_x": 0.15, "translate_y": -0.2, "rotate": 23.0, "scale": 1.3, "shear_x": 12.0,
              "shear_y": -9.0}


def test_table_lists_the_contract_ops():
    assert set(AFFINE_OPS) == {"identity", "translate_x", "translate_y", "rotate", "scale", "shear_x", "shear_y"}
    assert set(PIXEL_OPS) == {"auto_contrast", "invert", "equalize", "solarize", "posterize", "color",
                              "brightness", "sharpness", "cutout"}
    for name, op in OPS.items():
        assert op.name == name
        low, high = op.range
        assert low <= op.default <= high
        assert op.takes_magnitude == (name not in {"identity", "auto_contrast", "invert", "equalize"})


def test_table_is_read_only():
    with pytest.raises(TypeError):
        OPS["rotate"] = OPS["scale"]  # type: ignore[index]


@pytest.mark.parametrize("name", sorted(TORCHVISION_AFFINE))
def test_matrix_moves_content_like_torchvision(name):
    # torchvision keypoints live in pixel-corner coordinates (a pixel centre is at +0.5).
    points = torch.tensor([[0.0, 0.0], [5.0, 3.0], [23.0, 19.0], [11.5, 9.5]], dtype=torch.float64)
    m = MAGNITUDES[name]
    expected = TORCHVISION_AFFINE[name](tv_tensors.KeyPoints(points + 0.5, canvas_size=(H, W)), m) - 0.5
    matrix = OPS[name].matrix(torch.tensor(m, dtype=torch.float64), H, W)
    moved = (matrix @ torch.cat([points, torch.ones(4, 1, dtype=torch.float64)], 1).T).T[:, :2]
    assert_close(moved, expected.as_subclass(torch.Tensor), atol=1e-4, rtol=0)


def test_rotate_is_counter_clockwise_on_screen():
    # The pixel right of the centre goes up (smaller y) under a positive rotation.
    matrix = OPS["rotate"].matrix(90.0, 5, 5)
    moved = matrix @ torch.tensor([3.0, 2.0, 1.0])
    assert_close(moved, torch.tensor([2.0, 1.0, 1.0]), atol=1e-6, rtol=0)


def test_identity_matrix():
    assert_close(OPS["identity"].matrix(0.0, H, W), torch.eye(3))


def test_matrix_is_batched_and_keeps_dtype_and_device(device):
    m = torch.tensor([1.0, 5.0, -3.0], dtype=torch.float64, device=device)
    out = OPS["rotate"].matrix(m, H, W)
    assert out.shape == (3, 3, 3) and out.dtype == torch.float64 and out.device.type == device.type
    for i in range(3):
        assert_close(out[i], OPS["rotate"].matrix(m[i], H, W))


@pytest.mark.parametrize("name", sorted(TORCHVISION_AFFINE))
def test_matrix_gradcheck(name):
    m = torch.tensor(MAGNITUDES[name], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: OPS[name].matrix(v, H, W), (m,))


def test_affine_op_is_not_callable_on_images():
    with pytest.raises(ValueError, match="affine op"):
        OPS["rotate"](torch.rand(3, 4, 4), 1.0)
    with pytest.raises(ValueError, match="pixel op"):
        OPS["invert"].matrix(0.0, 4, 4)


# ---------------------------------------------------------------------------------------------------
# Pixel ops against torchvision's own functions (AutoAugment's magnitude meanings).

TORCHVISION_PIXEL = {
    "brightness": (0.4, lambda x, m: TF.adjust_brightness(x, 1.0 + m)),
    "color": (-0.6, lambda x, m: TF.adjust_saturation(x, 1.0 + m)),
    "sharpness": (0.7, lambda x, m: TF.adjust_sharpness(x, 1.0 + m)),
    "solarize": (0.4, lambda x, m: TF.solarize(x, m)),
    "posterize": (3.0, lambda x, m: TF.posterize(x, int(m))),
    "invert": (0.0, lambda x, m: TF.invert(x)),
    "auto_contrast": (0.0, lambda x, m: TF.autocontrast(x)),
    "equalize": (0.0, lambda x, m: TF.equalize(x)),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PIXEL))
def test_pixel_op_matches_torchvision(name):
    x = torch.rand(2, 3, 12, 10) * 0.8 + 0.1
    m, reference = TORCHVISION_PIXEL[name]
    assert_close(OPS[name](x, m), reference(x, m), atol=1e-5, rtol=0)


def test_pixel_ops_work_on_leading_dims():
    x = torch.rand(2, 4, 3, 8, 8)
    for name in PIXEL_OPS:
        assert OPS[name](x, OPS[name].default).shape == x.shape


def test_cutout_places_one_grey_square_per_image():
    x = torch.zeros(64, 1, 20, 20)
    out = OPS["cutout"](x, 0.25)  # side 5 px
    grey = (out == 0.5).flatten(1).sum(1)
    assert grey.max() == 25  # a whole square inside the image
    assert (grey <= 25).all() and (grey > 0).all()
    assert not torch.equal(out[0], out[1]) or not torch.equal(out[1], out[2])  # random positions


def test_cutout_draws_from_the_given_generator_and_leaves_the_global_one_alone():
    x = torch.zeros(16, 1, 20, 20)
    state = torch.get_rng_state()
    first = OPS["cutout"](x, 0.25, generator=torch.Generator().manual_seed(7))
    again = OPS["cutout"](x, 0.25, generator=torch.Generator().manual_seed(7))
    other = OPS["cutout"](x, 0.25, generator=torch.Generator().manual_seed(8))
    assert torch.equal(torch.get_rng_state(), state)  # nothing was drawn from the global generator
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert [name for name, op in OPS.items() if op.random] == ["cutout"]
    # deterministic ops take the keyword too (one call for every op) and draw nothing
    assert torch.equal(OPS["invert"](x, generator=torch.Generator()), 1 - x)


@pytest.mark.parametrize("name", ["brightness", "color", "sharpness"])
def test_blend_ops_gradcheck(name):
    x = (torch.rand(1, 3, 5, 5, dtype=torch.float64) * 0.5 + 0.25).requires_grad_()
    m = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: OPS[name](a, b), (x, m))


@pytest.mark.parametrize("name", ["invert", "auto_contrast"])
def test_input_gradcheck(name):
    x = torch.rand(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: OPS[name](a), (x,))


@pytest.mark.parametrize("name", ["posterize", "solarize", "cutout"])
def test_straight_through_magnitude_gradient(name):
    # The forward value is exact; the backward pass sees d(out)/d(m) = 1 per element.
    x = torch.rand(2, 3, 6, 6)
    m = torch.tensor(OPS[name].default, requires_grad=True)
    out = OPS[name](x, m)
    if name != "cutout":  # cutout's square lands somewhere else on each call
        assert_close(out.detach(), OPS[name](x, OPS[name].default), atol=0, rtol=0)
    out.sum().backward()
    assert m.grad is not None
    assert_close(m.grad, torch.tensor(float(x.numel())))


@pytest.mark.parametrize("name", ["posterize", "equalize"])
def test_straight_through_input_gradient(name):
    x = torch.rand(2, 3, 6, 6, requires_grad=True)
    weights = torch.rand(2, 3, 6, 6)
    (OPS[name](x, OPS[name].default) * weights).sum().backward()
    assert_close(x.grad, weights)


def test_color_needs_rgb_or_grey():
    with pytest.raises(ValueError, match="1 or 3 channels"):
        OPS["color"](torch.rand(2, 4, 5, 5), 0.3)


# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "magnitude", "message"),
    [
        ("nope", 1.0, "unknown op 'nope'; valid ops are"),
        ("rotate", math.inf, "must be finite"),
        ("rotate", math.nan, "must be finite"),
        ("scale", 0.0, r"must lie in \[0.25, 4.0\]"),
        ("posterize", 3.5, "whole number"),
        ("invert", 1.0, "takes no magnitude"),
        ("rotate", "ten", "must be a number"),
        ("rotate", torch.ones(2), "0-d tensor"),
    ],
)
def test_check_magnitude_errors(name, magnitude, message):
    with pytest.raises(ValueError, match=message):
        check_magnitude(name, magnitude)


def test_check_magnitude_accepts_valid_values():
    for name, op in OPS.items():
        check_magnitude(name, op.default)
        check_magnitude(name, torch.tensor(op.default))


# ---------------------------------------------------------------------------------------------------
# Every pixel op against torchvision's kernel of the same dtype, applied as often as a clip applies it
# (a frame of power p applies it |p| times: up to 3 times at T = 7).


def torchvision_pixel_op(name, x, m):
    """torchvision's kernel with AutoAugment's meaning of the magnitude, for x's dtype."""
    bound = 255.0 if x.dtype == torch.uint8 else 1.0
    return {
        "brightness": lambda: TF.adjust_brightness(x, 1.0 + m),
        "color": lambda: TF.adjust_saturation(x, 1.0 + m),
        "sharpness": lambda: TF.adjust_sharpness(x.clone(), 1.0 + m),  # float sharpness writes into its input
        "solarize": lambda: TF.solarize(x, bound * m),
        "posterize": lambda: TF.posterize(x, int(m)),
        "invert": lambda: TF.invert(x),
        "auto_contrast": lambda: TF.autocontrast(x),
        "equalize": lambda: TF.equalize(x),
    }[name]()


PIXEL_MAGNITUDES = {"brightness": [0.4, -0.3], "color": [-0.6, 0.8], "sharpness": [0.7, -0.5],
                    "solarize": [0.4, 0.75], "posterize": [3.0, 6.0], "invert": [0.0], "auto_contrast": [0.0],
                    "equalize": [0.0]}


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=["uint8", "float32"])
@pytest.mark.parametrize(("name", "m"), [(n, m) for n, ms in PIXEL_MAGNITUDES.items() for m in ms])
def test_pixel_op_is_torchvision_kernel_of_the_same_dtype_at_every_power(name, m, dtype):
    full = torch.randint(0, 256, (2, 3, 12, 10), dtype=torch.uint8)
    full[0, :, 0, 0], full[0, :, 0, 1] = 0, 255  # the extremes, where truncation and clamping show
    x = full if dtype == torch.uint8 else full.float() / 255
    ours, theirs = x, x
    for power in range(1, 4):
        ours, theirs = OPS[name](ours, m), torchvision_pixel_op(name, theirs, m)
        assert ours.dtype == dtype
        if dtype == torch.uint8:  # integer kernels: the same bits
            assert torch.equal(ours, theirs), f"{name}:{m} applied {power} times"
        else:
            assert_close(ours, theirs, atol=1e-5, rtol=0, msg=f"{name}:{m} applied {power} times")


def test_cutout_on_uint8_paints_grey_128_where_the_float_op_paints_0_5():
    x = torch.randint(0, 256, (8, 3, 20, 20), dtype=torch.uint8)
    square = OPS["cutout"](torch.zeros(8, 3, 20, 20), 0.3, generator=torch.Generator().manual_seed(3)) == 0.5
    out = OPS["cutout"](x, 0.3, generator=torch.Generator().manual_seed(3))
    assert out.dtype == torch.uint8 and square.any()
    assert torch.equal(out, torch.where(square, torch.tensor(128, dtype=torch.uint8), x))


def test_pixel_ops_refuse_other_dtypes():
    with pytest.raises(TypeError, match=r"op 'invert' takes float images in \[0, 1\] or uint8 .* got torch.int64"):
        OPS["invert"](torch.zeros(1, 3, 4, 4, dtype=torch.int64))


@pytest.mark.parametrize("huge", [10**400, -(10**400), 10**5000], ids=["1e400", "-1e400", "1e5000"])
def test_huge_integer_magnitudes_raise_value_error(huge):
    with pytest.raises(ValueError, match="magnitude of 'rotate' must be finite, got a number too large for a float"):
        check_magnitude("rotate", huge)
    with pytest.raises(ValueError, match="too large for a float"):
        OPS["rotate"].matrix(huge, H, W)
    with pytest.raises(ValueError, match="too large for a float"):
        OPS["brightness"](torch.rand(1, 3, 4, 4), huge)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=["uint8", "float32"])
@pytest.mark.parametrize("size", [(2, 2), (2, 7), (7, 2), (3, 3)])
def test_sharpness_of_images_without_much_interior_is_torchvision_s(size, dtype):
    # Found by the property tests: 2 x 2 float images ended in conv2d's "kernel size can't be greater
    # than actual input size". torchvision keeps images without an interior as they are.
    x = torch.randint(0, 256, (2, 3, *size), dtype=torch.uint8)
    x = x if dtype == torch.uint8 else x.float() / 255
    assert_close(OPS["sharpness"](x, 0.7), TF.adjust_sharpness(x.clone(), 1.7), atol=1e-6, rtol=0)
