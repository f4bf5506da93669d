"""Command line: ``python -m img2vid demo ...`` and ``python -m img2vid preview ...``.

* ``demo`` runs the paper's experiment at small scale (:mod:`img2vid.demo`).
* ``preview`` shows what a genotype does to any image: a PNG strip of the clip's frames.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m img2vid",
        description='img2vid: "Your Image is My Video" (Casarin et al., CVPR 2024).',
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,preview}")

    demo = commands.add_parser(
        "demo",
        help="run the paper's experiment at small scale on cluttered digits (CPU: about 10 minutes)",
        description="DAS search, then the ablation arms of Tables 5 and 8 (baseline, augment, replica, DAS, "
        "random) over several seeds on cluttered scikit-learn digits; prints the table and writes CSV, JSON "
        "and pictures into --out.",
    )
    demo.add_argument("--quick", action="store_true", help="fewer seeds and epochs (under 3 minutes on CPU)")
    demo.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    demo.add_argument("--out", default="img2vid-demo", type=Path, help="output folder (default: img2vid-demo)")
    demo.add_argument("--seeds", type=int, default=None, help="number of training seeds (default: 5, quick: 3)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")

    preview = commands.add_parser(
        "preview",
        help="see a genotype's clip on an image file (PNG strip of the frames)",
        description="Turn an image into a clip with ImageToVideo and save its frames side by side as a PNG.",
    )
    preview.add_argument("--genotype", required=True, help='the motion, e.g. "translate_x:0.1,rotate:5"')
    preview.add_argument("--image", required=True, type=Path, help="any image file PIL can read")
    preview.add_argument("-o", "--output", required=True, type=Path, help="the PNG to write")
    preview.add_argument("--T", type=int, default=5, help="frames per clip (default: 5)")
    preview.add_argument("--frames", choices=["centered", "forward"], default="centered",
                         help="frame powers: centered (middle frame = image) or forward (Eq. 7)")
    preview.add_argument("--size", type=int, default=None,
                         help="resize the image's shorter side to this many pixels first")
    preview.add_argument("--zoom", type=int, default=1, help="enlarge each pixel this many times (default: 1)")
    return parser


def _demo(args: argparse.Namespace) -> int:
    from .demo import QUICK, DemoConfig, run_demo

    config = QUICK if args.quick else DemoConfig()
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        import dataclasses

        config = dataclasses.replace(config, seeds=args.seeds)
    run_demo(config, args.out, device=args.device, progress=not args.no_progress)
    return 0


def _preview(args: argparse.Namespace) -> int:
    import PIL.Image
    from torchvision.transforms.v2 import functional as TF

    from .demo import clip_strip
    from .genotype import Genotype
    from .video import ImageToVideo

    genotype = Genotype.parse(args.genotype)
    if args.T < 1:
        raise ValueError(f"--T must be >= 1, got {args.T}")
    if args.zoom < 1:
        raise ValueError(f"--zoom must be >= 1, got {args.zoom}")
    if not args.image.is_file():
        raise ValueError(f"--image {str(args.image)!r} is not a file")
    try:
        with PIL.Image.open(args.image) as handle:
            image = TF.to_image(handle.convert("RGB"))
    except PIL.UnidentifiedImageError:
        raise ValueError(f"--image {str(args.image)!r} is not an image PIL can read") from None
    if args.size is not None:
        if args.size < 1:
            raise ValueError(f"--size must be >= 1, got {args.size}")
        image = TF.resize(image, [args.size], antialias=True)
    clip = ImageToVideo(genotype, args.T, frames=args.frames)(TF.to_dtype(image, scale=True))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    clip_strip(clip, zoom=args.zoom).save(args.output, format="PNG")
    print(f"wrote {args.output}: {args.T} frames of '{genotype}' on {args.image.name} "
          f"({image.shape[-1]}x{image.shape[-2]})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m img2vid`` and the ``img2vid`` script. Returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _demo(args) if args.command == "demo" else _preview(args)
    except (ValueError, ImportError, OSError) as error:
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")
    return 2  # pragma: no cover - parser.exit raises


if __name__ == "__main__":
    sys.exit(main())
