"""DAS end to end: search the motion, select it by perturbation, save it, retrain with it.

1. **Search** (the paper's Sec. 3.1): ``searchable_stem`` -> temporalized ResNet-18. Network weights
   ``w`` train on the train split, the stem's ``τ`` on the validation split (``Architect``, Eq. 2).
2. **Select**: ``derive_genotype`` masks each op of each edge in turn and keeps the one whose removal
   lowers validation accuracy most. The naive arg-max of ``τ`` is printed next to it.
3. **Save** the genotype as JSON (``Genotype.to_json``).
4. **Retrain** a fresh ResNet-18 with ``img2vid.wrap(model, genotype)`` and report test accuracy.

Data: scikit-learn's digits by default (shipped with scikit-learn, no download; grey 8 x 8 scans,
enlarged and repeated to 3 channels), ``--dataset fake`` (torchvision ``FakeData``, a smoke test) or
``--dataset folder --data-dir DIR`` (torchvision ``ImageFolder``: your own images, one folder per class).

    python examples/das_search.py                       # digits, CPU: about 10 minutes on 2 cores
    python examples/das_search.py --quick               # smallest configuration, < 60 s (CI)
    python examples/das_search.py --device cuda --dataset folder --data-dir ~/data/pets --size 64
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, random_split
from torchvision.models import resnet18

import img2vid as i2v
from img2vid.search import Architect, derive_genotype, network_parameters, searchable_stem
from img2vid.temporalize import temporalize
from img2vid.wrap import wrap


def digits(size: int) -> tuple[Dataset, int]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1).expand(-1, 3, -1, -1)
    return TensorDataset(x.contiguous(), torch.tensor(data.target)), 10


def fake(size: int) -> tuple[Dataset, int]:
    from torchvision import datasets, transforms

    return datasets.FakeData(600, (3, size, size), 10, transform=transforms.ToTensor()), 10


def folder(size: int, root: str) -> tuple[Dataset, int]:
    from torchvision import datasets, transforms

    ds = datasets.ImageFolder(root, transforms.Compose([
        transforms.Resize((size, size)), transforms.Lambda(lambda im: im.convert("RGB")), transforms.ToTensor()]))
    return ds, len(ds.classes)


def splits(ds: Dataset, limit: int | None, seed: int) -> tuple[Dataset, Dataset, Dataset]:
    """Train / validation / test = 50 / 25 / 25 %; DARTS searches on train (w) and validation (τ)."""
    n = len(ds)  # type: ignore[arg-type]
    if limit:
        ds, n = Subset(ds, list(range(min(limit, n)))), min(limit, n)
    sizes = [n // 2, n // 4, n - n // 2 - n // 4]
    train, val, test = random_split(ds, sizes, generator=torch.Generator().manual_seed(seed))
    return train, val, test


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: DataLoader, device: torch.device, batches: int = 2) -> None:
    """Recompute BatchNorm running statistics as plain averages over a few training batches.

    After a short search the running averages lag far behind the weights (eval accuracy near chance
    while train-mode accuracy is high), and masking an op changes the clip statistics the network
    sees; one-shot NAS (e.g. SPOS) recalibrates BN per evaluated configuration for the same reason.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for _, (x, _) in zip(range(batches), loader):
        model(x.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


@torch.no_grad()
def accuracy(model: nn.Module, loader: DataLoader, device: torch.device,
             calibration: DataLoader | None = None, batches: int = 2) -> tuple[float, float]:
    """Accuracy (%) and mean cross-entropy (after BN recalibration on ``calibration`` if given)."""
    if calibration is not None:
        recalibrate_bn(model, calibration, device, batches)
    model.eval()
    correct = total = 0
    loss = 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        correct += int((logits.argmax(1) == y).sum())
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        total += len(y)
    model.train()
    return 100.0 * correct / total, loss / total


def search(args: argparse.Namespace, train: Dataset, val: Dataset, classes: int, device: torch.device):
    stem = searchable_stem(args.space, args.T, nodes=args.nodes)
    model = nn.Sequential(stem, temporalize(resnet18(num_classes=classes))).to(device)
    loss_fn = nn.CrossEntropyLoss()
    w_opt = torch.optim.SGD(network_parameters(model), lr=args.lr, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(stem.arch_parameters(), lr=args.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
    architect = Architect(model, loss_fn, order=args.order, optimizer=a_opt, network_optimizer=w_opt)
    train_loader = DataLoader(train, args.batch_size, shuffle=True, drop_last=True)
    val_loader = DataLoader(val, args.batch_size, shuffle=True, drop_last=True)
    for epoch in range(args.epochs):
        start = time.time()
        for (x, y), (xv, yv) in zip(train_loader, val_loader):
            x, y, xv, yv = x.to(device), y.to(device), xv.to(device), yv.to(device)
            architect.step((x, y), (xv, yv))  # τ on validation data (upper level of Eq. 2)
            w_opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()  # w on training data (lower level)
            w_opt.step()
        acc, _ = accuracy(model, DataLoader(val, 256), device, train_loader)
        print(f"search epoch {epoch + 1}/{args.epochs}: val acc {acc:.1f} %  ({time.time() - start:.0f} s)")
    return model, stem, w_opt, train_loader


def selection(args, model, stem, w_opt, train_loader, val, device) -> i2v.Genotype:
    eval_loader = DataLoader(val, 256)
    calibration = DataLoader(train_loader.dataset, args.batch_size, shuffle=True,
                             generator=torch.Generator().manual_seed(args.seed))

    def evaluate() -> float:
        calibration.generator.manual_seed(args.seed)  # the same batches for every masked op
        acc, loss = accuracy(model, eval_loader, device, calibration, args.calibration_batches)
        return acc - 1e-2 * loss  # accuracy, ties broken by the loss (never by the op's position)

    def fine_tune(edge: int) -> None:  # darts-pt: train w a little with the decided edges fixed
        loss_fn = nn.CrossEntropyLoss()
        for _, (x, y) in zip(range(args.tune_steps), train_loader):
            w_opt.zero_grad(set_to_none=True)
            loss_fn(model(x.to(device)), y.to(device)).backward()
            w_opt.step()

    w = stem.weights().detach().cpu()
    print("softmax(τ) per edge, columns", list(stem.ops))
    for k, (i, j) in enumerate(stem.edges):
        print(f"  edge {k} ({i}->{j}): " + " ".join(f"{v:.3f}" for v in w[k]))
    argmax = stem.genotype()
    genotype = derive_genotype(stem, evaluate, progress=not args.no_progress,
                               fine_tune=fine_tune if args.tune_steps else None)
    print(f"arg-max of τ:           {argmax}   ({sum(n == 'identity' for n, _ in argmax)} identities)")
    print(f"perturbation selection: {genotype}   ({sum(n == 'identity' for n, _ in genotype)} identities)")
    return genotype


def retrain(args, genotype, train, test, classes, device) -> float:
    model = wrap(resnet18(num_classes=classes), genotype, args.T).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(train, args.batch_size, shuffle=True, drop_last=True)
    for _ in range(args.retrain_epochs):
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x.to(device)), y.to(device)).backward()
            opt.step()
    return accuracy(model, DataLoader(test, 256), device, loader)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["digits", "fake", "folder"], default="digits")
    parser.add_argument("--data-dir", help="root of an ImageFolder (with --dataset folder)")
    parser.add_argument("--size", type=int, default=16, help="image side in pixels")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--space", default="affine", help="'affine', 'autoaugment' or comma-separated op names")
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--order", choices=["first", "second"], default="first")
    parser.add_argument("--epochs", type=int, default=5, help="search epochs")
    parser.add_argument("--retrain-epochs", type=int, default=5)
    parser.add_argument("--tune-steps", type=int, default=4, help="training steps between edges (darts-pt)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--calibration-batches", type=int, default=2,
                        help="training batches that re-estimate BatchNorm statistics before each evaluation")
    parser.add_argument("--lr", type=float, default=0.05, help="network learning rate")
    parser.add_argument("--arch-lr", type=float, default=6e-3,
                        help="τ learning rate (DARTS uses 3e-4 over ~25k steps; this search is short)")
    parser.add_argument("--compare-argmax", action="store_true", help="also retrain with the arg-max genotype")
    parser.add_argument("--out", default="das_genotype.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="smallest configuration (3 edges, T=3, 128 images, 1 epoch each): < 60 s on CPU")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.nodes, args.T, args.epochs, args.retrain_epochs = 128, 2, 3, 1, 1
        args.batch_size, args.tune_steps, args.no_progress, args.calibration_batches = 16, 0, True, 1
    if "," in args.space:
        args.space = [name.strip() for name in args.space.split(",")]
    if args.dataset == "folder" and not args.data_dir:
        parser.error("--dataset folder needs --data-dir")

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    start = time.time()
    if args.dataset == "digits":
        ds, classes = digits(args.size)
    elif args.dataset == "fake":
        ds, classes = fake(args.size)
    else:
        ds, classes = folder(args.size, args.data_dir)
    train, val, test = splits(ds, args.limit, args.seed)
    print(f"{args.dataset}: {len(train)} train / {len(val)} val / {len(test)} test, {classes} classes, "
          f"{args.size}x{args.size}; device {device}")

    model, stem, w_opt, train_loader = search(args, train, val, classes, device)
    argmax = stem.genotype()
    genotype = selection(args, model, stem, w_opt, train_loader, val, device)
    Path(args.out).write_text(genotype.to_json())
    print(f"saved {args.out}; ImageToVideo(i2v.Genotype.from_json(open({args.out!r}).read())) uses it")

    test_acc = retrain(args, genotype, train, test, classes, device)
    print(f"retrained with wrap(resnet18, {str(genotype)!r}): test acc {test_acc:.1f} %")
    if args.compare_argmax:
        argmax_acc = retrain(args, argmax, train, test, classes, device)
        print(f"retrained with the arg-max genotype {str(argmax)!r}: test acc {argmax_acc:.1f} %")
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
