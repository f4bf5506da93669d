"""Receptive fields: Eq. 8 on hand-computable networks, and the empirical RF of Sec. 3.2."""

from __future__ import annotations

import copy
import doctest
import importlib.util
import math
import sys

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from img2vid import ImageToVideo
from img2vid.functional import temporal_shift
from img2vid.rf import (
    RFLayer,
    empirical_rf,
    erf_stats,
    network_rf,
    rf_layers,
    rf_spread,
    save_rf_figure,
    theoretical_rf,
)

# --------------------------------------------------------------------------------------------------
# Eq. 8
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ([], 1),
        ([(3, 1)], 3),
        ([(3, 1), (3, 1)], 5),
        ([(3, 1)] * 4, 9),
        ([(3, 2), (3, 1)], 7),  # 1 + 2 + 2 * 2
        ([(7, 2), (3, 2), (3, 1)], 19),  # ResNet stem + max-pool + one 3x3: 1 + 6 + 2*2 + 2*4
        ([(7, 2), (3, 2), (3, 1), (3, 1)], 27),
        ([(2, 2), (2, 2), (2, 2)], 8),  # three 2x2/2 poolings tile the input exactly
        ([(1, 4), (5, 1)], 17),  # 1 + 0 + 4 * 4
    ],
)
def test_theoretical_rf_eq8_by_hand(layers, expected):
    assert theoretical_rf(layers) == expected


def test_theoretical_rf_accepts_any_iterable():
    assert theoretical_rf(iter([(3, 1), (3, 1)])) == 5


@pytest.mark.parametrize("bad", [[(0, 1)], [(3, 0)], [(3.0, 1)], [(3,)], [3], [(True, 1)]])
def test_theoretical_rf_rejects_bad_layers(bad):
    with pytest.raises(ValueError, match="layer 0"):
        theoretical_rf(bad)


def test_rf_layers_reads_kernel_stride_dilation_and_skips_pointwise():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(8, 8, (3, 5), stride=(1, 2), dilation=(2, 1)), nn.Dropout()),
        nn.AvgPool2d(3, stride=1),
    )
    assert rf_layers(net) == [
        RFLayer("0", (3, 3), (1, 1)),
        RFLayer("3", (2, 2), (2, 2)),
        RFLayer("4.0", (5, 5), (1, 2)),  # dilation 2 on a 3 tap kernel spans 5 rows
        RFLayer("5", (3, 3), (1, 1)),
    ]
    # height: 1 + 2 + 1*1 + 4*2 + 2*2 = 16; width: 1 + 2 + 1*1 + 4*2 + 2*4 = 20
    assert network_rf(net) == (16, 20)


def test_network_rf_docstring_example():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, (3, 5)))
    assert network_rf(net) == (8, 12)


@pytest.mark.parametrize(
    "module",
    [BasicBlock(4, 4), nn.Linear(4, 4), nn.AdaptiveAvgPool2d(1), nn.ConvTranspose2d(4, 4, 3)],
    ids=["residual", "linear", "global-pool", "transposed"],
)
def test_rf_layers_refuses_what_eq8_does_not_cover(module):
    net = nn.Sequential(nn.Conv2d(4, 4, 3), module)
    with pytest.raises(ValueError, match=rf"^1 \({type(module).__name__}\)"):
        rf_layers(net)


def _ones_net(*layers: nn.Module) -> nn.Sequential:
    net = nn.Sequential(*layers)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


def _support(erf: torch.Tensor) -> tuple[int, int]:
    rows = torch.nonzero(erf.sum(dim=1) > 0).flatten()
    cols = torch.nonzero(erf.sum(dim=0) > 0).flatten()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize(
    "layers",
    [
        lambda: (nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)),
        lambda: (nn.Conv2d(1, 2, 3, stride=2), nn.Conv2d(2, 2, 3), nn.AvgPool2d(2), nn.Conv2d(2, 1, 3)),
        lambda: (nn.Conv2d(1, 2, (3, 5), dilation=(2, 1)), nn.AvgPool2d(2), nn.Conv2d(2, 1, (5, 3), stride=2)),
    ],
    ids=["two-convs", "strided", "dilated-rectangular"],
)
def test_gradient_support_equals_eq8(layers):
    # A linear network with positive weights: every input pixel in the theoretical RF has a nonzero
    # gradient, and none outside it, so the ERF's support must be Eq. 8 exactly.
    net = _ones_net(*layers())
    erf = empirical_rf(net, (1, 41, 41), samples=1)
    assert _support(erf) == network_rf(net)


