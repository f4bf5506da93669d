"""The public kernels of img2vid.functional, each against torchvision's kernel of the same kind, per frame."""

import math

import pytest
import torch
from torch.testing import assert_close
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

import img2vid as i2v
from img2vid import Genotype, ImageToVideo
from img2vid import functional as I2VF

H, W = 20, 24
BILINEAR = InterpolationMode.BILINEAR


def tv_params(steps, p, height, width):
    """torchvision ``affine`` parameters of frame power ``p`` of a genotype whose powers are one torchvision
    call: translations alone (they add), rotations and scales alone (about one centre they commute, so
    angles add and scales multiply), or one shear (tangents add)."""
    names = {name for name, _ in steps}
    assert names <= {"translate_x", "translate_y"} or names <= {"rotate", "scale"} or len(steps) == 1, steps
    params = {"angle": 0.0, "translate": [0.0, 0.0], "scale": 1.0, "shear": [0.0, 0.0]}
    for name, m in steps:
        if name == "translate_x":
            params["translate"][0] += p * m * width
        elif name == "translate_y":
            params["translate"][1] += p * m * height
        elif name == "rotate":
            params["angle"] -= p * m  # our rotate is counter-clockwise: torchvision's rotate, affine(angle=-m)
        elif name == "scale":
            params["scale"] *= m**p
        else:
            shear = math.degrees(math.atan(p * math.tan(math.radians(m))))
            params["shear"] = [shear, 0.0] if name == "shear_x" else [0.0, shear]
    return params


ONE_OP = [("translate_x", 0.1), ("translate_y", -0.15), ("rotate", 17.0), ("scale", 1.2), ("shear_x", 12.0),
          ("shear_y", -9.0)]


@pytest.mark.parametrize("frames", ["centered", "forward"])
@pytest.mark.parametrize(("name", "m"), ONE_OP)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_image_kernel_is_torchvision_affine_image_per_frame(name, m, frames, dtype):
    x = torch.rand(2, 3, H, W, dtype=torch.float64)
    x = (x * 255).round().to(dtype) if dtype == torch.uint8 else x.to(dtype)
    clip = I2VF.image_to_video_image(x, Genotype([(name, m)]), 4, frames=frames)
    assert clip.shape == (2, 4, 3, H, W) and clip.dtype == dtype
    for t, p in enumerate(I2VF.frame_powers(4, frames)):
        expected = TF.affine_image(x, **tv_params([(name, m)], p, H, W), interpolation=BILINEAR)
        if dtype == torch.uint8:  # both round a float32 warp, from grids that differ in the last bits:
            difference = (clip[:, t].int() - expected.int()).abs()
            assert difference.max() <= 1 and (difference > 0).float().mean() < 0.05  # ties at .5 only
        else:  # float32: our composed matrix powers round 1.2e-5 from float64 on torch 2.9 (5e-6 on 2.14)
            assert_close(clip[:, t], expected, atol=2e-5 if dtype == torch.float32 else 1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(H, W), (3, H, W), (2, 3, H, W)])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
@pytest.mark.parametrize("frames", ["centered", "forward"])
def test_mask_kernel_is_torchvision_affine_mask_per_frame(shape, dtype, frames):
    mask = torch.randint(0, 2 if dtype == torch.bool else 21, shape).to(dtype)
    genotype = "rotate:33,scale:1.2"
    clip = I2VF.image_to_video_mask(mask, genotype, 3, frames=frames)
    assert clip.dtype == dtype
    # (H, W) -> (T, H, W); (N, H, W) -> (T, N, H, W); (B, N, H, W) -> (B, T, N, H, W)
    assert clip.shape == ((3, *shape) if len(shape) < 4 else (shape[0], 3, *shape[1:]))
    for t, p in enumerate(I2VF.frame_powers(3, frames)):
        expected = TF.affine_mask(mask, **tv_params([("rotate", 33.0), ("scale", 1.2)], p, H, W))
        frame = clip[:, t] if len(shape) == 4 else clip[t]
        assert (frame != expected).float().mean() < 0.01  # only ties at exact half-pixel positions may differ


