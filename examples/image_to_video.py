"""Turn images into clips inside an ordinary torchvision data pipeline, and look at them.

    python examples/image_to_video.py --genotype "translate_x:0.05,rotate:5" --T 5 -o clips.png

Images come from an image folder (``--images DIR``, any ``torchvision.datasets.ImageFolder`` layout)
or, by default, from torchvision's ``FakeData``. Each row of the output PNG is one clip.
"""

from __future__ import annotations

import argparse

import torch
from torchvision import datasets
from torchvision.transforms import v2
from torchvision.utils import save_image

import img2vid as i2v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genotype", default="translate_x:0.05,rotate:5", help="the motion, e.g. 'scale:1.1'")
    parser.add_argument("--T", type=int, default=5, help="frames per clip")
    parser.add_argument("--frames", choices=["centered", "forward"], default="centered")
    parser.add_argument("--images", help="an ImageFolder directory (default: torchvision FakeData)")
    parser.add_argument("--size", type=int, default=96, help="images are resized to size x size")
    parser.add_argument("--count", type=int, default=4, help="how many clips to draw")
    parser.add_argument("-o", "--output", default="clips.png")
    args = parser.parse_args()

    to_clip = v2.Compose([
        v2.ToImage(),
        v2.Resize((args.size, args.size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        i2v.ImageToVideo(args.genotype, T=args.T, frames=args.frames),
    ])
    if args.images:
        dataset = datasets.ImageFolder(args.images, transform=to_clip)
    else:
        dataset = datasets.FakeData(size=args.count, image_size=(3, args.size, args.size), transform=to_clip)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.count)
    clips, _ = next(iter(loader))  # (B, T, C, H, W)
    save_image(clips.flatten(0, 1), args.output, nrow=args.T, padding=2)
    print(f"{clips.shape[0]} clips of {args.T} frames ({args.genotype}) -> {args.output}")


if __name__ == "__main__":
    main()
