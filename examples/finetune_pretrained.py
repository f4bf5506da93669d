"""Fine-tune a pretrained torchvision ResNet as a video network: one ``img2vid.wrap`` call in your own loop.

Everything here is an ordinary fine-tuning script (torchvision v2 transforms, a DataLoader, an
optimizer, an accuracy per epoch). The whole integration is one line,

    model = i2v.wrap(model, genotype, T=5, fusion="gsf")

after which the model sees each image as a clip of T frames (one motion repeated, the paper's Sec. 3.2)
through a temporal fusion module in every residual block. It still takes (B, C, H, W) images and returns
(B, K) logits, ``model.fc`` is still its head, and the 2D checkpoint loads into it with ``strict=False``,
missing only the fusion parameters (the script checks this). GSF starts as the identity, so at step 0
the wrapped model is the pretrained one, averaged over the frames.

Recipe (usual fine-tuning practice, our choices, not the paper's): a new head for the dataset's class
count; the head and the new fusion parameters train at ``--lr``, the pretrained backbone at
``--lr x --backbone-lr-scale`` (0.1; 1.0 without pretrained weights); AdamW, cosine schedule, inputs
normalised with ImageNet's mean and std.

Weights: ``weights="DEFAULT"`` (downloaded once by torchvision); ``--no-pretrained`` builds the model
with ``weights=None`` (offline, CI), and so does a failed download, with a message; ``--checkpoint FILE``
starts from your own 2D ``state_dict`` of the same architecture (a head of another class count is left
out).

Data: scikit-learn's digits by default (shipped with scikit-learn, no download; 8 x 8 grey scans,
resized, 3 channels), ``--dataset fake`` (torchvision ``FakeData``) or ``--dataset folder --data-dir DIR``
(torchvision ``ImageFolder``: one folder per class). A seeded 80 / 20 train / test split.

    python examples/finetune_pretrained.py                                  # digits, 5 epochs: ~2 min each on CPU
    python examples/finetune_pretrained.py --quick                          # smallest configuration, CI
    python examples/finetune_pretrained.py --arch resnet50 --dataset folder --data-dir ~/data/pets --size 224
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision import datasets, models
from torchvision.transforms import v2

import img2vid as i2v

try:
    from tqdm import tqdm
except ImportError:  # tqdm is optional
    def tqdm(iterable, **kwargs):
        return iterable

ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2"]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------- data


def load_dataset(args: argparse.Namespace) -> tuple[Dataset, int]:
    """Untransformed (image, label) pairs, images as uint8 tensors or PIL images, and the class count."""
    if args.dataset == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        grey = torch.tensor(bunch.images * (255 / 16)).round().to(torch.uint8).unsqueeze(1)  # (N, 1, 8, 8)
        return TensorDataset(grey.expand(-1, 3, -1, -1), torch.tensor(bunch.target)), 10
    if args.dataset == "fake":
        return datasets.FakeData(args.limit or 500, (3, args.size, args.size), num_classes=10), 10
    ds = datasets.ImageFolder(args.data_dir)
    return ds, len(ds.classes)


class Split(Dataset):
    """The images ``indices`` of ``base``, each passed through ``transform``."""

    def __init__(self, base: Dataset, indices: list[int], transform: v2.Transform) -> None:
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.base[self.indices[i]]
        return self.transform(image), int(label)


def transforms(size: int, train: bool, flip: bool) -> v2.Compose:
    if train:
        steps = [v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True)]
        steps += [v2.RandomHorizontalFlip()] if flip else []
    else:
        steps = [v2.Resize((size, size), antialias=True)]
    return v2.Compose([v2.ToImage(), *steps, v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def train_test_split(args: argparse.Namespace) -> tuple[Split, Split, int]:
    base, classes = load_dataset(args)
    order = torch.randperm(len(base), generator=torch.Generator().manual_seed(args.seed)).tolist()
    order = order[:args.limit] if args.limit else order
    n_test = max(1, len(order) // 5)
    flip = args.dataset != "digits"  # a mirrored digit is another symbol
    return (Split(base, order[n_test:], transforms(args.size, True, flip)),
            Split(base, order[:n_test], transforms(args.size, False, flip)), classes)


# ------------------------------------------------------------------------------------------- model


def pretrained_resnet(arch: str, pretrained: bool) -> tuple[nn.Module, bool]:
    """torchvision's ``arch`` with ``weights="DEFAULT"`` (or ``None``); says whether the weights came."""
    if pretrained:
        try:
            return models.get_model(arch, weights="DEFAULT"), True
        except (OSError, RuntimeError) as error:  # no network, proxy, corrupt download ...
            print(f"could not download the {arch} weights ({error}); training from scratch (weights=None)")
    return models.get_model(arch, weights=None), False


