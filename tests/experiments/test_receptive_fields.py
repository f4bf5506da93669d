"""Each arm's receptive field, measured one way for every arm: 2D and video arms, both views."""

import copy
import math

import torch
from torch.testing import assert_close

from img2vid import wrap
from img2vid.experiments.networks import SmallResNet
from img2vid.experiments.receptive_fields import arm_erfs, arm_rf
from img2vid.fusion import GateShiftFuse
from img2vid.rf import erf_stats


def test_a_video_arm_with_a_still_clip_and_no_fusion_has_the_2d_networks_receptive_field(one_thread):
    torch.manual_seed(0)
    net = SmallResNet(width=4).eval()
    images = torch.rand(3, 1, 32, 32)
    plain = arm_erfs(net, images)
    assert torch.equal(plain["frame"], plain["clip"]) and abs(float(plain["frame"].sum()) - 1) < 1e-6
    # Identity motion, frames independent: every frame is the image through the same 2D network.
    still = arm_erfs(wrap(copy.deepcopy(net), "identity", T=3, fusion="none"), images)
    for view in ("frame", "clip"):
        assert_close(still[view], plain["frame"], rtol=1e-5, atol=1e-7)


def test_motion_and_fusion_reshape_the_clips_receptive_field_and_the_numbers_say_so(one_thread):
    torch.manual_seed(0)
    net = SmallResNet(width=4)
    model = wrap(copy.deepcopy(net), "translate_x:0.2", T=3, fusion="gsf").eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, GateShiftFuse):
                module.scale.fill_(1.0)
    images = torch.rand(3, 1, 32, 32)
    numbers, maps = arm_rf(model, images)
    assert numbers["theoretical"] == [13, 13]
    # The middle frame is the unmoved image: its unit's gradient is centred where the 2D network's is; the
    # frame average's unit also sees the frames moved by +-0.2 * 32 px, so its field is wider along x.
    frame, clip = erf_stats(maps["frame"]), erf_stats(maps["clip"])
    assert clip["sigma_x"] > frame["sigma_x"] + 1 and clip["r90"] > frame["r90"]
    assert abs(clip["sigma_y"] - frame["sigma_y"]) < 0.5 * (clip["sigma_x"] - frame["sigma_x"])
    assert numbers["clip"] == {k: clip[k] for k in ("r50", "r90", "anisotropy")}
    assert_close(maps["frame"].sum(), torch.tensor(1.0))


def test_a_dead_central_unit_gives_nan_numbers_not_a_crash():
    net = SmallResNet(width=2)
    with torch.no_grad():
        net.layer2.bn2.weight.zero_()
        net.layer2.bn2.bias.fill_(-1.0)  # its ReLU is off everywhere: only the shortcut is left
        net.layer2.downsample[1].weight.zero_()
        net.layer2.downsample[1].bias.fill_(-1.0)
    numbers, maps = arm_rf(net, torch.rand(2, 1, 16, 16))
    assert all(math.isnan(v) for v in numbers["frame"].values()) and float(maps["clip"].abs().sum()) == 0.0
