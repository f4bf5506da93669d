"""The arms: what each one trains, the equal-steps random control, torchvision's augmentations per sample."""

import pytest
import torch
from torchvision.transforms import v2

from img2vid import Genotype, ImageToVideo
from img2vid.experiments.arms import ARMS, build_arm, check_arms, non_identity_steps, random_genotype
from img2vid.experiments.networks import SmallResNet

MAGNITUDES = {"translate_x": 0.05, "translate_y": 0.05, "scale": 1.05, "rotate": 5.0}
DAS = Genotype.parse("identity,translate_y:0.05,identity,rotate:5,scale:1.05")


def test_random_arm_has_the_searched_number_of_moves_and_its_magnitudes():
    steps = non_identity_steps(DAS)
    assert steps == 3
    for seed in range(20):
        g = random_genotype(steps, MAGNITUDES, seed)
        assert len(g) == non_identity_steps(g) == 3  # as many moves, no identity padding
        assert all(magnitude == MAGNITUDES[name] for name, magnitude in g)
    assert random_genotype(steps, MAGNITUDES, 1) == random_genotype(steps, MAGNITUDES, 1)
    assert len({str(random_genotype(steps, MAGNITUDES, s)) for s in range(10)}) > 3
    assert random_genotype(0, MAGNITUDES, 0) == Genotype("identity")
    # Its per-frame motion is of the DAS genotype's size, not several times larger: compare the
    # corner displacement of each step (one step of a move at these magnitudes moves a corner < 2 px at 28 px).
    for seed in range(10):
        m = ImageToVideo(random_genotype(1, MAGNITUDES, seed), T=2, frames="forward").matrices(28, 28)[0]
        assert float((m @ torch.tensor([0.0, 0.0, 1.0]) - torch.tensor([0.0, 0.0, 1.0])).norm()) < 2.0


def test_random_genotype_bad_input():
    with pytest.raises(ValueError, match="steps"):
        random_genotype(-1, MAGNITUDES, 0)
    with pytest.raises(ValueError, match="missing"):
        random_genotype(2, {"rotate": 5.0}, 0)


def test_every_arm_builds_from_a_copy_of_the_same_network():
    base = SmallResNet(width=4)
    fixed = Genotype.parse("translate_x:0.05,rotate:5")
    random = random_genotype(3, MAGNITUDES, 0)
    x = torch.rand(2, 1, 16, 16)
    for name in ARMS:
        arm = build_arm(name, base, genotype=DAS, random=random, fixed=fixed, T=3, epochs=4, seed=0)
        assert arm.model is not base
        if name == "large-kernel":  # its own 5x5 kernels; every other weight shared
            assert arm.model.conv1.weight.shape[-2:] == (5, 5)
            assert torch.equal(arm.model.state_dict()["fc.weight"], base.fc.weight)
        else:
            assert torch.equal(arm.model.state_dict()["conv1.weight"], base.conv1.weight)  # same initialisation
        if name == "dilated":
            assert arm.model.layer2.conv2.dilation == (2, 2) and base.layer2.conv2.dilation == (1, 1)
        assert arm.model(x).shape == (2, 10)
        assert arm.epochs == (12 if name == "baseline-xT" else 4)
        video = getattr(arm.model, "image_to_video", None)
        expected = {"augment": (DAS, "none"), "replica": (Genotype("identity"), "gsf"), "das": (DAS, "gsf"),
                    "das-tsm": (DAS, "tsm"), "random": (random, "gsf"), "fixed": (fixed, "gsf")}.get(name)
        if expected is None:
            assert video is None
        else:
            assert video.genotype == expected[0] and video.T == 3 and arm.model.temporal_fusion == expected[1]
            assert arm.genotype == str(expected[0])
    kinds = {name: type(build_arm(name, base, genotype=DAS, random=random, fixed=fixed, T=3, epochs=1,
                                  seed=0).transform) for name in ("autoaugment", "randaugment", "trivialaugment")}
    assert kinds == {"autoaugment": v2.AutoAugment, "randaugment": v2.RandAugment,
                     "trivialaugment": v2.TrivialAugmentWide}


def test_torchvision_augments_act_per_sample():
    from img2vid.experiments.training import _apply

    torch.manual_seed(0)
    augment = build_arm("trivialaugment", SmallResNet(width=4), genotype=DAS, random=DAS, fixed=DAS, T=3,
                        epochs=1, seed=0).transform
    same = torch.rand(1, 1, 16, 16).expand(16, 1, 16, 16)
    out = _apply(augment, same)
    assert out.shape == same.shape
    assert len({tuple(img.flatten()[:40].tolist()) for img in out}) > 3  # different ops per image


def test_check_arms():
    assert check_arms(["baseline", "das"]) == ["baseline", "das"]
    with pytest.raises(ValueError, match="unknown arm"):
        check_arms(["baseline", "mixup"])
    with pytest.raises(ValueError, match="must include 'baseline'"):
        check_arms(["das"])
    with pytest.raises(ValueError, match="repeat"):
        check_arms(["baseline", "baseline"])