def load_2d_checkpoint(model: nn.Module, checkpoint: dict[str, torch.Tensor]) -> None:
    """Load a 2D model's ``state_dict`` into the wrapped model; only fusion parameters may be missing.

    A head of another class count (an ImageNet checkpoint's 1000-way ``fc``) is left out: ours is new.
    """
    own = model.state_dict()
    old_head = [k for k, v in checkpoint.items() if k.startswith("fc.") and k in own and v.shape != own[k].shape]
    try:
        missing, unexpected = model.load_state_dict(
            {k: v for k, v in checkpoint.items() if k not in old_head}, strict=False)
    except RuntimeError as error:  # tensors of another shape: another architecture
        first_lines = "\n".join(str(error).splitlines()[:3])
        raise SystemExit(f"error: the checkpoint does not fit this architecture: {first_lines} ...") from None
    fusion = [k for k in missing if ".fusion." in k]
    not_fusion = [k for k in missing if ".fusion." not in k and k not in old_head]
    if not_fusion or unexpected:
        raise SystemExit(f"error: the checkpoint does not fit this architecture: missing {not_fusion[:5]}, "
                         f"unexpected {unexpected[:5]}")
    note = f"; its old head {old_head} left out" if old_head else ""
    print(f"2D checkpoint loaded into the wrapped model: {len(checkpoint) - len(old_head)} tensors, "
          f"missing only the {len(fusion)} new fusion tensors{note}")


def build_model(args: argparse.Namespace, classes: int) -> tuple[nn.Module, bool]:
    model, pretrained = pretrained_resnet(args.arch, not (args.no_pretrained or args.checkpoint))
    model.fc = nn.Linear(model.fc.in_features, classes)  # a new head for this dataset
    checkpoint_2d = model.state_dict()  # stands for "the 2D checkpoint you already have"
    if args.checkpoint:
        checkpoint_2d, pretrained = torch.load(args.checkpoint, map_location="cpu", weights_only=True), True
    params_2d = sum(p.numel() for p in model.parameters())

    model = i2v.wrap(model, args.genotype, T=args.T, fusion=args.fusion)  # the whole integration

    params = sum(p.numel() for p in model.parameters())
    print(f"wrap({args.arch}, {str(args.genotype)!r}, T={args.T}, fusion={args.fusion!r}): "
          f"{params_2d / 1e6:.2f} M -> {params / 1e6:.2f} M parameters, {len(model.temporal_sites)} fusion sites")
    load_2d_checkpoint(model, checkpoint_2d)
    return model, pretrained


def optimizer_for(model: nn.Module, args: argparse.Namespace, pretrained: bool) -> torch.optim.Optimizer:
    """The new parameters (head, fusion) at ``lr``, the pretrained backbone at ``lr x backbone_lr_scale``."""
    scale = args.backbone_lr_scale if args.backbone_lr_scale is not None else (0.1 if pretrained else 1.0)
    new, backbone = [], []
    for name, p in model.named_parameters():
        (new if name.startswith("fc.") or ".fusion." in name else backbone).append(p)
    return torch.optim.AdamW([{"params": new, "lr": args.lr}, {"params": backbone, "lr": args.lr * scale}],
                             weight_decay=args.weight_decay)


# ------------------------------------------------------------------------------------------- loop