def test_mask_kernel_keeps_every_label_exactly():
    # ids past float64's 2^53 (instance ids packed into int64) and a whole-pixel shift: every label that
    # stays in view comes back to the last bit, and the pixels shifted in are 0.
    mask = torch.randint(2**60, 2**62, (2, H, W), dtype=torch.int64)
    clip = I2VF.image_to_video_mask(mask, Genotype([("translate_x", 3 / W), ("translate_y", -2 / H)]), 3)
    assert torch.equal(clip[2, :, : H - 2, 3:], mask[:, 2:, : W - 3])
    assert (clip[2, :, :, :3] == 0).all() and (clip[2, :, H - 2 :] == 0).all()
    assert torch.equal(clip[1], mask)
    floats = torch.rand(H, W, dtype=torch.float16)  # soft masks keep their values and dtype too
    assert torch.equal(I2VF.image_to_video_mask(floats, "rotate:90", 3)[1], floats)


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_mask_kernel_picks_the_pixels_the_image_kernel_samples(padding_mode):
    # Nearest interpolation: a mask frame holds the label of the pixel the image frame samples.
    values = torch.arange(H * W, dtype=torch.float64).view(1, 1, H, W)
    genotype = "shear_x:11,rotate:-23,scale:0.8,translate_x:0.07"
    image = I2VF.image_to_video_image(values, genotype, 5, interpolation="nearest", padding_mode=padding_mode)
    mask = I2VF.image_to_video_mask(values[0, 0].long(), genotype, 5, padding_mode=padding_mode)
    inside = (image[0, :, 0] > 0) | (mask > 0)
    assert (image[0, :, 0].long() == mask)[inside].float().mean() > 0.99  # float64 and float32 grids: ties


