"""Property tests (hypothesis) over genotypes, image shapes, dtypes, T and frame modes.

Each property has an outside oracle: torchvision's per-frame kernels, the exactness of bilinear
interpolation on affine ramps, or the label set of a mask. The example budget is small (25 per
property, tiny images), so the file runs in CI; ``CI=true`` makes the examples the same on every run,
and ``IMG2VID_EXAMPLES=500`` searches deeper.
"""

import os

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_functional import tv_params  # torchvision parameters of each power of a one-call motion
from torch.testing import assert_close
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from img2vid import OPS, Genotype, ImageToVideo
from img2vid.functional import frame_powers

SMALL = settings(max_examples=int(os.environ.get("IMG2VID_EXAMPLES", "25")), deadline=None, database=None,
                 derandomize=bool(os.environ.get("CI")), suppress_health_check=[HealthCheck.too_slow])

MAGNITUDES = {  # moderate ranges: every power of T <= 5 keeps part of a tiny image in view
    "translate_x": st.floats(-0.3, 0.3), "translate_y": st.floats(-0.3, 0.3), "rotate": st.floats(-45, 45),
    "scale": st.floats(0.75, 1.35), "shear_x": st.floats(-30, 30), "shear_y": st.floats(-30, 30),
}
frames_modes = st.sampled_from(["centered", "forward"])
Ts = st.integers(1, 5)


def affine_step(names):
    return st.sampled_from(names).flatmap(lambda name: MAGNITUDES[name].map(lambda m: (name, m)))


# Motions whose every power is one torchvision call (tv_params): translations alone, rotations and
# scales alone (about one centre they commute), or a single shear.
one_call_motions = st.one_of(
    st.lists(affine_step(["translate_x", "translate_y"]), min_size=1, max_size=3),
    st.lists(affine_step(["rotate", "scale"]), min_size=1, max_size=3),
    affine_step(["shear_x", "shear_y"]).map(lambda step: [step]),
)
any_motions = st.lists(affine_step(sorted(MAGNITUDES)), min_size=1, max_size=4)


# Pixel ops with torchvision kernels of both dtypes (AutoAugment's magnitudes; cutout is random).
PIXEL = {
    "brightness": (st.floats(-0.5, 0.5), lambda x, m, bound: TF.adjust_brightness(x, 1 + m)),
    "color": (st.floats(-0.9, 0.9), lambda x, m, bound: TF.adjust_saturation(x, 1 + m)),
    "sharpness": (st.floats(-0.9, 0.9), lambda x, m, bound: TF.adjust_sharpness(x.clone(), 1 + m)),
    "solarize": (st.floats(0.05, 1.0), lambda x, m, bound: TF.solarize(x, bound * m)),
    "posterize": (st.integers(1, 8).map(float), lambda x, m, bound: TF.posterize(x, int(m))),
    "invert": (st.just(0.0), lambda x, m, bound: TF.invert(x)),
    "auto_contrast": (st.just(0.0), lambda x, m, bound: TF.autocontrast(x)),
    "equalize": (st.just(0.0), lambda x, m, bound: TF.equalize(x)),
}
pixel_steps = st.sampled_from(sorted(PIXEL)).flatmap(lambda name: PIXEL[name][0].map(lambda m: (name, m)))


@st.composite
def images(draw, dtypes=(torch.float32, torch.float64, torch.uint8), channels=(1, 3)):
    dtype = draw(st.sampled_from(dtypes))
    shape = (*draw(st.sampled_from([(), (1,), (2,)])), draw(st.sampled_from(channels)),
             draw(st.integers(2, 9)), draw(st.integers(2, 9)))
    seed = draw(st.integers(0, 2**31 - 1))
    values = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (values * 255).round().to(dtype) if dtype == torch.uint8 else values.to(dtype)


@SMALL
@given(image=images(), motion=st.none() | one_call_motions, pixel=st.none() | pixel_steps, T=Ts, frames=frames_modes)
def test_clip_frames_are_torchvision_kernels_per_frame(image, motion, pixel, T, frames):
    steps = ([pixel] if pixel else []) + (motion or [])
    clip = ImageToVideo(Genotype(steps or ["identity"]), T=T, frames=frames)(image)
    height, width = image.shape[-2:]
    assert clip.dtype == image.dtype and clip.shape == (*image.shape[:-3], T, *image.shape[-3:])
    for t, p in enumerate(frame_powers(T, frames)):
        expected = image
        for _ in range(abs(p) if pixel else 0):  # a pixel op, |p| times, in the image's own dtype
            expected = PIXEL[pixel[0]][1](expected, pixel[1], 255.0 if image.dtype == torch.uint8 else 1.0)
        if motion:
            expected = TF.affine_image(expected, **tv_params(motion, p, height, width),
                                       interpolation=InterpolationMode.BILINEAR)
        frame = clip.select(-4, t)
        if image.dtype == torch.uint8 and not motion:  # torchvision's uint8 kernels, bit for bit
            assert torch.equal(frame, expected)
        elif image.dtype == torch.uint8:  # two float32 warps, each rounded: a tie may round either way
            assert (frame.int() - expected.int()).abs().max() <= 1
        else:
            assert_close(frame, expected, atol=1e-4, rtol=0)