def train_one_epoch(model, loader, optimizer, scheduler, device, progress: bool) -> float:
    model.train()
    total_loss, seen = 0.0, 0
    for images, labels in tqdm(loader, leave=False, disable=None if progress else True):
        images, labels = images.to(device), labels.to(device)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss, seen = total_loss + loss.item() * len(labels), seen + len(labels)
    return total_loss / seen


@torch.no_grad()
def test_accuracy(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    model.eval()
    correct = sum(int((model(x.to(device)).argmax(1) == y.to(device)).sum()) for x, y in loader)
    return 100.0 * correct / len(loader.dataset)


# ------------------------------------------------------------------------------------------- CLI


def genotype_arg(text: str) -> i2v.Genotype:
    try:
        return i2v.Genotype.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=ARCHS, default="resnet18", help="a torchvision ResNet")
    parser.add_argument("--no-pretrained", action="store_true", help="weights=None instead of 'DEFAULT' (offline)")
    parser.add_argument("--checkpoint", help="start from this 2D state_dict (torch.save(model.state_dict(), FILE))")
    parser.add_argument("--genotype", type=genotype_arg, default="translate_x:0.05,rotate:5", help="the motion")
    parser.add_argument("--T", type=positive_int, default=5, help="frames per clip")
    parser.add_argument("--fusion", choices=["gsf", "tsm", "none"], default="gsf")
    parser.add_argument("--dataset", choices=["digits", "fake", "folder"], default="digits")
    parser.add_argument("--data-dir", help="root of an ImageFolder (with --dataset folder)")
    parser.add_argument("--size", type=positive_int, default=64, help="images are resized to size x size")
    parser.add_argument("--limit", type=positive_int, help="use only N images (seeded random choice)")
    parser.add_argument("--epochs", type=positive_int, default=5)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the head and fusion parameters")
    parser.add_argument("--backbone-lr-scale", type=float,
                        help="backbone lr = lr x this (default 0.1 with pretrained weights, else 1.0)")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--out", help="save the fine-tuned wrapped model's state_dict here")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    parser.add_argument("--quick", action="store_true",
                        help="smallest configuration (FakeData, 40 images, 32 px, T=3, 1 epoch, 1 thread, no download)")
    args = parser.parse_args()
    if args.quick:
        args.dataset, args.limit, args.size, args.T, args.epochs, args.batch_size = "fake", 40, 32, 3, 1, 8
        args.no_pretrained, args.no_progress = True, True
        args.threads = args.threads or 1  # tiny batches: a second thread costs more than it gives
    if args.dataset == "folder" and not args.data_dir:
        parser.error("--dataset folder needs --data-dir")
    if args.data_dir and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir!r} is not a directory")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint!r} is not a file")

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    start = time.time()
    train, test, classes = train_test_split(args)
    print(f"{args.dataset}: {len(train)} train / {len(test)} test images, {classes} classes, {args.size} px; "
          f"device {device}")
    model, pretrained = build_model(args, classes)
    model.to(device)

    loader = DataLoader(train, args.batch_size, shuffle=True, drop_last=len(train) > args.batch_size,
                        num_workers=args.workers, generator=torch.Generator().manual_seed(args.seed))
    test_loader = DataLoader(test, 2 * args.batch_size, num_workers=args.workers)
    optimizer = optimizer_for(model, args, pretrained)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(loader))
    if pretrained:
        print(f"epoch 0/{args.epochs}: test acc {test_accuracy(model, test_loader, device):.1f} % (before fine-tuning)")
    for epoch in range(1, args.epochs + 1):
        tic = time.time()
        loss = train_one_epoch(model, loader, optimizer, scheduler, device, not args.no_progress)
        accuracy = test_accuracy(model, test_loader, device)
        print(f"epoch {epoch}/{args.epochs}: train loss {loss:.3f}, test acc {accuracy:.1f} % "
              f"({time.time() - tic:.0f} s)")
    if args.out:
        torch.save(model.state_dict(), args.out)
        print(f"saved {args.out}: load it into i2v.wrap({args.arch}(num_classes={classes}), "
              f"{str(args.genotype)!r}, T={args.T}, fusion={args.fusion!r})")
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