@pytest.mark.parametrize("fmt", ["XYXY", "XYWH", "CXCYWH"])
@pytest.mark.parametrize("clamping_mode", ["soft", "hard", None])
@pytest.mark.parametrize(("name", "m"), ONE_OP)
def test_box_kernel_is_torchvision_affine_bounding_boxes_per_frame(name, m, fmt, clamping_mode):
    xy = torch.rand(10, 2) * torch.tensor([W - 4.0, H - 4.0])
    xyxy = torch.cat([xy, xy + torch.rand(10, 2) * 6 + 1], dim=1)
    xyxy[0] = torch.tensor([0.0, 0.0, W, H])
    boxes = TF.convert_bounding_box_format(xyxy, old_format=tv_tensors.BoundingBoxFormat.XYXY, new_format=fmt)
    moved = I2VF.image_to_video_bounding_boxes(boxes, Genotype([(name, m)]), 4, format=fmt, canvas_size=(H, W),
                                               clamping_mode=clamping_mode)
    assert moved.shape == (4, 10, 4) and type(moved) is torch.Tensor
    for t, p in enumerate(I2VF.frame_powers(4)):
        expected = TF.affine_bounding_boxes(boxes, format=tv_tensors.BoundingBoxFormat[fmt], canvas_size=(H, W),
                                            clamping_mode=clamping_mode, **tv_params([(name, m)], p, H, W))
        assert_close(moved[t], expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("frames", ["centered", "forward"])
@pytest.mark.parametrize(("name", "m"), ONE_OP)
def test_keypoint_kernel_is_torchvision_affine_keypoints_per_frame(name, m, frames):
    points = torch.rand(3, 5, 2, dtype=torch.float64) * torch.tensor([W, H])
    moved = I2VF.image_to_video_keypoints(points, Genotype([(name, m)]), 4, canvas_size=(H, W), frames=frames)
    assert moved.shape == (4, 3, 5, 2) and moved.dtype == torch.float64
    for t, p in enumerate(I2VF.frame_powers(4, frames)):
        expected, canvas_size = TF.affine_keypoints(points, canvas_size=(H, W), **tv_params([(name, m)], p, H, W))
        assert canvas_size == (H, W)
        assert_close(moved[t], expected, atol=1e-4, rtol=0)


def test_image_to_video_dispatches_by_type_to_the_kernels():
    genotype = "rotate:10,translate_x:0.1,brightness:0.2"
    image = torch.rand(3, H, W)
    mask = torch.randint(0, 5, (H, W))
    boxes = tv_tensors.BoundingBoxes([[2.0, 3.0, 10.0, 12.0]], format="XYWH", canvas_size=(H, W))
    points = tv_tensors.KeyPoints([[4.0, 5.0], [10.0, 2.0]], canvas_size=(H, W))

    clip = I2VF.image_to_video(tv_tensors.Image(image), genotype, 3)
    assert isinstance(clip, tv_tensors.Video) and torch.equal(clip, I2VF.image_to_video_image(image, genotype, 3))
    assert type(I2VF.image_to_video(image, genotype, 3)) is torch.Tensor
    masks = I2VF.image_to_video(tv_tensors.Mask(mask), genotype, 3)
    assert isinstance(masks, tv_tensors.Mask) and torch.equal(masks, I2VF.image_to_video_mask(mask, genotype, 3))
    frames = I2VF.image_to_video(boxes, genotype, 3)
    kernel = I2VF.image_to_video_bounding_boxes(boxes.as_subclass(torch.Tensor), genotype, 3, format="XYWH",
                                                canvas_size=(H, W))
    assert len(frames) == 3 and all(isinstance(f, tv_tensors.BoundingBoxes) and f.format.name == "XYWH" for f in frames)
    assert torch.equal(torch.stack([f.as_subclass(torch.Tensor) for f in frames]), kernel)
    moved = I2VF.image_to_video(points, genotype, 3)
    assert isinstance(moved, tv_tensors.KeyPoints) and moved.canvas_size == (H, W)
    assert torch.equal(moved, I2VF.image_to_video_keypoints(points, genotype, 3, canvas_size=(H, W)))
    pil = I2VF.image_to_video(TF.to_pil_image(image), genotype, 3)
    assert isinstance(pil, tv_tensors.Video) and pil.dtype == torch.uint8


def test_the_transform_only_dispatches_to_the_public_kernels(monkeypatch):
    # Every kind of input reaches its public kernel (so a fix there is a fix of the transform), and the
    # transform hands the image and mask kernels the grid it keeps.
    calls = []
    for name in ["image_to_video_image", "image_to_video_mask", "image_to_video_bounding_boxes",
                 "image_to_video_keypoints"]:
        kernel = getattr(I2VF, name)
        monkeypatch.setattr(I2VF, name, lambda *a, _k=kernel, _n=name, **kw: calls.append((_n, kw)) or _k(*a, **kw))
    video = ImageToVideo("rotate:10", T=3)
    sample = {"image": tv_tensors.Image(torch.rand(3, H, W)), "mask": tv_tensors.Mask(torch.zeros(H, W, dtype=int)),
              "boxes": tv_tensors.BoundingBoxes([[1, 2, 5, 6]], format="XYXY", canvas_size=(H, W)),
              "keypoints": tv_tensors.KeyPoints([[1.0, 2.0]], canvas_size=(H, W))}
    video(sample)
    assert sorted(name for name, _ in calls) == ["image_to_video_bounding_boxes", "image_to_video_image",
                                                 "image_to_video_keypoints", "image_to_video_mask"]
    grids = [kw["grid"] for name, kw in calls if name in ("image_to_video_image", "image_to_video_mask")]
    assert all(grid is video._grids[torch.device("cpu")][1] for grid in grids)  # one float32 grid serves both


def test_video_grid_given_or_built_gives_the_same_clip():
    x = torch.rand(2, 3, H, W, dtype=torch.float64)
    grid = I2VF.video_grid("rotate:10,scale:1.1", 5, H, W, dtype=torch.float64)
    assert grid.shape == (5, H, W, 2)
    given = I2VF.image_to_video_image(x, "rotate:10,scale:1.1", 5, grid=grid)
    assert torch.equal(given, I2VF.image_to_video_image(x, "rotate:10,scale:1.1", 5))
    with pytest.raises(ValueError, match=r"grid must be the frames' sampling grid \(video_grid\) of shape "
                                         r"\(3, 20, 24, 2\), got \(5, 20, 24, 2\)"):
        I2VF.image_to_video_image(x, "rotate:10", 3, grid=grid)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: I2VF.image_to_video_keypoints(torch.rand(3, 3), "rotate:5", canvas_size=(H, W)), ValueError,
         r"keypoints of shape \(\*, 2\), got \(3, 3\)"),
        (lambda: I2VF.image_to_video_keypoints(torch.rand(3, 2), "rotate:5", canvas_size=(H,)), ValueError,
         r"canvas_size must be \(H, W\), got \(20,\)"),
        (lambda: I2VF.image_to_video_bounding_boxes(torch.rand(3, 4), "rotate:5", format="XYXYZ", canvas_size=(H, W)),
         ValueError, r"format must be one of \['XYXY', 'XYWH', 'CXCYWH'\], got 'XYXYZ'"),
        (lambda: I2VF.image_to_video_bounding_boxes(torch.rand(3, 5), "rotate:5", format="CXCYWHR",
                                                    canvas_size=(H, W)), ValueError, "got format CXCYWHR"),
        (lambda: I2VF.image_to_video_bounding_boxes(torch.rand(3, 2), "rotate:5", format="XYXY", canvas_size=(H, W)),
         ValueError, r"bounding boxes of shape \(\*, 4\), got \(3, 2\)"),
        (lambda: I2VF.image_to_video_mask(torch.zeros(2, 2, 3, H, W), "rotate:5"), ValueError,
         r"mask of shape \(H, W\), \(N, H, W\) or \(B, N, H, W\)"),
        (lambda: I2VF.image_to_video_mask([[0, 1]], "rotate:5"), TypeError, "tensor mask, got list"),
        (lambda: I2VF.image_to_video_image("x", "rotate:5"), TypeError, "tensor image, got str"),
        (lambda: I2VF.image_to_video(tv_tensors.Video(torch.rand(2, 3, 4, 4)), "rotate:5"), ValueError, "takes images"),
        (lambda: I2VF.image_to_video([1, 2], "rotate:5"), TypeError, "got list"),
    ],
)
def test_kernels_refuse_bad_input_clearly(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_kernels_are_listed_in_the_api_reference():
    import pathlib

    api = (pathlib.Path(__file__).parents[1] / "docs" / "api.md").read_text()
    for name in ["image_to_video_image", "image_to_video_mask", "image_to_video_bounding_boxes",
                 "image_to_video_keypoints", "video_grid"]:
        assert name in i2v.functional.__all__ and f"::: img2vid.functional.{name}" in api
