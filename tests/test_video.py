import math
import pickle
import sys

import pytest
import torch
from torch.testing import assert_close
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

import img2vid as i2v
from img2vid import Genotype, ImageToVideo

H, W = 20, 24
BILINEAR = InterpolationMode.BILINEAR


def tv_affine(x, *, angle=0.0, translate=(0.0, 0.0), scale=1.0, shear=(0.0, 0.0), interpolation=BILINEAR):
    return TF.affine(x, angle=angle, translate=list(translate), scale=scale, shear=list(shear),
                     interpolation=interpolation)


# Frame of power p of a one-op genotype, as one torchvision call: M^p of each op is the same op with
# an equivalent magnitude (translations and angles add, scales multiply, shear tangents add).
def one_op_frame(name, m, p, x):
    if name == "translate_x":
        return tv_affine(x, translate=(p * m * W, 0.0))
    if name == "translate_y":
        return tv_affine(x, translate=(0.0, p * m * H))
    if name == "rotate":
        return TF.rotate(x, p * m, interpolation=BILINEAR)
    if name == "scale":
        return tv_affine(x, scale=m**p)
    shear = math.degrees(math.atan(p * math.tan(math.radians(m))))
    return tv_affine(x, shear=(shear, 0.0) if name == "shear_x" else (0.0, shear))


ONE_OP = [("translate_x", 0.1), ("translate_y", -0.15), ("rotate", 17.0), ("scale", 1.2), ("shear_x", 12.0),
          ("shear_y", -9.0)]


@pytest.mark.parametrize("frames", ["centered", "forward"])
@pytest.mark.parametrize(("name", "m"), ONE_OP)
def test_one_op_frames_match_torchvision(name, m, frames, dtype):
    x = torch.rand(2, 3, H, W, dtype=dtype)
    video = ImageToVideo(Genotype([(name, m)]), T=4, frames=frames)
    clip = video(x)
    assert clip.shape == (2, 4, 3, H, W) and clip.dtype == dtype
    # torchvision builds its grid partly in float32, so 1e-5 is the agreement to expect in float64 too. In
    # float32 our 3x3 inverse and powers round as well, by an amount that depends on torch's kernels: the
    # power-4 rotate:17 frame lies 1.3e-5 from torchvision's on torch 2.9 (5.5e-6 on torch 2.14.1).
    tol = 1e-5 if dtype == torch.float64 else 2e-5
    for t, p in enumerate(video.powers):
        assert_close(clip[:, t], one_op_frame(name, m, p, x), atol=tol, rtol=0)


def test_chain_is_resampled_once_and_composes_in_order():
    # torchvision's affine is M = T C R S SHy SHx C^-1: one call with every parameter equals our chain
    # shear_x -> shear_y -> scale -> rotate -> translate resampled once (two resamplings would blur).
    x = torch.rand(2, 3, H, W, dtype=torch.float64)
    chain = "shear_x:7,shear_y:-4,scale:1.1,rotate:12,translate_x:0.05,translate_y:0.1"
    clip = ImageToVideo(chain, T=3)(x)
    expected = tv_affine(x, angle=-12.0, translate=(0.05 * W, 0.1 * H), scale=1.1, shear=(7.0, -4.0))
    assert_close(clip[:, 2], expected, atol=1e-6, rtol=0)
    twice = tv_affine(tv_affine(x, shear=(7.0, -4.0), scale=1.1),
                      angle=-12.0, translate=(0.05 * W, 0.1 * H))
    assert (clip[:, 2] - twice).abs().max() > 1e-3  # the oracle can tell one warp from two


def test_powers():
    assert ImageToVideo("identity", T=5).powers == [-2, -1, 0, 1, 2]
    assert ImageToVideo("identity", T=4).powers == [-2, -1, 0, 1]
    assert ImageToVideo("identity", T=1).powers == [0]
    assert ImageToVideo("identity", T=3, frames="forward").powers == [1, 2, 3]


def test_centered_middle_frame_is_the_input_and_forward_is_eq7():
    x = torch.rand(2, 3, H, W)
    assert_close(ImageToVideo("rotate:20,scale:1.3", T=5)(x)[:, 2], x, atol=1e-5, rtol=0)
    # Eq. 7: V(t, x, y) = I(x, y - t dy) with dy = 2 px: frame t is the image moved down by 2t px.
    clip = ImageToVideo(Genotype([("translate_y", 2 / H)]), T=3, frames="forward")(x)
    for t in range(1, 4):
        assert_close(clip[:, t - 1, :, 2 * t :], x[:, :, : H - 2 * t], atol=1e-5, rtol=0)
        assert clip[:, t - 1, :, : 2 * t].abs().max() < 1e-6


