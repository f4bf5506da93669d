import pytest
import torch
from einops import rearrange
from torch import nn

from img2vid.functional import temporal_shift


class TinyVideoNet(nn.Module):
    """A stand-in for a temporalized CNN: (B, T, C, H, W) -> frame-averaged logits (B, K)."""

    def __init__(self, channels: int = 3, classes: int = 3, width: int = 8, smooth: bool = False) -> None:
        super().__init__()
        self.act = torch.tanh if smooth else torch.relu
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Linear(width, classes)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        T = clip.shape[1]
        x = self.act(self.bn(self.conv1(rearrange(clip, "b t c h w -> (b t) c h w"))))
        x = rearrange(x, "(b t) c h w -> b t c h w", t=T)
        x = rearrange(temporal_shift(x, fold_div=4), "b t c h w -> (b t) c h w")
        x = self.act(self.conv2(x)).mean(dim=(-2, -1))
        return rearrange(self.head(x), "(b t) k -> b t k", t=T).mean(1)


@pytest.fixture
def tiny_video_net():
    return TinyVideoNet