# --------------------------------------------------------------------------------------------------
# Empirical receptive field
# --------------------------------------------------------------------------------------------------


def test_rf_spread_by_hand():
    erf = torch.zeros(5, 9)
    erf[2, 4] = 1.0
    assert rf_spread(erf) == (0.0, 0.0)
    erf = torch.zeros(5, 9)
    erf[2, 0] = erf[2, 4] = 1.0  # two equal points 4 px apart along x: sigma_x = 2
    sy, sx = rf_spread(erf)
    assert sy == 0.0 and sx == pytest.approx(2.0)
    with pytest.raises(ValueError, match="non-negative"):
        rf_spread(-erf)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        rf_spread(torch.ones(1, 3, 3))


class FrameNet(nn.Module):
    """A tiny temporal network: per-frame 3x3 convs with a temporal shift between them (TSM, "in-place").

    Shape: ``(B, T, 1, H, W) -> (B, T, K, H, W)``; with ``shift=False`` it is the 2D network per frame.
    """

    def __init__(self, shift: bool, channels: int = 8) -> None:
        super().__init__()
        self.shift = shift
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1)

    def features2d(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        y = torch.relu(self.conv1(x.flatten(0, 1)))
        if self.shift:
            y = temporal_shift(y.unflatten(0, (b, t)), fold_div=4).flatten(0, 1)
        y = self.conv3(torch.relu(self.conv2(y)))
        return y.unflatten(0, (b, t))


class TwoD(nn.Module):
    def __init__(self, frame_net: FrameNet) -> None:
        super().__init__()
        self.frame_net = frame_net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frame_net.features2d(x)


def _nets(seed: int = 0, inits: int = 3) -> list[FrameNet]:
    torch.manual_seed(seed)
    return [FrameNet(shift=True) for _ in range(inits)]


def test_video_without_fusion_has_the_2d_erf():
    # Frame of power 0 is the image itself; with no fusion it sees nothing of the other frames.
    nets = _nets()
    for net in nets:
        net.shift = False
    video = ImageToVideo("translate_x:0.15", T=3)
    erf_video = empirical_rf(nets, (1, 33, 33), video=video)
    erf_2d = empirical_rf([TwoD(n) for n in nets], (1, 33, 33))
    torch.testing.assert_close(erf_video, erf_2d, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("genotype", "wide_axis"), [("translate_x:0.15", 1), ("translate_y:0.15", 0)])
def test_translation_with_temporal_shift_widens_the_erf_along_its_axis_only(genotype, wide_axis):
    nets = _nets()
    erf_2d = empirical_rf([TwoD(n) for n in nets], (1, 33, 33))
    erf_tsm = empirical_rf(nets, (1, 33, 33), video=ImageToVideo(genotype, T=3))
    spread_2d, spread_tsm = rf_spread(erf_2d), rf_spread(erf_tsm)
    other = 1 - wide_axis
    # A shift of 0.15 * 33 ~ 5 px per frame puts the neighbours' RFs next to the centre's (Fig. 4).
    assert spread_tsm[wide_axis] > 1.5 * spread_2d[wide_axis]
    assert spread_tsm[other] == pytest.approx(spread_2d[other], rel=0.1)
    # And the extra mass sits where the neighbouring frames' content came from: ~5 px left and right.
    profile = erf_tsm.sum(dim=other)
    centre = 16
    assert profile[centre - 5] > 5 * erf_2d.sum(dim=other)[centre - 5]
    assert profile[centre + 5] > 5 * erf_2d.sum(dim=other)[centre + 5]


def test_identity_clip_with_temporal_shift_keeps_the_2d_shape():
    # Replica (Table 5): every frame is the image, so fusion mixes copies and the RF keeps its shape.
    nets = _nets()
    erf_2d = empirical_rf([TwoD(n) for n in nets], (1, 33, 33))
    erf_rep = empirical_rf(nets, (1, 33, 33), video=ImageToVideo("identity", T=3))
    for a, b in zip(rf_spread(erf_rep), rf_spread(erf_2d)):
        assert a == pytest.approx(b, rel=0.1)


def test_erf_is_normalised_and_leaves_the_model_alone():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    erf = empirical_rf(net, (3, 15, 15), samples=4)
    assert erf.shape == (15, 15) and erf.max() == pytest.approx(1.0) and erf.min() >= 0
    assert empirical_rf(net, (3, 15, 15), samples=4, normalize="sum").sum() == pytest.approx(1.0)
    raw = empirical_rf(net, (3, 15, 15), samples=4, normalize=None)
    torch.testing.assert_close(raw / raw.max(), erf)
    assert net.training
    assert all(p.grad is None for p in net.parameters())
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key])  # eval mode: running stats untouched
    # An explicit batch gives the same as the same images drawn from the seed.
    x = torch.randn(4, 3, 15, 15, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(empirical_rf(net, x), erf)


def test_erf_errors_are_clear():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="spatial output"):
        empirical_rf(net, (1, 9, 9))
    conv = nn.Conv2d(1, 2, 3)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        empirical_rf(conv, (9, 9))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        empirical_rf(conv, torch.randn(1, 9, 9))
    with pytest.raises(ValueError, match="normalize"):
        empirical_rf(conv, (1, 9, 9), normalize="l2")
    with pytest.raises(ValueError, match="frame"):
        empirical_rf(FrameNet(shift=True), (1, 9, 9), video=ImageToVideo("identity", T=3), frame=3)
    dead = nn.Conv2d(1, 2, 3)
    nn.init.zeros_(dead.weight)
    with pytest.raises(ValueError, match="zero everywhere"):
        empirical_rf(dead, (1, 9, 9))
    with pytest.raises(ValueError, match=r"nn\.Module"):
        empirical_rf([], (1, 9, 9))