def test_matrices_are_powers_in_pixel_coordinates():
    video = ImageToVideo("translate_x:0.25,rotate:90", T=5)
    matrices = video.matrices(8, 8, dtype=torch.float64)
    assert matrices.shape == (5, 3, 3)
    m = matrices[3]
    for t, p in enumerate(video.powers):
        assert_close(matrices[t], torch.linalg.matrix_power(m, p), atol=1e-12, rtol=0)
    # translate first (+2 px right), then rotate 90° ccw about (3.5, 3.5): (0, 0) -> (2, 0) -> (0, 5).
    assert_close(m @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
                 torch.tensor([0.0, 5.0, 1.0], dtype=torch.float64), atol=1e-12, rtol=0)


def test_unbatched_image():
    x = torch.rand(3, H, W)
    video = ImageToVideo("translate_x:0.1", T=3)
    assert_close(video(x), video(x[None])[0])
    assert video(x).shape == (3, 3, H, W)


def test_uint8_in_uint8_out_matches_torchvision():
    x = torch.randint(0, 256, (2, 3, H, W), dtype=torch.uint8)
    clip = ImageToVideo("rotate:13", T=3)(x)
    assert clip.dtype == torch.uint8
    expected = TF.rotate(x, 13.0, interpolation=BILINEAR)
    assert (clip[:, 2].int() - expected.int()).abs().max() <= 1


UINT8_PIXEL_OPS = {
    "brightness:0.3": lambda x: TF.adjust_brightness(x, 1.3),
    "color:-0.6": lambda x: TF.adjust_saturation(x, 0.4),
    "sharpness:0.7": lambda x: TF.adjust_sharpness(x, 1.7),
    "solarize:0.4": lambda x: TF.solarize(x, 0.4 * 255),  # AutoAugment's threshold: m times the maximum
    "posterize:3": lambda x: TF.posterize(x, 3),
    "invert": TF.invert,
    "auto_contrast": TF.autocontrast,
    "equalize": TF.equalize,
}


@pytest.mark.parametrize("op", sorted(UINT8_PIXEL_OPS))
def test_uint8_clips_apply_torchvision_uint8_pixel_kernels_at_every_power(op):
    # A frame of power p applies the op |p| times, as torchvision's own uint8 kernel would, bit for bit.
    x = torch.randint(0, 256, (2, 3, H, W), dtype=torch.uint8)
    x[:, :, 0, 0], x[:, :, 0, 1] = 0, 255
    clip = ImageToVideo(op, T=7)(x)  # powers -3 ... 3
    moved = ImageToVideo(f"{op},translate_x:{3 / W}", T=7)(x)  # the same, then 3 px right per power
    for t, p in enumerate(range(-3, 4)):
        expected = x
        for _ in range(abs(p)):
            expected = UINT8_PIXEL_OPS[op](expected)
        assert torch.equal(clip[:, t], expected), f"power {p}"
        shifted = TF.affine(expected, angle=0.0, translate=[3.0 * p, 0.0], scale=1.0, shear=[0.0, 0.0])
        assert torch.equal(moved[:, t], shifted), f"power {p}"  # whole pixels: the warp adds nothing


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_dtypes_are_kept(dtype):
    x = torch.rand(2, 3, H, W)
    clip = ImageToVideo("rotate:13", T=3)(x.to(dtype))
    assert clip.dtype == dtype
    assert_close(clip.float(), ImageToVideo("rotate:13", T=3)(x), atol=1e-2, rtol=0)


def test_tv_tensors_image_becomes_video_and_mask_stays_labels():
    image = tv_tensors.Image(torch.rand(3, H, W))
    mask = tv_tensors.Mask(torch.randint(0, 21, (H, W), dtype=torch.int64)[None])
    video = ImageToVideo("rotate:33,scale:1.2,brightness:0.2", T=3)
    clip, mask_clip = video(image, mask)
    assert isinstance(clip, tv_tensors.Video) and clip.shape == (3, 3, H, W)
    assert isinstance(mask_clip, tv_tensors.Mask) and mask_clip.dtype == torch.int64
    assert set(mask_clip.unique().tolist()) <= set(mask.unique().tolist()) | {0}
    # masks are warped like torchvision warps masks: nearest, no pixel ops
    expected = TF.affine(mask, angle=-33.0, translate=[0.0, 0.0], scale=1.2, shear=[0.0, 0.0],
                         interpolation=InterpolationMode.NEAREST)
    mismatch = (mask_clip[2] != expected).float().mean()
    assert mismatch < 0.01  # only ties at exact half-pixel positions may round differently
    assert torch.equal(mask_clip[1], mask)


