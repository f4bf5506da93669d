"""Command line: ``python -m img2vid demo ...`` and ``python -m img2vid preview ...``.

* ``demo`` runs the benchmark (:mod:`img2vid.experiments`): the paper's ablation beside torchvision's
  augmentations, with paired intervals over seeds.
* ``preview`` shows what a genotype does to any image: a PNG strip of the clip's frames.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

# The demo's names, spelt out here so that ``preview`` and ``--help`` do not import the benchmark
# (``img2vid.experiments``); tests/test_cli.py checks that they are the benchmark's own.
DATASETS = ("digits", "fashion-mnist", "imagefolder")
NETWORKS = ("small", "resnet18")
MAGNITUDES = ("default", "authors", "learn")
ARMS = ("baseline", "augment", "replica", "das", "das-tsm", "autoaugment", "randaugment", "trivialaugment", "random",
        "fixed", "baseline-xT", "dilated", "large-kernel")


def _program() -> str:
    """The name the user typed: ``img2vid`` for the console script, else ``python -m img2vid``."""
    return "img2vid" if Path(sys.argv[0]).stem == "img2vid" else "python -m img2vid"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_program(),
        description='img2vid: "Your Image is My Video" (Casarin et al., CVPR 2024).',
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,preview}")

    demo = commands.add_parser(
        "demo",
        help="the paper's ablation beside torchvision's augmentations, on digits, Fashion-MNIST or your images",
        description="DAS search on the training/validation split, then every arm (baseline, augment, replica, das, "
        "das-tsm, autoaugment, randaugment, trivialaugment, random, fixed, baseline-xT, dilated, large-kernel) on "
        "every seed, then the test "
        "split once; prints the table with paired 95 percent intervals and writes JSON, CSV, a chart and pictures into "
        "--out. Default: cluttered scikit-learn digits (offline; 17 to 30 minutes on 2 CPU cores, depending on the "
        "CPU; --quick takes a few minutes).",
    )
    demo.add_argument("--dataset", choices=list(DATASETS), default="digits",
                      help="digits (default, offline), fashion-mnist, or imagefolder (--root DIR with train/, test/)")
    demo.add_argument("--root", default=None,
                      help="fashion-mnist: folder of the four IDX files (else Debian's "
                      "/usr/share/datasets/fashion-mnist, else download); imagefolder: DIR holding train/ and test/")
    demo.add_argument("--per-class", type=int, default=None,
                      help="training images per class; as many again for validation (default: the dataset's preset)")
    demo.add_argument("--val-per-class", type=int, default=None,
                      help="validation images per class (default: --per-class); e.g. full Fashion-MNIST on a GPU: "
                      "--per-class 5400 --val-per-class 600")
    demo.add_argument("--seeds", type=int, default=None, help="training seeds (default: 5; quick: 2)")
    demo.add_argument("--search-seeds", type=int, default=None, help="independent DAS searches (default: 1)")
    demo.add_argument("--arms", default=None, help=f"comma-separated arms (default: all): {','.join(ARMS)}")
    demo.add_argument("--network", choices=list(NETWORKS), default=None,
                      help="small (default, CPU) or resnet18 (torchvision's, 3x3 stem, no max-pool; for a GPU)")
    demo.add_argument("--depth", type=int, choices=[1, 2, 3, 4], default=None,
                      help="residual blocks of the small network (default: 2; receptive field 7, 13, 25, 49 px)")
    demo.add_argument("--workers", type=int, default=None,
                      help="worker processes running training runs side by side, sharing the torch threads (default "
                      "0: one per CPU core at one thread each on a CPU, 1 on a GPU; 1: every run in this process)")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs of every arm (default: the preset's)")
    demo.add_argument("--batch-size", type=int, default=None, help="training batch size (default: the preset's)")
    demo.add_argument("--lr", type=float, default=None, help="SGD learning rate (default: the preset's)")
    demo.add_argument("--warmup-epochs", type=int, default=None,
                      help="search: epochs training the weights alone before the motion moves (default: the preset's)")
    demo.add_argument("--search-epochs", type=int, default=None,
                      help="search: bi-level epochs after the warm-up (default: the preset's)")
    demo.add_argument("--fine-tune-epochs", type=int, default=None,
                      help="search: weight epochs between two edge decisions (default: 5; 0: none)")
    demo.add_argument("--image-size", type=int, default=None, help="imagefolder: images resized to this (default: 32)")
    demo.add_argument("--magnitudes", choices=list(MAGNITUDES), default=None,
                      help="the search's magnitudes: default (ours), authors (larger) or learn")
    demo.add_argument("--fixed", default=None, help='the fixed arm\'s motion (default: "translate_x:0.05,rotate:5")')
    demo.add_argument("--quick", action="store_true",
                      help="smallest configuration: every step runs, figures meaningless (a few minutes on CPU)")
    demo.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    demo.add_argument("--out", default="img2vid-demo", type=Path,
                      help="output folder: new, empty or a previous run's, replaced whole once the run completes and "
                      "left as it was if the run stops early (default: img2vid-demo)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")

    preview = commands.add_parser(
        "preview",
        help="see a genotype's clip on an image file (a strip of the frames)",
        description="Turn an image into a clip with ImageToVideo and save its frames side by side as a picture "
        "(PNG, JPEG, WebP, ... as the suffix of -o says).",
    )
    preview.add_argument("--genotype", required=True, help='the motion, e.g. "translate_x:0.1,rotate:5"')
    preview.add_argument("--image", required=True, type=Path, help="any image file PIL can read")
    preview.add_argument("-o", "--output", required=True, type=Path,
                         help="the picture to write; its suffix picks the format (.png, .jpg, .webp, ...)")
    preview.add_argument("--T", type=int, default=5, help="frames per clip (default: 5)")
    preview.add_argument("--frames", choices=["centered", "forward"], default="centered",
                         help="frame powers: centered (middle frame = image) or forward (Eq. 7)")
    preview.add_argument("--size", type=int, default=None,
                         help="resize the image's shorter side to this many pixels first")
    preview.add_argument("--zoom", type=int, default=1, help="enlarge each pixel this many times (default: 1)")
    return parser


def _demo(args: argparse.Namespace) -> int:
    from .experiments import preset, run_benchmark

    for name in ("per_class", "val_per_class", "seeds", "search_seeds", "epochs", "image_size", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("warmup_epochs", "search_epochs", "fine_tune_epochs"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    arms = None if args.arms is None else tuple(a.strip() for a in args.arms.split(",") if a.strip())
    config = preset(args.dataset, quick=args.quick, root=args.root, per_class=args.per_class,
                    val_per_class=args.val_per_class, seeds=args.seeds,
                    search_seeds=args.search_seeds, arms=arms, network=args.network, epochs=args.epochs,
                    image_size=args.image_size, magnitudes=args.magnitudes, fixed=args.fixed, depth=args.depth,
                    workers=args.workers, batch_size=args.batch_size, lr=args.lr, warmup_epochs=args.warmup_epochs,
                    search_epochs=args.search_epochs, fine_tune_epochs=args.fine_tune_epochs)
    with _sigterm_as_ctrl_c():
        run_benchmark(config, args.out, device=args.device, progress=not args.no_progress)
    return 0


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (``kill``, ``timeout``, a batch scheduler's time limit) stops the demo as Ctrl-C does, so
    it too leaves ``--out`` as it was. Python lets only the main thread set a handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _preview(args: argparse.Namespace) -> int:
    import PIL.Image
    from torchvision.transforms.v2 import functional as TF

    from .genotype import Genotype
    from .pictures import clip_strip
    from .video import ImageToVideo

    genotype = Genotype.parse(args.genotype)
    picture_format = _picture_format(args.output)
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
    clip_strip(clip, zoom=args.zoom).save(args.output, format=picture_format)
    print(f"wrote {args.output}: {args.T} frames of '{genotype}' on {args.image.name} "
          f"({image.shape[-1]}x{image.shape[-2]})")
    return 0


def _picture_format(path: Path) -> str:
    """The PIL format that writes files with ``path``'s suffix (``.jpg`` -> ``JPEG``); else a ``ValueError``."""
    import PIL.Image

    found = PIL.Image.registered_extensions().get(path.suffix.lower())
    if found is None or found not in PIL.Image.SAVE:
        raise ValueError(f"-o {str(path)!r}: PIL writes no picture format with the suffix {path.suffix!r}; "
                         "use e.g. .png, .jpg or .webp")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m img2vid`` and the ``img2vid`` script. Returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _demo(args) if args.command == "demo" else _preview(args)
    except (ValueError, ImportError, OSError) as error:  # FileNotFoundError is an OSError
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")
    except KeyboardInterrupt:  # Ctrl-C: the demo has already said what it left behind
        parser.exit(130, f"{parser.prog} {args.command}: interrupted\n")
    return 2  # pragma: no cover - parser.exit raises


if __name__ == "__main__":
    sys.exit(main())