@SMALL
@given(motion=any_motions, T=Ts, frames=frames_modes, height=st.integers(4, 12), width=st.integers(4, 12),
       channels=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_inverse_of_the_clip_is_the_image_on_the_interior(motion, T, frames, height, width, channels, seed):
    # Bilinear interpolation is exact on an affine ramp, so warping forward and back gives the ramp again
    # wherever both warps sampled inside the image: any chain of affine steps, in any order.
    coefficients = torch.rand(channels, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    ramp = coefficients[:, 0, None, None] * xs + coefficients[:, 1, None, None] * ys + coefficients[:, 2, None, None]
    video = ImageToVideo(Genotype(motion), T=T, frames=frames)
    back = video.inverse(video(ramp[None]))[0]  # (T, C, H, W)
    matrices = video.matrices(height, width, dtype=torch.float64)
    pixels = torch.stack([xs.flatten(), ys.flatten(), torch.ones(height * width, dtype=torch.float64)])  # (3, HW)

    def inside(points, slack):
        return ((points[0] >= -slack) & (points[0] <= width - 1 + slack)
                & (points[1] >= -slack) & (points[1] <= height - 1 + slack))

    for t in range(T):
        forward, backward = matrices[t], torch.linalg.inv(matrices[t])
        sampled = forward @ pixels  # where `back` reads frame t, for each output pixel
        valid = inside(sampled, 1e-9)
        for dx in (0, 1):  # the four pixels bilinear interpolation reads there must have sampled inside
            for dy in (0, 1):
                corner = torch.stack([sampled[0].floor() + dx, sampled[1].floor() + dy, pixels[2]])
                corner[0] = corner[0].clamp(max=width - 1)
                corner[1] = corner[1].clamp(max=height - 1)
                valid &= inside(backward @ corner, 1e-9)  # float64 geometry: exact to ~1e-12 px
        valid = valid.view(height, width)
        assert_close(back[t][:, valid], ramp[:, valid], atol=1e-6, rtol=0)


def magnitude_of(name):
    op = OPS[name]
    if not op.takes_magnitude:
        return st.just(0.0)
    if op.integer:
        return st.integers(int(op.range[0]), int(op.range[1])).map(float)
    return st.floats(*op.range, allow_nan=False)


genotype_steps = st.lists(
    st.sampled_from(sorted(OPS)).flatmap(lambda name: magnitude_of(name).map(lambda m: (name, m))),
    min_size=1, max_size=6,
)


@SMALL
@given(steps=genotype_steps)
def test_genotype_string_and_json_round_trips(steps):
    genotype = Genotype(steps)
    assert Genotype.parse(str(genotype)) == genotype and str(Genotype.parse(str(genotype))) == str(genotype)
    assert Genotype.from_json(genotype.to_json()) == genotype
    assert genotype.values() == [(name, float(m)) for name, m in steps]  # every bit of every magnitude
    tensors = Genotype([(name, torch.tensor(m, dtype=torch.float64)) for name, m in steps])
    assert tensors == genotype and str(tensors) == str(genotype)


@SMALL
@given(shape=st.sampled_from([(), (2,), (1, 3)]), height=st.integers(2, 9), width=st.integers(2, 9),
       dtype=st.sampled_from([torch.uint8, torch.int32, torch.int64, torch.bool]),
       labels=st.lists(st.integers(1, 300) | st.integers(2**53, 2**62), min_size=1, max_size=5),
       seed=st.integers(0, 2**31 - 1),
       steps=genotype_steps, T=Ts, frames=frames_modes, padding_mode=st.sampled_from(["zeros", "border", "reflection"]))
def test_masks_keep_their_label_set(shape, height, width, dtype, labels, seed, steps, T, frames, padding_mode):
    limit = {torch.uint8: 255, torch.int32: 2**31 - 1, torch.int64: 2**62, torch.bool: 1}[dtype]
    labels = torch.tensor([0] + [label % limit + 1 if dtype != torch.bool else 1 for label in labels])
    pick = torch.randint(0, len(labels), (*shape, height, width), generator=torch.Generator().manual_seed(seed))
    mask = tv_tensors.Mask(labels[pick].to(dtype))
    clip = ImageToVideo(Genotype(steps), T=T, frames=frames, padding_mode=padding_mode)(mask)
    assert isinstance(clip, tv_tensors.Mask) and clip.dtype == dtype
    t_axis = 1 if mask.ndim == 4 else 0
    assert clip.shape == (*mask.shape[:t_axis], T, *mask.shape[t_axis:])
    allowed = set(mask.unique().tolist()) | ({0} if padding_mode == "zeros" else set())
    assert set(clip.unique().tolist()) <= allowed
    if frames == "centered":
        assert torch.equal(clip.select(t_axis, T // 2), mask)  # the middle frame is the mask itself