def test_2d_masks_as_torchvision_datasets_hand_them_out():
    # torchvision's segmentation datasets give (H, W) masks; its own affine takes them as they are.
    mask = tv_tensors.Mask(torch.randint(0, 21, (H, W), dtype=torch.uint8))
    video = ImageToVideo("rotate:33,scale:1.2,brightness:0.2", T=3)
    clip = video(mask)
    assert isinstance(clip, tv_tensors.Mask) and clip.shape == (3, H, W) and clip.dtype == torch.uint8
    assert torch.equal(clip[1], mask)
    for t, p in enumerate(video.powers):
        expected = TF.affine(mask, angle=-33.0 * p, translate=[0.0, 0.0], scale=1.2**p, shear=[0.0, 0.0],
                             interpolation=InterpolationMode.NEAREST)
        assert expected.shape == (H, W)
        assert (clip[t] != expected).float().mean() < 0.01  # only exact half-pixel ties may differ
    shifted = ImageToVideo(Genotype([("translate_x", 3 / W)]), T=3)(mask)
    assert torch.equal(shifted[2, :, 3:], mask[:, :-3]) and (shifted[2, :, :3] == 0).all()
    # with an image, as a v2 pipeline passes them
    image, same = video(tv_tensors.Image(torch.rand(3, H, W)), mask)
    assert image.shape == (3, 3, H, W) and torch.equal(same, clip)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 2, 3, H, W), r"expected a mask of shape \(H, W\), \(N, H, W\) or \(B, N, H, W\), got shape"),
        ((1, W), r"expected a mask at least 2 x 2 pixels"),
        ((2, 1, W), r"expected a mask at least 2 x 2 pixels"),
        ((0, W), r"expected a non-empty mask"),
    ],
)
def test_bad_masks_are_called_masks(shape, message):
    with pytest.raises(ValueError, match=message) as error:
        ImageToVideo("rotate:5", T=3)(tv_tensors.Mask(torch.zeros(shape, dtype=torch.int64)))
    assert "image" not in str(error.value)


def test_masks_are_not_taken_for_channels_last_images():
    # 6 instance masks of 8 x 3 pixels: a leading axis of labels, not colour channels.
    mask = tv_tensors.Mask(torch.randint(0, 2, (6, 8, 3), dtype=torch.bool))
    assert ImageToVideo("identity", T=3)(mask).shape == (3, 6, 8, 3)


def test_masks_keep_int64_labels_past_float64_precision():
    # instance ids packed into int64 (say class << 32 | instance) are past 2^53: they must come back exactly
    mask = tv_tensors.Mask(torch.randint(2**60, 2**62, (H, W), dtype=torch.int64))
    clip = ImageToVideo("rotate:30,scale:1.1", T=3)(mask)
    assert set(clip.unique().tolist()) <= set(mask.unique().tolist()) | {0}
    assert torch.equal(clip[1], mask)


def test_small_channels_first_images_are_not_taken_for_channels_last():
    # 8 channels of 4 x 4 pixels, or 5 of 3 x 3, read as written: as channels last they would be pictures
    # of under 5 x 5 pixels, and nothing says which reading is meant.
    for shape in [(8, 4, 4), (5, 3, 3), (2, 6, 4, 4), (6, 2, 3)]:
        x = torch.rand(shape)
        clip = ImageToVideo("rotate:5", T=3)(x)
        assert clip.shape == (*shape[:-3], 3, *shape[-3:])
        assert_close(clip[..., 1, :, :, :], x)


def test_integer_translation_of_masks_is_exact():
    mask = tv_tensors.Mask(torch.randint(0, 5, (2, 1, H, W), dtype=torch.uint8))
    clip = ImageToVideo(Genotype([("translate_x", 3 / W)]), T=3)(mask)
    assert torch.equal(clip[:, 2, ..., 3:], mask[..., :-3])
    assert (clip[:, 2, ..., :3] == 0).all()


def test_composes_in_torchvision_pipelines():
    pipeline = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), ImageToVideo("rotate:10", T=3),
                           v2.Normalize(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])])
    image = torch.randint(0, 256, (3, H, W), dtype=torch.uint8)
    clip = pipeline(tv_tensors.Image(image))
    assert isinstance(clip, tv_tensors.Video) and clip.shape == (3, 3, H, W)
    assert_close(clip[1], (image.float() / 255 - 0.5) / 0.25, atol=1e-4, rtol=0)


def test_pil_images_are_accepted():
    pil = TF.to_pil_image(torch.randint(0, 256, (3, H, W), dtype=torch.uint8))
    clip = ImageToVideo("rotate:10", T=3)(pil)
    assert isinstance(clip, tv_tensors.Video) and clip.dtype == torch.uint8 and clip.shape == (3, 3, H, W)


