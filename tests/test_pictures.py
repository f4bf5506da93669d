"""clip_strip: clips drawn as strips of frames, checked pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from img2vid import ImageToVideo
from img2vid.pictures import clip_strip


def test_clip_strip_layout_by_hand():
    # Two clips of T = 3 grey frames, 2 x 4 pixels each; frame j of clip i has the value (3 i + j) / 10.
    clips = torch.tensor([[(3 * i + j) / 10 for j in range(3)] for i in range(2)]).reshape(2, 3, 1, 1, 1)
    strip = np.asarray(clip_strip(clips.expand(2, 3, 1, 2, 4), zoom=2, gap=1))
    assert strip.shape == (2 * 4 + 3 * 1, 3 * 8 + 4 * 1, 3)
    grey = round(0.5 * 255)
    for i in range(2):
        for j in range(3):
            top, left = 1 + i * 5, 1 + j * 9
            np.testing.assert_array_equal(strip[top:top + 4, left:left + 8], round((3 * i + j) / 10 * 255))
            assert (strip[top - 1, left:left + 8] == grey).all() and (strip[top:top + 4, left - 1] == grey).all()
    assert (strip[-1] == grey).all() and (strip[:, -1] == grey).all()


def test_clip_strip_draws_what_image_to_video_made():
    image = torch.rand(3, 6, 7)
    clip = ImageToVideo("translate_x:0.2", T=3)(image)
    strip = np.asarray(clip_strip(clip, zoom=1, gap=2))
    middle = strip[2:8, 2 + 7 + 2:2 + 7 + 2 + 7]  # the frame of power 0 is the image itself
    np.testing.assert_array_equal(middle, (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
    # uint8 clips are drawn as they are; values outside [0, 1] are clipped.
    as_bytes = np.asarray(clip_strip((clip * 255).round().to(torch.uint8), zoom=1, gap=2))
    np.testing.assert_array_equal(as_bytes, strip)
    assert np.asarray(clip_strip(torch.full((1, 1, 2, 2), 7.0), gap=0)).min() == 255


@pytest.mark.parametrize(
    ("clips", "kwargs", "match"),
    [
        (torch.rand(3, 4, 4), {}, r"\(T, C, H, W\)"),
        (torch.rand(2, 2, 4, 4), {}, "1 or 3 channels"),
        (torch.rand(2, 1, 4, 4), {"zoom": 0}, "zoom must be an integer >= 1, got 0"),
        (torch.rand(2, 1, 4, 4), {"gap": -1}, "gap must be an integer >= 0"),
        (torch.rand(2, 1, 4, 4), {"zoom": 1.5}, "zoom"),
    ],
)
def test_clip_strip_bad_input(clips, kwargs, match):
    with pytest.raises(ValueError, match=match):
        clip_strip(clips, **kwargs)
