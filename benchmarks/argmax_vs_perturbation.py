"""Does arg-max of τ drift to identity (the paper's Sec. 3.1 argument) in a real small search?

Searches the default affine stem (10 edges x 5 ops, T=5) in front of a tiny temporal-shift CNN on
scikit-learn's digits (16 x 16, no download), for a few seeds. Every few epochs it records, per edge,
the softmax weight of ``identity`` and whether identity is the arg-max. At the end it derives the
genotype both ways (arg-max of τ, and perturbation with ``derive_genotype``) and retrains the tiny
network from scratch with each genotype (and with no motion) to compare test accuracy.

    python benchmarks/argmax_vs_perturbation.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import img2vid as i2v
from img2vid.functional import temporal_shift
from img2vid.search import Architect, derive_genotype, network_parameters, searchable_stem


class TinyVideoNet(nn.Module):
    """(B, T, C, H, W) -> frame-averaged logits: two conv blocks with a temporal shift between them."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, stride=2)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        T = clip.shape[1]
        x = F.relu(self.bn1(self.conv1(rearrange(clip, "b t c h w -> (b t) c h w"))))
        x = rearrange(temporal_shift(rearrange(x, "(b t) c h w -> b t c h w", t=T)), "b t c h w -> (b t) c h w")
        x = F.relu(self.bn2(self.conv2(x))).mean(dim=(-2, -1))
        return rearrange(self.head(x), "(b t) k -> b t k", t=T).mean(1)


def digits(seed: int):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    n = len(y)
    return (x[: n // 2], y[: n // 2]), (x[n // 2: 3 * n // 4], y[n // 2: 3 * n // 4]), (x[3 * n // 4:], y[3 * n // 4:])


def batches(data, size, generator):
    x, y = data
    order = torch.randperm(len(y), generator=generator)
    for i in range(0, len(y) - size + 1, size):
        idx = order[i: i + size]
        yield x[idx], y[idx]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor) -> None:
    """BatchNorm running statistics recomputed on ``x`` (after a short search they lag far behind the
    weights, and masking an op changes the clip statistics; one-shot NAS recalibrates for both)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for chunk in x.split(128):
        model(chunk)
    for m in norms:
        m.momentum = 0.1


@torch.no_grad()
def accuracy(model: nn.Module, data, calibration: torch.Tensor | None = None) -> float:
    if calibration is not None:
        recalibrate_bn(model, calibration)
    model.eval()
    acc = float((model(data[0]).argmax(1) == data[1]).float().mean()) * 100
    model.train()
    return acc


def train(model: nn.Module, data, epochs: int, lr: float, seed: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for x, y in batches(data, 64, g):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        sched.step()


def run(seed: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(seed)
    train_data, val_data, test_data = digits(seed)
    stem = searchable_stem("affine", 5)
    model = nn.Sequential(stem, TinyVideoNet())
    w_opt = torch.optim.SGD(network_parameters(model), lr=0.05, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(stem.arch_parameters(), lr=args.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
    architect = Architect(model, nn.CrossEntropyLoss(), order=args.order, optimizer=a_opt, network_optimizer=w_opt)
    g = torch.Generator().manual_seed(seed)
    identity = stem.ops.index("identity")
    calibration = train_data[0][:256]
    history = []
    for epoch in range(args.epochs):
        for (x, y), val in zip(batches(train_data, 64, g), batches(val_data, 64, g)):
            architect.step((x, y), val)
            w_opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            w_opt.step()
        w = stem.weights().detach()
        history.append((epoch + 1, float(w[:, identity].mean()), int((w.argmax(1) == identity).sum()),
                        accuracy(model, val_data, calibration)))

    argmax = stem.genotype()
    scores: list[list[float]] = []
    perturbed = derive_genotype(stem, lambda: accuracy(model, val_data, calibration), progress=False, scores=scores)
    results = {"seed": seed, "history": history, "argmax": argmax, "perturbation": perturbed,
               "weights": stem.weights().detach()}
    for name, genotype in [("none", i2v.Genotype("identity")), ("argmax", argmax), ("perturbation", perturbed)]:
        torch.manual_seed(seed)
        net = nn.Sequential(i2v.ImageToVideo(genotype, 5), TinyVideoNet())
        train(net, train_data, args.retrain_epochs, 0.05, seed)
        results[f"test_{name}"] = accuracy(net, test_data, train_data[0][:256])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20, help="search epochs")
    parser.add_argument("--retrain-epochs", type=int, default=15)
    parser.add_argument("--arch-lr", type=float, default=6e-3)
    parser.add_argument("--order", choices=["first", "second"], default="first")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"threads={torch.get_num_threads()} order={args.order} arch_lr={args.arch_lr} epochs={args.epochs}")
    for seed in args.seeds:
        start = time.time()
        r = run(seed, args)
        print(f"\nseed {seed} ({time.time() - start:.0f} s)")
        print("  epoch  mean w(identity)  edges with arg-max identity  val acc")
        for epoch, w_id, n_id, acc in r["history"]:
            if epoch % 5 == 0 or epoch == 1:
                print(f"  {epoch:5d}  {w_id:16.3f}  {n_id:14d} / 10             {acc:5.1f}")
        print("  final softmax(τ) per edge (identity, translate_x, translate_y, scale, rotate):")
        for k, row in enumerate(r["weights"]):
            print(f"    edge {k}: " + " ".join(f"{v:.3f}" for v in row))
        for key in ("argmax", "perturbation"):
            g = r[key]
            print(f"  {key:12s}: {sum(n == 'identity' for n, _ in g)} identities  {g}")
        print(f"  retrained test acc: no motion {r['test_none']:.1f} %, arg-max {r['test_argmax']:.1f} %, "
              f"perturbation {r['test_perturbation']:.1f} %")


if __name__ == "__main__":
    main()