def test_cutout_clips_are_reproducible_with_a_generator():
    x = torch.rand(4, 3, H, W)
    state = torch.get_rng_state()
    clips = [ImageToVideo("cutout:0.3,translate_x:0.1", T=3, generator=torch.Generator().manual_seed(seed))(x)
             for seed in (1, 1, 2)]
    functional = i2v.functional.image_to_video(x, "cutout:0.3,translate_x:0.1", 3,
                                               generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(clips[0], clips[1]) and torch.equal(clips[0], functional)
    assert not torch.equal(clips[0], clips[2])
    seeded = ImageToVideo("cutout:0.3", T=3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(pickle.loads(pickle.dumps(seeded))(x), seeded(x))  # the copy carries the generator's state
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator or None, got int"):
        ImageToVideo("cutout:0.3", generator=3)


def test_pickles_and_runs_in_dataloader_workers():
    video = ImageToVideo("translate_x:0.1,brightness:0.1", T=3, frames="forward")
    clone = pickle.loads(pickle.dumps(video))
    x = torch.rand(3, H, W)
    assert_close(clone(x), video(x))
    dataset = [(torch.rand(3, H, W), i) for i in range(4)]

    class Clips(torch.utils.data.Dataset):
        def __len__(self):
            return len(dataset)

        def __getitem__(self, i):
            return video(dataset[i][0]), dataset[i][1]

    loader = torch.utils.data.DataLoader(Clips(), batch_size=2, num_workers=1)
    clips, labels = next(iter(loader))
    assert clips.shape == (2, 3, 3, H, W) and labels.tolist() == [0, 1]


def test_runs_on_the_input_device(device):
    x = torch.rand(2, 3, H, W, device=device)
    clip = ImageToVideo("rotate:10,color:0.2", T=3)(x)
    assert clip.device.type == device.type
    if device.type != "cpu":
        assert_close(clip.cpu(), ImageToVideo("rotate:10,color:0.2", T=3)(x.cpu()), atol=1e-5, rtol=0)


def test_gradcheck_input():
    x = torch.rand(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    video = ImageToVideo("rotate:13,translate_x:0.1", T=3)
    assert torch.autograd.gradcheck(video, (x,))


def test_gradcheck_tensor_magnitudes():
    x = torch.rand(1, 2, 6, 7, dtype=torch.float64)

    def clip(angle, shift, factor):
        return ImageToVideo(Genotype([("rotate", angle), ("translate_y", shift), ("brightness", factor)]), T=3)(x)

    magnitudes = tuple(torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (13.0, 0.07, 0.1))
    assert torch.autograd.gradcheck(clip, magnitudes)


def test_pixel_ops_repeat_abs_power_times_before_the_warp():
    x = torch.rand(2, 3, H, W, dtype=torch.float64) * 0.5
    clip = ImageToVideo("brightness:0.2,translate_x:0.125", T=5)(x)  # 3 px per power
    for t, p in enumerate([-2, -1, 0, 1, 2]):
        bright = x
        for _ in range(abs(p)):
            bright = TF.adjust_brightness(bright, 1.2)
        assert_close(clip[:, t], tv_affine(bright, translate=(3.0 * p, 0.0)), atol=1e-6, rtol=0)


def test_inverse_undoes_the_motion():
    x = torch.rand(2, 3, H, W, dtype=torch.float64)
    video = ImageToVideo(Genotype([("translate_x", 2 / W), ("translate_y", -1 / H)]), T=5)
    back = video.inverse(video(x))
    assert back.shape == (2, 5, 3, H, W)
    # integer shifts: every pixel that stayed in view comes back exactly
    for t, p in enumerate(video.powers):
        dx, dy = 2 * abs(p), abs(p)
        assert_close(back[:, t, :, dy : H - dy, dx : W - dx], x[:, :, dy : H - dy, dx : W - dx], atol=1e-9, rtol=0)


def test_inverse_matches_torchvision_with_negated_motion():
    y = torch.rand(2, 4, 5, H, W, dtype=torch.float64)
    video = ImageToVideo("rotate:15", T=4)
    back = video.inverse(y)
    for t, p in enumerate(video.powers):
        assert_close(back[:, t], TF.rotate(y[:, t], -15.0 * p, interpolation=BILINEAR), atol=1e-6, rtol=0)


# Genotypes whose every power is one torchvision call: translations add, and a scale and a rotation
# about the same centre commute, so M^p is affine(angle=-p a, translate=p t, scale=s^p).
FUNCTIONAL_CASES = [
    ("scale:1.1", lambda x, p: tv_affine(x, scale=1.1**p)),
    ("rotate:-21,scale:0.9", lambda x, p: tv_affine(x, angle=21.0 * p, scale=0.9**p)),
    ("translate_x:0.1,translate_y:-0.05", lambda x, p: tv_affine(x, translate=(0.1 * W * p, -0.05 * H * p))),
]


@pytest.mark.parametrize(("genotype", "oracle"), FUNCTIONAL_CASES, ids=[g for g, _ in FUNCTIONAL_CASES])
@pytest.mark.parametrize("frames", ["centered", "forward"])
def test_functional_form_matches_torchvision_and_the_module(genotype, oracle, frames):
    # The functional form against an oracle of its own: torchvision, one call per frame.
    x = torch.rand(2, 3, H, W, dtype=torch.float64)
    clip = i2v.functional.image_to_video(x, genotype, 4, frames=frames)
    assert clip.shape == (2, 4, 3, H, W)
    powers = [-2, -1, 0, 1] if frames == "centered" else [1, 2, 3, 4]
    for t, p in enumerate(powers):
        assert_close(clip[:, t], oracle(x, p), atol=1e-5, rtol=0)
    assert_close(ImageToVideo(genotype, T=4, frames=frames)(x), clip, atol=0, rtol=0)


def test_padding_modes_fill_with_grid_sample_semantics():
    # Whole-pixel shifts, so every value is a hand-known input pixel. Content moves right by 3 px and
    # up by 2 px: the 3 left columns and 2 bottom rows come from outside the image.
    x = torch.rand(1, 2, H, W, dtype=torch.float64)
    genotype = Genotype([("translate_x", 3 / W), ("translate_y", -2 / H)])
    inside = x[..., 2:, : W - 3]
    for padding, column, row in [
        ("zeros", lambda j: torch.zeros_like(x[..., 0]), lambda i: torch.zeros_like(x[..., 0, :])),
        # border: the nearest edge pixel
        ("border", lambda j: x[..., 0], lambda i: x[..., H - 1, :]),
        # reflection about the edge pixels' centres (align_corners=True): source -k reads pixel k
        ("reflection", lambda j: x[..., 3 - j], lambda i: x[..., 2 * (H - 1) - (i + 2), :]),
    ]:
        frame = ImageToVideo(genotype, T=3, padding_mode=padding)(x)[:, 2]
        assert_close(frame[..., : H - 2, 3:], inside, atol=1e-9, rtol=0)
        for j in range(3):  # columns from beyond the left edge (rows whose source is inside)
            assert_close(frame[..., : H - 2, j], column(j)[..., 2:], atol=1e-9, rtol=0)
        for i in range(H - 2, H):  # rows from beyond the bottom edge (columns whose source is inside)
            assert_close(frame[..., i, 3:], row(i)[..., : W - 3], atol=1e-9, rtol=0)


def test_nearest_interpolation_option():
    x = torch.rand(1, 3, H, W, dtype=torch.float64)
    nearest = ImageToVideo("rotate:30", T=3, interpolation="nearest")(x)
    assert set(nearest[:, 2].flatten().tolist()) <= set(x.flatten().tolist()) | {0.0}
    same = ImageToVideo("rotate:30", T=3, interpolation=InterpolationMode.NEAREST)(x)
    assert_close(nearest, same)


def test_gradcheck_inverse_and_video_to_image():
    y = torch.rand(1, 3, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    video = ImageToVideo("rotate:13,translate_x:0.1,scale:1.1", T=3)
    assert torch.autograd.gradcheck(video.inverse, (y,))
    for padding in ["border", "reflection"]:
        assert torch.autograd.gradcheck(
            lambda a, p=padding: i2v.functional.video_to_image(a, "shear_y:9,translate_y:-0.1", padding_mode=p), (y,)
        )

    def undo(a, angle, shift):
        return i2v.functional.video_to_image(a, Genotype([("rotate", angle), ("translate_x", shift)]), frames="forward")

    magnitudes = tuple(torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (13.0, 0.07))
    assert torch.autograd.gradcheck(undo, (y, *magnitudes))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: ImageToVideo("rotate:5", T=0), ValueError, "T >= 1, got 0"),
        (lambda: ImageToVideo("rotate:5", T=2.5), ValueError, "T >= 1, got 2.5"),
        (lambda: ImageToVideo("rotate:5", frames="backward"), ValueError, "frames must be one of"),
        (lambda: ImageToVideo("rotate:5", interpolation="bicubic"), ValueError, "interpolation must be one of"),
        (lambda: ImageToVideo("rotate:5", padding_mode="wrap"), ValueError, "padding_mode must be one of"),
        (lambda: ImageToVideo("spin:5"), ValueError, "unknown op 'spin'"),
        (lambda: ImageToVideo("")(torch.rand(3, 4, 4)), ValueError, "empty genotype"),
        (lambda: ImageToVideo("rotate:5")(torch.rand(4, 4)), ValueError, r"\(C, H, W\) or \(B, C, H, W\), got shape"),
        (lambda: ImageToVideo("rotate:5")(torch.rand(1, 2, 3, 4, 4)), ValueError, "got shape"),
        (lambda: ImageToVideo("rotate:5")(torch.zeros(1, 3, 0, 4)), ValueError, "non-empty"),
        (lambda: ImageToVideo("rotate:5")(torch.zeros(1, 3, 1, 8)), ValueError, r"at least 2 x 2 pixels"),
        (lambda: ImageToVideo("rotate:5")(torch.zeros(3, 8, 1)), ValueError, r"at least 2 x 2 pixels"),
        (lambda: ImageToVideo("rotate:5").inverse(torch.zeros(1, 5, 2, 1, 8)), ValueError, r"at least 2 x 2"),
        (lambda: i2v.functional.warp(torch.zeros(1, 3, 1, 8), torch.eye(3)), ValueError, r"at least 2 x 2"),
        (lambda: ImageToVideo("rotate:5")(torch.rand(32, 32, 3)), ValueError, "looks channels-last"),
        (lambda: ImageToVideo("rotate:5")(torch.rand(2, 32, 32, 3)), ValueError, "looks channels-last"),
        (lambda: ImageToVideo("rotate:5")(torch.rand(32, 32, 1)), ValueError, "looks channels-last"),
        (lambda: ImageToVideo("rotate:5")(torch.zeros(1, 3, 4, 4, dtype=torch.int16)), TypeError, "int16"),
        (lambda: ImageToVideo("rotate:5")(torch.zeros(1, 3, 4, 4, dtype=torch.int64)), TypeError, "tv_tensors.Mask"),
        (lambda: ImageToVideo("rotate:5")(tv_tensors.Video(torch.rand(2, 3, 4, 4))), ValueError, "takes images"),
        (lambda: ImageToVideo("color:0.2")(torch.rand(1, 4, 5, 5)), ValueError, "1 or 3 channels, got 4"),
        (lambda: ImageToVideo("rotate:5", T=3).inverse(torch.rand(1, 2, 1, 4, 4)), ValueError, "expected 3 frames"),
        (lambda: ImageToVideo("rotate:5").inverse(torch.rand(2, 1, 4, 4)), ValueError, r"\(B, T, K, H, W\)"),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_repr():
    assert repr(ImageToVideo("rotate:5", T=3)) == "ImageToVideo(genotype='rotate:5.0', T=3, frames='centered')"


def test_functional_warp_matches_torchvision_per_image():
    x = torch.rand(3, 2, H, W, dtype=torch.float64)
    angles = [10.0, -25.0, 40.0]
    matrices = torch.stack([i2v.OPS["rotate"].matrix(torch.tensor(a, dtype=torch.float64), H, W) for a in angles])
    out = i2v.functional.warp(x, matrices)
    for i, angle in enumerate(angles):
        assert_close(out[i], TF.rotate(x[i], angle, interpolation=BILINEAR), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"\(N, 3, 3\)"):
        i2v.functional.warp(x, torch.eye(2))
    with pytest.raises(ValueError, match="one matrix per image: 3 images, 2 matrices"):
        i2v.functional.warp(x, matrices[:2])


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_functional_warp_is_the_clips_sampling_path(padding_mode, monkeypatch):
    # One sampling path: warp goes through the same grid_sample call as clips, inverse and the stem ...
    sampled = []
    sample = i2v.functional._sample
    monkeypatch.setattr(i2v.functional, "_sample", lambda *args: sampled.append(args) or sample(*args))
    x = torch.rand(2, 3, H, W)
    video = ImageToVideo("rotate:17,scale:1.2,translate_x:0.1", T=5, padding_mode=padding_mode)
    clip, matrices = video(x), video.matrices(H, W)
    for t in range(5):
        assert_close(i2v.functional.warp(x, matrices[t], padding_mode=padding_mode), clip[:, t], atol=2e-5, rtol=0)
    assert len(sampled) == 1 + 5 and all(args[3] == padding_mode for args in sampled)
    # ... and where M^-1 is exact (whole-pixel shifts), it gives the clip's frames to the last bit.
    shift = ImageToVideo(Genotype([("translate_x", 3 / W), ("translate_y", -2 / H)]), T=5, padding_mode=padding_mode)
    clip, matrices = shift(x), shift.matrices(H, W)
    for t in range(5):
        assert torch.equal(i2v.functional.warp(x, matrices[t], padding_mode=padding_mode), clip[:, t])


def test_functional_warp_gradcheck():
    x = torch.rand(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    angle = torch.tensor([9.0, -14.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, m: i2v.functional.warp(a, i2v.OPS["rotate"].matrix(m, 5, 6)), (x, angle))


def test_kept_grid_is_remade_when_size_dtype_or_genotype_changes():
    video = ImageToVideo("rotate:10,translate_x:0.1", T=3)
    for shape, dtype in [((2, 3, H, W), torch.float32), ((2, 3, H, W), torch.float32), ((1, 3, W, H), torch.float32),
                         ((2, 1, H, W), torch.float64), ((2, 3, H, W), torch.float32)]:
        x = torch.rand(shape, dtype=dtype)
        assert_close(video(x), i2v.functional.image_to_video(x, video.genotype, 3), atol=0, rtol=0)
    kept = video._grids[torch.device("cpu")][1]
    video(torch.rand(2, 3, H, W))
    assert video._grids[torch.device("cpu")][1] is kept  # the same size again reuses the grid
    video.genotype = Genotype.parse("scale:1.3")  # a changed motion is never served a stale grid
    x = torch.rand(2, 3, H, W)
    assert_close(video(x), i2v.functional.image_to_video(x, "scale:1.3", 3), atol=0, rtol=0)
    video.T = 5
    assert video(x).shape[1] == 5


def test_kept_grid_is_the_callers_own_under_threads():
    # Two threads hammer one transform with two image sizes: each call must get a clip made with the
    # grid for its own size, never the grid another call has just kept. A tracer hands the other
    # thread the interpreter before every line of video.py, so every interleaving gets its chance.
    import threading
    import time

    def yield_on_each_line(frame, event, arg):
        if event == "line":
            time.sleep(1e-6)
        return yield_on_each_line

    def tracer(frame, event, arg):
        return yield_on_each_line if frame.f_code.co_filename == video_file else None

    video_file = sys.modules[ImageToVideo.__module__].__file__
    video = ImageToVideo("rotate:10,translate_x:0.1", T=3)
    images = [torch.rand(1, 1, 6, 8), torch.rand(1, 1, 8, 6)]
    expected = [i2v.functional.image_to_video(x, video.genotype, 3) for x in images]
    failures: list[str] = []

    def hammer(i):
        for _ in range(100):
            try:
                clip = video(images[i])
                if clip.shape != expected[i].shape or not torch.equal(clip, expected[i]):
                    failures.append(f"thread {i}: wrong clip of shape {tuple(clip.shape)}")
            except RuntimeError as error:  # a grid of the other size does not even fit
                failures.append(f"thread {i}: {error}")

    threading.settrace(tracer)
    try:
        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        threading.settrace(None)
    assert not failures, failures[:3]


def test_kept_grid_is_kept_per_device_and_shared_by_dataparallel_replicas():
    # nn.DataParallel runs shallow replicas of one transform on several devices at once; each device
    # must keep (and be served) its own grid. The meta device stands in for a second GPU here.
    video = ImageToVideo("rotate:10", T=3)
    x = torch.rand(2, 3, H, W)
    video(x)
    cpu_grid = video._grids[torch.device("cpu")][1]
    replica = video._replicate_for_data_parallel()
    meta_clip = replica(x.to("meta"))
    assert meta_clip.device.type == "meta" and meta_clip.shape == (2, 3, 3, H, W)
    assert set(video._grids) == {torch.device("cpu"), torch.device("meta")}  # filled through the replica
    assert video._grids[torch.device("meta")][1].device.type == "meta"
    assert_close(video(x), i2v.functional.image_to_video(x, "rotate:10", 3), atol=0, rtol=0)
    assert video._grids[torch.device("cpu")][1] is cpu_grid  # the other device did not evict it


def test_kept_grid_from_inference_mode_serves_autograd_and_pickles_empty():
    video = ImageToVideo("rotate:10", T=3)
    with torch.inference_mode():
        video(torch.rand(1, 3, H, W))
    x = torch.rand(1, 3, H, W, requires_grad=True)
    video(x).sum().backward()  # an inference-mode grid would refuse to be saved for backward
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert pickle.loads(pickle.dumps(video))._grids == {}


def test_tensor_magnitudes_are_never_kept():
    angle = torch.tensor(10.0, requires_grad=True)
    video = ImageToVideo(Genotype([("rotate", angle)]), T=3)
    video(torch.rand(1, 3, H, W)).sum().backward()
    assert video._grids == {} and angle.grad is not None
    with torch.no_grad():
        angle += 20.0  # the same tensor, a new value: the clip follows it
    x = torch.rand(1, 3, H, W)
    assert_close(video(x), i2v.functional.image_to_video(x, "rotate:30", 3))


# --------------------------------------------------------------------------------------------------
# Boxes and keypoints: moved per frame as torchvision's affine moves them (the oracle is torchvision)
# --------------------------------------------------------------------------------------------------

FORMATS = ["XYXY", "XYWH", "CXCYWH"]


def some_boxes(fmt, n=12):
    # Boxes anywhere on the canvas, some touching its edges, so that the moved boxes get clamped.
    xy = torch.rand(n, 2) * torch.tensor([W - 4.0, H - 4.0])
    size = torch.rand(n, 2) * 6 + 1
    xyxy = torch.cat([xy, (xy + size).minimum(torch.tensor([W, H]))], dim=1)
    xyxy[0] = torch.tensor([0.0, 0.0, W, H])
    xyxy[1] = torch.tensor([W - 3.0, 2.0, W, 6.0])
    boxes = tv_tensors.BoundingBoxes(xyxy, format="XYXY", canvas_size=(H, W))
    return TF.convert_bounding_box_format(boxes, new_format=fmt)


def some_keypoints():
    return tv_tensors.KeyPoints(torch.rand(3, 5, 2) * torch.tensor([W, H]), canvas_size=(H, W))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("name", "m"), ONE_OP)
def test_boxes_move_per_frame_as_torchvision_moves_them(name, m, fmt):
    boxes = some_boxes(fmt)
    video = ImageToVideo(Genotype([(name, m)]), T=4)
    frames = video(boxes)
    assert isinstance(frames, list) and len(frames) == 4
    for t, p in enumerate(video.powers):
        expected = one_op_frame(name, m, p, boxes)  # torchvision: enclosing box of the corners, clamped
        assert isinstance(frames[t], tv_tensors.BoundingBoxes)
        assert frames[t].format == boxes.format and frames[t].canvas_size == (H, W)
        assert_close(frames[t].as_subclass(torch.Tensor), expected.as_subclass(torch.Tensor), atol=1e-4, rtol=0)
    moved = frames[0].as_subclass(torch.Tensor)
    assert not torch.allclose(moved, boxes.as_subclass(torch.Tensor), atol=1e-2)  # they did move


@pytest.mark.parametrize(("name", "m"), ONE_OP)
def test_keypoints_move_per_frame_as_torchvision_moves_them(name, m):
    keypoints = some_keypoints()
    video = ImageToVideo(Genotype([(name, m)]), T=4, frames="forward")
    moved = video(keypoints)
    assert isinstance(moved, tv_tensors.KeyPoints) and moved.shape == (4, 3, 5, 2)
    assert moved.canvas_size == (H, W)
    for t, p in enumerate(video.powers):
        expected = one_op_frame(name, m, p, keypoints)
        assert_close(moved[t].as_subclass(torch.Tensor), expected.as_subclass(torch.Tensor), atol=1e-4, rtol=0)


CHAIN = "shear_x:7,shear_y:-4,scale:1.1,rotate:12,translate_x:0.05,translate_y:0.1,brightness:0.3"


def chain_once(x):
    # The chain's motion, M, as one torchvision call (see test_chain_is_resampled_once...).
    return tv_affine(x, angle=-12.0, translate=(0.05 * W, 0.1 * H), scale=1.1, shear=(7.0, -4.0))


def test_composed_motion_moves_keypoints_as_torchvision_composes_it():
    keypoints = some_keypoints()
    video = ImageToVideo(CHAIN, T=5)  # powers -2 ... 2
    moved = video(keypoints).as_subclass(torch.Tensor)
    plain = keypoints.as_subclass(torch.Tensor)
    assert_close(moved[2], plain)  # power 0, and the pixel op moves nothing
    assert_close(moved[3], chain_once(keypoints).as_subclass(torch.Tensor), atol=1e-4, rtol=0)
    assert_close(moved[4], chain_once(chain_once(keypoints)).as_subclass(torch.Tensor), atol=1e-4, rtol=0)
    # negative powers are the inverse motion: torchvision's forward call brings them back
    back = tv_tensors.wrap(moved[1], like=keypoints)
    assert_close(chain_once(back).as_subclass(torch.Tensor), plain, atol=1e-4, rtol=0)
    twice_back = tv_tensors.wrap(moved[0], like=keypoints)
    assert_close(chain_once(chain_once(twice_back)).as_subclass(torch.Tensor), plain, atol=1e-4, rtol=0)


def test_composed_motion_moves_boxes_by_their_corners():
    boxes = some_boxes("XYXY")
    video = ImageToVideo(CHAIN, T=5)
    frames = video(boxes)
    assert_close(frames[3].as_subclass(torch.Tensor), chain_once(boxes).as_subclass(torch.Tensor), atol=1e-4, rtol=0)
    # Power 2 is no single torchvision call, and boxes moved twice would enclose an enclosing box: the
    # oracle moves the four corners twice as torchvision keypoints, then encloses and clamps them.
    xyxy = boxes.as_subclass(torch.Tensor)
    corners = tv_tensors.KeyPoints(xyxy[:, [[0, 1], [2, 1], [2, 3], [0, 3]]], canvas_size=(H, W))
    twice = chain_once(chain_once(corners)).as_subclass(torch.Tensor)
    expected = torch.cat([twice.amin(1), twice.amax(1)], dim=1)
    expected[:, 0::2] = expected[:, 0::2].clamp(0, W)
    expected[:, 1::2] = expected[:, 1::2].clamp(0, H)
    assert_close(frames[4].as_subclass(torch.Tensor), expected, atol=1e-4, rtol=0)
    assert (expected[:, 0::2] == W).any() or (expected[:, :2] == 0).any()  # the clamp was exercised


def test_boxes_keep_dtype_and_clamping_mode_and_pipelines_carry_everything():
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[2, 3, 10, 12], [20, 0, 24, 5]]), format="XYXY",
                                     canvas_size=(H, W), clamping_mode=None)
    frames = ImageToVideo(Genotype([("translate_x", 3 / W)]), T=3)(boxes)
    assert [f.dtype for f in frames] == [torch.int64] * 3 and frames[0].clamping_mode is None
    assert frames[2].tolist() == [[5, 3, 13, 12], [23, 0, 27, 5]]  # not clamped: clamping_mode=None
    assert frames[0].tolist() == [[-1, 3, 7, 12], [17, 0, 21, 5]]
    # one sample of a detection pipeline: image, boxes, keypoints and a mask together
    sample = {"image": tv_tensors.Image(torch.rand(3, H, W)), "boxes": some_boxes("XYWH"),
              "keypoints": some_keypoints(), "mask": tv_tensors.Mask(torch.randint(0, 3, (H, W))), "label": 7}
    out = v2.Compose([ImageToVideo("rotate:10", T=3)])(sample)
    assert isinstance(out["image"], tv_tensors.Video) and out["image"].shape == (3, 3, H, W)
    assert len(out["boxes"]) == 3 and out["keypoints"].shape == (3, 3, 5, 2) and out["mask"].shape == (3, H, W)
    assert out["label"] == 7


def test_rotated_boxes_are_refused_clearly():
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[5.0, 5.0, 4.0, 3.0, 30.0]]), format="CXCYWHR", canvas_size=(H, W))
    with pytest.raises(ValueError, match=r"axis-aligned boxes \(XYXY, XYWH, CXCYWH\), got format CXCYWHR"):
        ImageToVideo("rotate:10", T=3)(boxes)
