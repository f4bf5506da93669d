"""CIFAR-10 / CIFAR-100 as in the paper's Table 4: a ResNet that sees each image as a clip.

Arms (the columns of the paper's Table 5):

    baseline  the plain 2D ResNet on images                                      (Tab. 4/5 "Baseline")
    replica   identity genotype + GSF: T copies of each image, fused in time    (Tab. 5 "Replica")
    augment   the genotype's clip, frames processed independently (no fusion)   (Tab. 5 "Augment")
    das       the genotype's clip + GSF: the paper's method                      (Tab. 4/5 "Ours")

Every arm but the baseline is ``i2v.wrap(resnet, genotype, T=5, fusion=...)``: images in, logits out,
the clip made on the device inside the model's forward. ``--genotype`` takes a string or a JSON file
saved by ``examples/das_search.py``.

From the paper: ResNet-18 (Tab. 4 also has ResNet-50: ``--arch resnet50``); T = 5 ("expanding the image
x5", Sec. 3.2); GSF fusion (best in Tab. 6); a DAS genotype combining translation, rotation and zoom
(Fig. 1b, the choice for CIFAR-10 and -100); torchvision's ResNet-18 layout, whose parameter count,
11.18 M -> 11.20 M with GSF for 10 classes, is Tab. 6's (a CIFAR stem would give 11.17 M). Its R-18
results: CIFAR-10 94.12 -> 95.12 %, CIFAR-100 71.20 -> 73.10 % (baseline -> ours); on CIFAR-10 augment
94.23 % and replica 90.11 % (Tab. 5).

Our choices (the main paper defers its implementation details to the supplementary material, which we do
not have): the genotype's magnitudes (translate_x:0.05,rotate:5,scale:1.05); the recipe, the common
CIFAR ResNet one: 200 epochs, batch 128, SGD with Nesterov momentum 0.9, lr 0.1 (scaled linearly for
other batch sizes), weight decay 5e-4, cosine decay per step; augmentations: random 32 px crop with 4 px
zero padding, horizontal flip, per-channel normalisation. ``--stem cifar`` (a 3x3 stride-1 first conv,
no max-pool: the usual stem for 32 px images, 16x the activations) is offered for comparison.

On cuda: mixed precision (bf16 where supported, else fp16 with a grad scaler; ``--no-amp`` turns it off),
``--channels-last``, ``--workers`` DataLoader processes, cuDNN autotuning. ``--seed`` fixes the
initialisation and the data order (cuDNN kernels may still differ in the last bits).

    python examples/cifar.py --dataset cifar10 --download --device cuda --arm das       # the paper's setting
    python examples/cifar.py --dataset cifar100 --device cuda --arm baseline --workers 8 --channels-last
    python examples/cifar.py --quick                                                    # CPU smoke test, < 30 s
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, models
from torchvision.transforms import v2

import img2vid as i2v

try:
    from tqdm import tqdm
except ImportError:  # tqdm is optional
    def tqdm(iterable, **kwargs):
        return iterable

# Per-channel mean and std of the training images.
STATS = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
         "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
         "fake": ((0.5, 0.5, 0.5), (0.29, 0.29, 0.29))}
CLASSES = {"cifar10": 10, "cifar100": 100, "fake": 10}


def load_cifar(args: argparse.Namespace) -> tuple[Dataset, Dataset]:
    mean, std = STATS[args.dataset]
    normalize = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    train_tf = v2.Compose([v2.ToImage(), v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), *normalize])
    test_tf = v2.Compose([v2.ToImage(), *normalize])
    if args.dataset == "fake":
        size = args.limit or 1024
        train = datasets.FakeData(size, (3, 32, 32), CLASSES["fake"], train_tf)
        test = datasets.FakeData(max(size // 4, 1), (3, 32, 32), CLASSES["fake"], test_tf, random_offset=size)
        return train, test
    cifar = datasets.CIFAR10 if args.dataset == "cifar10" else datasets.CIFAR100
    try:
        train = cifar(args.data_dir, train=True, transform=train_tf, download=args.download)
        test = cifar(args.data_dir, train=False, transform=test_tf, download=args.download)
    except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
        raise SystemExit(f"error: no {args.dataset} under {args.data_dir!r} ({error}); "
                         "pass --download to fetch it") from None
    if args.limit:  # a seeded random subset of the training images
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
        train = Subset(train, order[:args.limit].tolist())
    return train, test


def build_model(args: argparse.Namespace, classes: int) -> nn.Module:
    model = models.get_model(args.arch, weights=None, num_classes=classes)
    if args.stem == "cifar":  # 32 px images keep their resolution through the stem
        model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, padding=1, bias=False)
        model.maxpool = nn.Identity()
    if args.arm == "baseline":
        return model
    genotype = i2v.Genotype.parse("identity") if args.arm == "replica" else args.genotype
    return i2v.wrap(model, genotype, T=args.T, fusion="none" if args.arm == "augment" else args.fusion)


def train_one_epoch(model, loader, optimizer, scheduler, scaler, autocast, device, memory_format, progress: bool):
    model.train()
    total_loss = torch.zeros((), device=device)  # summed on the device: no sync per step
    correct = torch.zeros((), device=device, dtype=torch.long)
    for images, labels in tqdm(loader, leave=False, disable=None if progress else True):
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        with autocast():
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total_loss += loss.detach() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
    seen = len(loader) * loader.batch_size if loader.drop_last else len(loader.dataset)
    return total_loss.item() / seen, 100.0 * correct.item() / seen


@torch.no_grad()
def test_accuracy(model, loader, autocast, device, memory_format) -> float:
    model.eval()
    correct = torch.zeros((), device=device, dtype=torch.long)
    for images, labels in loader:
        with autocast():
            logits = model(images.to(device, non_blocking=True, memory_format=memory_format))
        correct += (logits.argmax(1) == labels.to(device, non_blocking=True)).sum()
    return 100.0 * correct.item() / len(loader.dataset)


def genotype_arg(text: str) -> i2v.Genotype:
    """A genotype string, or a JSON file written by ``Genotype.to_json`` (e.g. by das_search.py)."""
    try:
        if text.endswith(".json"):
            return i2v.Genotype.from_json(Path(text).read_text())
        return i2v.Genotype.parse(text)
    except (OSError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["cifar10", "cifar100", "fake"], default="cifar10")
    parser.add_argument("--data-dir", default="./data", help="where CIFAR lives (or goes, with --download)")
    parser.add_argument("--download", action="store_true", help="download CIFAR into --data-dir if missing")
    parser.add_argument("--limit", type=positive_int, help="use N training images (FakeData: N train, N/4 test)")
    parser.add_argument("--arm", choices=["baseline", "replica", "augment", "das"], default="das")
    parser.add_argument("--genotype", type=genotype_arg, default="translate_x:0.05,rotate:5,scale:1.05",
                        help="the das/augment arms' motion: a string or a .json file (default: ours, see above)")
    parser.add_argument("--T", type=positive_int, default=5, help="frames per clip (paper: 5)")
    parser.add_argument("--fusion", choices=["gsf", "tsm"], default="gsf", help="replica/das fusion (paper: gsf)")
    parser.add_argument("--arch", choices=["resnet18", "resnet34", "resnet50", "resnet101"], default="resnet18")
    parser.add_argument("--stem", choices=["imagenet", "cifar"], default="imagenet",
                        help="torchvision's 7x7/2 conv + max-pool (paper's parameter count) or a 3x3/1 conv")
    parser.add_argument("--epochs", type=positive_int, default=200)
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--lr", type=float, default=0.1, help="for batch 128, scaled linearly with --batch-size")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-amp", action="store_true", help="no mixed precision on cuda (bf16, else fp16)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format (tensor cores)")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader worker processes")
    parser.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--out", help="save {'model', 'args', 'test_acc'} here after training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    parser.add_argument("--quick", action="store_true",
                        help="smallest configuration (FakeData, 48 train / 12 test images, 1 epoch, batch 8, "
                             "1 thread, no workers): < 30 s on a 2-core CPU")
    args = parser.parse_args()
    if args.quick:
        args.dataset, args.limit, args.epochs, args.batch_size, args.workers = "fake", 48, 1, 8, 0
        args.no_progress, args.threads = True, args.threads or 1  # tiny batches: one thread is faster
    if args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device: {error}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True  # fixed 32 px inputs: pick the fastest kernels once
    train, test = load_cifar(args)
    classes = CLASSES[args.dataset]
    model = build_model(args, classes)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    genotype = {"baseline": "-", "replica": "identity"}.get(args.arm, str(args.genotype))
    print(f"{args.dataset}: {len(train)} train / {len(test)} test images; {args.arch} ({args.stem} stem), "
          f"arm {args.arm} (genotype {genotype}, T {args.T if args.arm != 'baseline' else 1}), "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; device {device}")

    amp_dtype = None
    if device.type == "cuda" and not args.no_amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()

    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)  # bf16 needs no scaling
    loader_options = dict(num_workers=args.workers, pin_memory=device.type == "cuda",
                          persistent_workers=args.workers > 0)
    loader = DataLoader(train, args.batch_size, shuffle=True, drop_last=len(train) > args.batch_size,
                        generator=torch.Generator().manual_seed(args.seed), **loader_options)
    test_loader = DataLoader(test, 2 * args.batch_size, **loader_options)

    lr = args.lr * args.batch_size / 128  # the linear scaling rule (Goyal et al., 2017)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=args.momentum, nesterov=True,
                                weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(loader))
    start, best = time.time(), (0.0, 0)
    for epoch in range(1, args.epochs + 1):
        tic = time.time()
        loss, train_acc = train_one_epoch(model, loader, optimizer, scheduler, scaler, autocast, device,
                                          memory_format, not args.no_progress)
        test_acc = test_accuracy(model, test_loader, autocast, device, memory_format)
        best = max(best, (test_acc, epoch))
        print(f"epoch {epoch}/{args.epochs}: train loss {loss:.3f}, train acc {train_acc:.1f} %, "
              f"test acc {test_acc:.2f} % ({time.time() - tic:.0f} s)")
    print(f"final test acc {test_acc:.2f} % (best {best[0]:.2f} % at epoch {best[1]}); "
          f"{args.dataset} {args.arch} {args.arm}, {time.time() - start:.0f} s")
    if args.out:
        torch.save({"model": model.state_dict(), "args": {**vars(args), "genotype": str(args.genotype)},
                    "test_acc": test_acc}, args.out)
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