def test_erf_on_an_empty_batch_names_the_batch_not_the_network():
    net = nn.Conv2d(1, 2, 3)
    with pytest.raises(ValueError, match=r"empty batch of shape \(0, 1, 9, 9\)"):
        empirical_rf(net, torch.randn(0, 1, 9, 9))
    with pytest.raises(ValueError, match="empty batch"):
        empirical_rf(net, torch.randn(2, 1, 0, 9))


def test_erf_reads_dict_outputs():
    class Seg(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            return {"out": self.conv(x), "aux": x}

    erf = empirical_rf(Seg(), (1, 9, 9), samples=2)
    assert _support(erf) == (3, 3)


def test_save_rf_figure_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    erf = torch.rand(12, 12)
    path = save_rf_figure({"2D": erf, "GSF": erf.T}, tmp_path / "deep" / "rf.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    single = save_rf_figure(erf, tmp_path / "one.png")
    assert single.stat().st_size > 1000
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        save_rf_figure({"bad": torch.rand(3)}, tmp_path / "bad.png")


def test_save_rf_figure_leaves_the_users_matplotlib_backend_alone(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # stands for a notebook's inline backend: any backend the user chose
    try:
        save_rf_figure(torch.rand(8, 8), tmp_path / "rf.png")
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "rf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        matplotlib.use(before)


def test_save_rf_figure_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"img2vid\[demo\]"):
        save_rf_figure(torch.rand(4, 4), tmp_path / "x.png")


# --------------------------------------------------------------------------------------------------
# Through the library's own temporal networks (issue 3), once they exist
# --------------------------------------------------------------------------------------------------

needs_temporalize = pytest.mark.skipif(
    importlib.util.find_spec("img2vid.temporalize") is None, reason="img2vid.temporalize has not landed yet"
)


class TinyConvNet(nn.Module):
    """Four 3x3 convolutions, no blocks: temporalize's generic rule fuses at every conv but the first.

    Shape: ``(N, 1, H, W) -> (N, 8, H, W)`` (dense, same size).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv4 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.conv4(torch.relu(self.conv3(x)))


def _tiny(inits: int = 3) -> list[TinyConvNet]:
    torch.manual_seed(0)
    return [TinyConvNet() for _ in range(inits)]


def _temporal(nets, fusion: str, opened: bool = False):
    from img2vid.fusion import GateShiftFuse
    from img2vid.temporalize import temporalize

    out = []
    for net in nets:
        video_net = temporalize(copy.deepcopy(net), fusion, reduce=None)
        if opened:
            # GSF is the identity at init (zero residual scale) and its tanh gates start near 0; open
            # both, as training would, so the fused channels really carry the neighbours' features.
            for module in video_net.modules():
                if isinstance(module, GateShiftFuse):
                    nn.init.ones_(module.scale)
                    nn.init.constant_(module.gate_bias, 3.0)
        out.append(video_net)
    return out


@needs_temporalize
@pytest.mark.parametrize(("fusion", "opened"), [("tsm", False), ("gsf", True)])
def test_temporalized_translation_widens_the_erf_along_x_only(fusion, opened):
    nets = _tiny()
    erf_2d = empirical_rf(nets, (1, 33, 33))
    video = ImageToVideo("translate_x:0.15", T=3)
    erf_video = empirical_rf(_temporal(nets, fusion, opened), (1, 33, 33), video=video)
    (sy2, sx2), (sy, sx) = rf_spread(erf_2d), rf_spread(erf_video)
    assert sx > 1.5 * sx2, (sx, sx2)  # measured: TSM 4.4 vs 2.0, opened GSF 4.0 vs 2.0
    assert sy == pytest.approx(sy2, rel=0.1)
    # The same network on an identity clip (Replica) keeps the 2D shape: the motion does the reshaping.
    erf_replica = empirical_rf(_temporal(nets, fusion, opened), (1, 33, 33), video=ImageToVideo("identity", T=3))
    for a, b in zip(rf_spread(erf_replica), rf_spread(erf_2d)):
        assert a == pytest.approx(b, rel=0.1)


@needs_temporalize
def test_gsf_at_initialisation_leaves_the_erf_2d():
    nets = _tiny()
    erf_2d = empirical_rf(nets, (1, 33, 33))
    erf_gsf = empirical_rf(_temporal(nets, "gsf"), (1, 33, 33), video=ImageToVideo("translate_x:0.15", T=3))
    torch.testing.assert_close(erf_gsf, erf_2d, rtol=1e-4, atol=1e-6)


@needs_temporalize
def test_erf_through_wrap_undoes_the_motion_without_fusion_and_reshapes_with_it():
    from img2vid.wrap import wrap

    nets = _tiny()
    erf_2d = empirical_rf(nets, (1, 30, 30))
    # translate_x 0.2 of 30 px = 6 px exactly: frames and their inverse warps are exact pixel shifts.
    plain = [wrap(copy.deepcopy(n), "translate_x:0.2", T=3, fusion="none") for n in nets]
    torch.testing.assert_close(empirical_rf(plain, (1, 30, 30)), erf_2d, rtol=1e-4, atol=1e-5)
    shifted = [wrap(copy.deepcopy(n), "translate_x:0.2", T=3, fusion="tsm") for n in nets]
    (sy2, sx2), (sy, sx) = rf_spread(erf_2d), rf_spread(empirical_rf(shifted, (1, 30, 30)))
    assert sx > 1.3 * sx2, (sx, sx2)
    assert sy == pytest.approx(sy2, rel=0.1)


# --------------------------------------------------------------------------------------------------
# ERF statistics: every oracle below is worked out by hand in the comments
# --------------------------------------------------------------------------------------------------


def _block(shape: tuple[int, int], rows: slice, cols: slice) -> torch.Tensor:
    erf = torch.zeros(shape)
    erf[rows, cols] = 1.0
    return erf


def test_erf_stats_of_a_uniform_3x3_block_by_hand():
    # Centre (4, 4). Distances: 0 (1 pixel), 1 (4 pixels), sqrt(2) (4 pixels); cumulative mass
    # 1/9, 5/9, 9/9: 0.5 is first reached at distance 1, 0.9 at sqrt(2).
    stats = erf_stats(_block((9, 9), slice(3, 6), slice(3, 6)))
    assert list(stats) == ["r50", "r90", "sigma_y", "sigma_x", "anisotropy", "centre_y", "centre_x"]
    assert stats["r50"] == pytest.approx(1.0)
    assert stats["r90"] == pytest.approx(math.sqrt(2))
    assert stats["anisotropy"] == pytest.approx(1.0)
    assert (stats["centre_y"], stats["centre_x"]) == (pytest.approx(4.0), pytest.approx(4.0))
    # var over offsets -1, 0, 1 with mass 1/3 each: 2/3 per axis
    assert stats["sigma_y"] == pytest.approx(math.sqrt(2 / 3))
    assert stats["sigma_x"] == pytest.approx(math.sqrt(2 / 3))


def test_erf_stats_radius_is_the_pixel_where_the_mass_first_reaches_the_fraction():
    # Same block: a fraction met exactly (1/9, 5/9, 1) stops at that ring, not the next one; a hair
    # more moves out a ring. Keys are whole percentages.
    erf = _block((9, 9), slice(3, 6), slice(3, 6))
    stats = erf_stats(erf, fractions=(1 / 9, 5 / 9, 1.0))
    assert [key for key in stats if key.startswith("r")] == ["r11", "r56", "r100"]
    assert stats["r11"] == pytest.approx(0.0, abs=1e-12)
    assert stats["r56"] == pytest.approx(1.0)
    assert stats["r100"] == pytest.approx(math.sqrt(2))
    stats = erf_stats(erf, fractions=(0.12, 0.57))
    assert stats["r12"] == pytest.approx(1.0)
    assert stats["r57"] == pytest.approx(math.sqrt(2))
    # Pixels with no mass never set a radius, however the zeros around the block are sorted.
    assert erf_stats(torch.nn.functional.pad(erf, (20, 0, 0, 20)), fractions=(1.0,))["r100"] == pytest.approx(
        math.sqrt(2)
    )


def test_erf_stats_of_a_3_by_5_block_by_hand():
    # x offsets -2..2, mass 1/5 each: var_x = (4 + 1 + 0 + 1 + 4) / 5 = 2; y offsets -1..1: var_y = 2/3;
    # no covariance, so the eigenvalues are 2 and 2/3 and the anisotropy sqrt(3).
    erf = _block((9, 9), slice(3, 6), slice(2, 7))
    stats = erf_stats(erf)
    assert stats["sigma_x"] == pytest.approx(math.sqrt(2))
    assert stats["sigma_y"] == pytest.approx(math.sqrt(2 / 3))
    assert stats["anisotropy"] == pytest.approx(math.sqrt(3))
    assert (stats["sigma_y"], stats["sigma_x"]) == pytest.approx(rf_spread(erf))
    # Transposed, the same numbers with the axes swapped.
    transposed = erf_stats(erf.T)
    assert transposed["sigma_y"] == pytest.approx(math.sqrt(2))
    assert transposed["anisotropy"] == pytest.approx(math.sqrt(3))
    # Radii: 15 pixels of 1/15 at 0 (1), 1 (4), sqrt(2) (4), 2 (2), sqrt(5) (4); cumulative 1, 5, 9, 11,
    # 15 (/15): 0.5 (7.5/15) is reached at sqrt(2), 0.9 (13.5/15) at sqrt(5).
    assert stats["r50"] == pytest.approx(math.sqrt(2))
    assert stats["r90"] == pytest.approx(math.sqrt(5))


def test_erf_stats_of_a_line_and_of_a_point():
    # Seven pixels of 1/7 on one row, centre column 4. This row is chosen because float64 rounding
    # bites on it: var_y comes out ~1e-32 rather than 0, and the cumulative mass at 5 pixels a hair
    # under 5/7 (so a radius that compared exactly would move out a ring).
    row = _block((7, 14), slice(1, 2), slice(1, 8))
    stats = erf_stats(row, fractions=(5 / 7, 1.0))
    assert stats["anisotropy"] == math.inf
    assert stats["sigma_y"] == pytest.approx(0.0, abs=1e-12)
    assert stats["sigma_x"] == pytest.approx(2.0)  # offsets -3..3: (9 + 4 + 1 + 0 + 1 + 4 + 9) / 7 = 4
    # Distances 0 (1 pixel), 1 (2), 2 (2), 3 (2): cumulative 1, 3, 5, 7 (/7).
    assert stats["r71"] == pytest.approx(2.0)
    assert stats["r100"] == pytest.approx(3.0)
    assert erf_stats(torch.eye(6))["anisotropy"] == math.inf  # all the mass on the line y = x
    # Seven pixels on an anti-diagonal, where rounding leaves lambda_min at ~4e-16 (not 0): still a line.
    anti_diagonal = torch.zeros(20, 20)
    for i in range(7):
        anti_diagonal[i, 19 - i] = 1.0
    assert erf_stats(anti_diagonal)["anisotropy"] == math.inf
    point = torch.zeros(5, 9)
    point[1, 6] = 3.0
    stats = erf_stats(point)
    assert stats["anisotropy"] == 1.0  # no direction at all
    assert stats["r50"] == stats["r90"] == stats["sigma_y"] == stats["sigma_x"] == 0.0
    assert (stats["centre_y"], stats["centre_x"]) == (1.0, 6.0)


def test_erf_stats_sees_a_diagonal_elongation_that_rf_spread_cannot():
    # Weight 1 on the main diagonal (0,0), (1,1), (2,2) and 1/2 on the anti-diagonal corners (0,2), (2,0);
    # total 4, centre (1, 1). Offsets (dy, dx) and weights: (-1,-1) 1, (0,0) 1, (1,1) 1, (-1,1) 1/2, (1,-1) 1/2.
    # var_y = var_x = (1 + 1 + 1/2 + 1/2) / 4 = 3/4; cov = (1 + 1 - 1/2 - 1/2) / 4 = 1/4.
    # Eigenvalues of [[3/4, 1/4], [1/4, 3/4]]: 3/4 +- 1/4 = 1 and 1/2, so the anisotropy is sqrt(2).
    erf = torch.zeros(7, 7)
    for i in (2, 3, 4):
        erf[i, i] = 1.0
    erf[2, 4] = erf[4, 2] = 0.5
    stats = erf_stats(erf)
    assert stats["sigma_y"] == pytest.approx(stats["sigma_x"])  # per axis it looks round ...
    assert stats["sigma_x"] == pytest.approx(math.sqrt(3 / 4))
    assert stats["anisotropy"] == pytest.approx(math.sqrt(2))  # ... but it is stretched along y = x
    assert erf_stats(erf.flip(1))["anisotropy"] == pytest.approx(math.sqrt(2))  # and along y = -x
    assert (stats["centre_y"], stats["centre_x"]) == (pytest.approx(3.0), pytest.approx(3.0))


def test_erf_stats_moving_the_erf_moves_the_centre_only():
    here = erf_stats(_block((9, 9), slice(3, 6), slice(2, 7)))
    there = erf_stats(_block((12, 15), slice(0, 3), slice(9, 14)))
    assert (there["centre_y"], there["centre_x"]) == (pytest.approx(1.0), pytest.approx(11.0))
    for key in ("r50", "r90", "sigma_y", "sigma_x", "anisotropy"):
        assert there[key] == pytest.approx(here[key]), key
    # And the scale of the map does not matter: it is normalised to a distribution inside.
    assert erf_stats(7.5 * _block((9, 9), slice(3, 6), slice(2, 7))) == pytest.approx(here)


def test_erf_stats_of_two_all_ones_convolutions_by_hand():
    # Two 3x3 all-ones convolutions, no bias, no nonlinearity: the centre output unit (5, 5) of an 11x11
    # output sees input rows / columns 5..9 with weight box * box = outer(v, v), v = [1, 2, 3, 2, 1]
    # (sum 9, so the whole map sums to 81).
    net = _ones_net(nn.Conv2d(1, 1, 3, bias=False), nn.Conv2d(1, 1, 3, bias=False))
    erf = empirical_rf(net, (1, 15, 15), normalize="sum")
    v = torch.tensor([1.0, 2.0, 3.0, 2.0, 1.0])
    expected = torch.zeros(15, 15)
    expected[5:10, 5:10] = torch.outer(v, v) / 81
    torch.testing.assert_close(erf, expected)

    stats = erf_stats(erf)
    assert (stats["centre_y"], stats["centre_x"]) == (pytest.approx(7.0), pytest.approx(7.0))
    # Marginal v / 9 over offsets -2..2: var = (4 * 1 + 1 * 2 + 0 * 3 + 1 * 2 + 4 * 1) / 9 = 4/3.
    assert stats["sigma_x"] == pytest.approx(math.sqrt(4 / 3))
    assert stats["sigma_y"] == pytest.approx(math.sqrt(4 / 3))
    assert stats["anisotropy"] == pytest.approx(1.0)
    # Rings by distance, (pixels x weight of each, in 81ths) and cumulative mass:
    #   0 (1 x 9) 9; 1 (4 x 6) 33; sqrt(2) (4 x 4) 49; 2 (4 x 3) 61; sqrt(5) (8 x 2) 77; sqrt(8) (4 x 1) 81.
    # 0.5 * 81 = 40.5 is first reached at sqrt(2); 0.9 * 81 = 72.9 at sqrt(5).
    assert stats["r50"] == pytest.approx(math.sqrt(2))
    assert stats["r90"] == pytest.approx(math.sqrt(5))


@pytest.mark.parametrize(
    ("erf", "match"),
    [
        (torch.tensor([[0.0, 1.0], [-0.5, 1.0]]), r"non-negative.*-0\.5"),
        (torch.ones(9), r"tensor \(H, W\), got torch.Size\(\[9\]\)"),
        (torch.ones(1, 3, 3), r"tensor \(H, W\)"),
        (torch.zeros(4, 4), r"positive sum.*all-zero"),
        (torch.tensor([[1.0, float("nan")]]), "finite"),
    ],
    ids=["negative", "1-D", "3-D", "zero", "nan"],
)
def test_erf_stats_rejects_what_is_not_a_distribution(erf, match):
    with pytest.raises(ValueError, match=match):
        erf_stats(erf)


@pytest.mark.parametrize(
    ("fractions", "match"),
    [
        ((0.0,), r"in \(0, 1\].*got 0\.0"),
        ((0.5, 1.5), r"in \(0, 1\].*got 1\.5"),
        ((), r"non-empty sequence"),
        (0.5, r"non-empty sequence.*got 0\.5"),
        (("0.5",), r"in \(0, 1\].*got '0\.5'"),
        ((0.5, 0.501), r"0\.5 and 0\.501 both give the key 'r50'"),
    ],
    ids=["zero", "above-one", "empty", "bare-float", "string", "same-key"],
)
def test_erf_stats_rejects_bad_fractions(fractions, match):
    with pytest.raises(ValueError, match=match):
        erf_stats(torch.ones(3, 3), fractions=fractions)


def test_erf_stats_docstring_example_runs():
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    for test in finder.find(erf_stats, "erf_stats", globs={"torch": torch, "erf_stats": erf_stats}):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0 and results.failed == 0
