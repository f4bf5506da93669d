"""Semantic segmentation with torchvision's DeepLabV3, wrapped by img2vid in one call.

``i2v.wrap(model, genotype, T, fusion="gsf")`` makes a torchvision segmentation model see each image as
a clip (the paper's Sec. 3.2): the image is moved ``T`` times by the genotype's motion, the
GSF-temporalized network segments every frame, each frame's map is warped back onto the input
("undone") and the maps are averaged. The wrapped model takes the same ``(B, 3, H, W)`` batches and
returns the same dict ``{"out": (B, K, H, W), "aux": ...}``, so the training loop below is an ordinary
one: cross-entropy (255 = ignore) plus 0.5 x the auxiliary loss, then pixel accuracy and mean IoU
(from a confusion matrix) on the test split. ``--arm baseline`` trains the plain 2D model instead,
``--arm both`` trains both from the same initialisation and data order (at equal epochs the wrapped
model does ``T`` times the work per image).

Before training, the script checks once that the output lines up with the input: a label map moved
by ``ImageToVideo`` (nearest: labels stay labels) and undone by ``inverse`` comes back, and the
wrapped model at initialisation (GSF starts as the identity) equals the 2D model run on each frame,
its maps undone, then averaged.

Data: by default digit segmentation built from scikit-learn's digits (shipped with scikit-learn, no
download): one to three real 8 x 8 scans, enlarged, pasted at random places on a black canvas; the
label map is the digit's class + 1 on the bounding box of its ink, 0 elsewhere (11 classes). (Boxes,
not the ink itself: these models predict at 1/8 or 1/16 of the input size and upsample, too coarse
for 2-pixel strokes on small canvases.) Training and test canvases use disjoint scans.
``--dataset voc --data-dir DIR`` reads Pascal VOC 2012 from disk (torchvision ``VOCSegmentation``:
DIR holds ``VOCdevkit/VOC2012``; 21 classes; nothing is downloaded).

The defaults (DeepLabV3-ResNet-50, 96 x 96 canvases) are sized for a GPU. On a CPU, LR-ASPP
(torchvision's lightest segmentation model) on 48 x 48 canvases learns in about 2 minutes; DeepLabV3's
atrous rates (12, 24, 36) need larger images than a CPU run affords.

    python examples/segmentation.py --quick               # smallest configuration, < 40 s on CPU (CI)
    python examples/segmentation.py --arch lraspp_mobilenet_v3_large --size 48 --digit-size 16 \\
        --train 256 --test 128 --T 3 --epochs 12 --arm both  # CPU, 2 cores: about 2 minutes
    python examples/segmentation.py --device cuda         # DeepLabV3-ResNet-50, sized for a GPU
    python examples/segmentation.py --device cuda --dataset voc --data-dir ~/data --pretrained --size 320
    python examples/segmentation.py --quick --arch smp_pspnet  # the paper's PSPNet, from smp (ResNet-18)

``--arch smp_pspnet`` (or ``smp_deeplabv3``, ``smp_unet``, ``smp_fpn``) takes the model from
segmentation_models_pytorch (``pip install img2vid[smp]``) with a ResNet-18 encoder; it returns one
map rather than a dict, and ``i2v.wrap`` handles it the same way:
``i2v.wrap(smp.PSPNet("resnet18", encoder_weights=None, classes=K), genotype, T)``.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.models.segmentation as seg
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import tv_tensors
from torchvision.transforms import v2

import img2vid as i2v
from img2vid.experiments.digits import load_digit_images

try:
    from tqdm import tqdm
except ImportError:  # progress bars are optional
    tqdm = None

TORCHVISION_ARCHS = ["deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large", "fcn_resnet50", "lraspp_mobilenet_v3_large"]
SMP_ARCHS = {"smp_pspnet": "PSPNet", "smp_deeplabv3": "DeepLabV3", "smp_unet": "Unet", "smp_fpn": "FPN"}
ARCHS = TORCHVISION_ARCHS + list(SMP_ARCHS)
IGNORE = 255  # VOC's "void" label: borders and unclear pixels


class Segmentation(Dataset):
    """Images ``(N, 3, H, W)`` in [0, 1] and label maps ``(N, 1, H, W)`` through one joint v2 transform."""

    def __init__(self, images: Tensor, masks: Tensor, transform: v2.Transform) -> None:
        self.images, self.masks, self.transform = images, masks, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        # tv_tensors tell the transforms which is which: a Mask is cropped alike, resampled with nearest.
        return self.transform(tv_tensors.Image(self.images[i]), tv_tensors.Mask(self.masks[i]))


def normalize(args: argparse.Namespace) -> list[v2.Transform]:
    """An ImageNet backbone expects ImageNet statistics; from scratch, [0, 1] keeps black = padding = 0."""
    return [v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])] if args.pretrained else []


def digit_canvases(count: int, size: int, scans: np.ndarray, labels: np.ndarray,
                   rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """1-3 non-overlapping digits per black canvas. Shape: ``(count, 3, size, size)``, ``(count, 1, size, size)``."""
    side = scans.shape[-1]
    images = np.zeros((count, size, size), np.float32)
    masks = np.zeros((count, size, size), np.uint8)
    for n in range(count):
        corners: list[tuple[int, int]] = []
        for _ in range(rng.integers(1, 4)):
            for _ in range(20):  # a free place, if there is one
                y, x = (int(v) for v in rng.integers(0, size - side + 1, size=2))
                if all(abs(y - v) >= side or abs(x - u) >= side for v, u in corners):
                    corners.append((y, x))
                    i = rng.integers(len(scans))
                    images[n, y:y + side, x:x + side] = scans[i]
                    rows, cols = np.nonzero(scans[i] >= 0.5)  # the ink's bounding box -> class + 1
                    masks[n, y + rows.min():y + rows.max() + 1, x + cols.min():x + cols.max() + 1] = labels[i] + 1
                    break
    return torch.from_numpy(images)[:, None].expand(-1, 3, -1, -1).contiguous(), torch.from_numpy(masks)[:, None]


def digits(args: argparse.Namespace) -> tuple[Dataset, Dataset, int]:
    scans, labels = load_digit_images()  # (1797, 8, 8) in [0, 1], real scans
    scans = F.interpolate(torch.from_numpy(scans)[:, None], size=(args.digit_size,) * 2, mode="bilinear",
                          align_corners=False).clamp(0, 1)[:, 0].numpy()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(scans))
    test_scans, train_scans = order[:len(order) // 4], order[len(order) // 4:]  # no test scan is trained on
    train = digit_canvases(args.train, args.size, scans[train_scans], labels[train_scans], rng)
    test = digit_canvases(args.test, args.size, scans[test_scans], labels[test_scans], rng)
    # A joint random crop (zero padding = background) moves image and labels together. No flips here:
    # a mirrored digit is not a digit.
    augment = v2.Compose([v2.RandomCrop(args.size, padding=args.size // 8), *normalize(args)])
    return Segmentation(*train, augment), Segmentation(*test, v2.Compose(normalize(args) or [v2.Identity()])), 11


def voc(args: argparse.Namespace) -> tuple[Dataset, Dataset, int]:
    from torchvision.datasets import VOCSegmentation, wrap_dataset_for_transforms_v2

    finish = [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True), *normalize(args)]
    train = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(args.size, scale=(0.25, 1.0), antialias=True),
                        v2.RandomHorizontalFlip(), *finish])
    test = v2.Compose([v2.ToImage(), v2.Resize(args.size, antialias=True), v2.CenterCrop(args.size), *finish])
    try:  # the v2 wrapper returns (image, tv_tensors.Mask), so the transforms treat the mask as labels
        sets = [wrap_dataset_for_transforms_v2(VOCSegmentation(args.data_dir, "2012", split, transforms=t))
                for split, t in (("train", train), ("val", test))]
    except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
        raise SystemExit(f"error: no Pascal VOC 2012 under {args.data_dir!r} (expected VOCdevkit/VOC2012): "
                         f"{error}") from None
    return (*(Subset(s, range(min(args.limit, len(s)))) if args.limit else s for s in sets), 21)


def build(arch: str, classes: int, pretrained: bool) -> nn.Module:
    """A torchvision (or smp) segmentation model, untrained, or with an ImageNet backbone if ``pretrained``."""
    if arch in SMP_ARCHS:
        try:
            import segmentation_models_pytorch as smp
        except ImportError:
            raise SystemExit(f"error: --arch {arch} needs segmentation_models_pytorch "
                             "(pip install img2vid[smp])") from None
        return getattr(smp, SMP_ARCHS[arch])("resnet18", encoder_weights="imagenet" if pretrained else None,
                                             classes=classes)
    options = {} if arch.startswith("lraspp") else {"aux_loss": True}
    try:
        return getattr(seg, arch)(weights=None, weights_backbone="DEFAULT" if pretrained else None,
                                  num_classes=classes, **options)
    except OSError as error:  # URLError and friends: no internet, no cached weights
        raise SystemExit(f"error: could not get the ImageNet weights of {arch}'s backbone ({error}); "
                         f"run without --pretrained, or put them in {torch.hub.get_dir()}/checkpoints") from None


def batches(loader: DataLoader, show: bool, what: str):
    return tqdm(loader, desc=what, leave=False) if show and tqdm is not None else loader


def main_map(out: dict[str, Tensor] | Tensor) -> Tensor:
    """The segmentation map: torchvision models return ``{"out": ..., "aux": ...}``, smp models a tensor."""
    return out["out"] if isinstance(out, dict) else out


def labels_of(mask: Tensor) -> Tensor:
    return mask.squeeze(1).long() if mask.ndim == 4 else mask.long()  # (B, 1, H, W) -> (B, H, W)


@torch.no_grad()
def check_alignment(wrapped: nn.Module, reference: nn.Module | None, images: Tensor, masks: Tensor,
                    classes: int) -> None:
    """Print, once, two checks that the wrapped model's output lines up with its input.

    1. Labels: ``ImageToVideo`` moves a ``tv_tensors.Mask`` with nearest (labels stay labels); undoing
       each frame (``inverse`` of its one-hot map) puts the labels back where they were in the input,
       wherever the frame still saw the pixel.
    2. Model: GSF starts as the identity, so in eval mode the wrapped model equals the 2D model run
       on each frame (``reference``: the same weights, not wrapped), its maps undone, then averaged.
    """
    video = wrapped.image_to_video
    masks = masks.view(len(masks), 1, *masks.shape[-2:])
    clip = video(tv_tensors.Mask(masks))  # (B, 1, H, W) -> (B, T, 1, H, W), still a Mask
    stay = isinstance(clip, tv_tensors.Mask) and set(clip.unique().tolist()) <= set(masks.unique().tolist())
    onehot = F.one_hot(clip.long().squeeze(2).clamp(max=classes), classes + 1).permute(0, 1, 4, 2, 3).float()
    undone = video.inverse(onehot).argmax(2)  # (B, T, H, W)
    seen = video.inverse(video(torch.ones_like(masks[:1], dtype=torch.float32))).squeeze(2) > 0.999
    foreground = (masks > 0) & (masks != IGNORE) & seen  # (B, T, H, W): object pixels the frame saw
    agree = float((undone == masks)[foreground].float().mean())
    raw = float((clip.squeeze(2) == masks)[foreground].float().mean())
    print(f"alignment 1: a label map moved by {video.genotype}, T={video.T} (labels stay labels: {stay}), "
          f"then undone: {100 * agree:.1f} % of object pixels back in place ({100 * raw:.1f} % without the undo)")
    if reference is None:
        print("alignment 2: skipped (TSM shifts features from the start: no 2D model to compare with)")
        return
    reference.eval()
    wrapped.eval()
    frames = video(images)  # (B, T, 3, H, W)
    per_frame = main_map(reference(frames.flatten(0, 1))).unflatten(0, frames.shape[:2])  # (B, T, K, H, W)
    expected = video.inverse(per_frame).mean(1)
    error = float((main_map(wrapped(images)) - expected).abs().max() / expected.abs().max())
    print(f"alignment 2: wrapped model == mean of the 2D model's undone per-frame maps "
          f"(max relative difference {error:.1e})")
    wrapped.train()
    if not stay or error > 1e-3:
        raise SystemExit("error: the wrapped model's output does not line up with its input")


def loss_of(out: dict[str, Tensor] | Tensor, target: Tensor) -> Tensor:
    loss = F.cross_entropy(main_map(out), target, ignore_index=IGNORE)
    # torchvision's reference recipe weighs the auxiliary head by 0.5
    if isinstance(out, dict) and out.get("aux") is not None:
        loss = loss + 0.5 * F.cross_entropy(out["aux"], target, ignore_index=IGNORE)
    return loss


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: DataLoader, device: torch.device, batches: int) -> None:
    """Re-estimate BatchNorm running statistics as plain averages over a few training batches.

    torchvision's MobileNetV3 keeps them with momentum 0.01: after a few hundred steps they still lag
    far behind the weights, and eval-mode predictions stay all-background while the training loss falls.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    model.train()
    for _, (images, _) in zip(range(batches), loader):
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            model(images.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


@torch.no_grad()
def confusion(model: nn.Module, loader: DataLoader, classes: int, device: torch.device, show: bool) -> Tensor:
    """``(K, K)`` pixel counts, rows = true class, columns = predicted; ignored pixels left out."""
    model.eval()
    counts = torch.zeros(classes * classes, dtype=torch.long, device=device)
    for images, masks in batches(loader, show, "test"):
        target = labels_of(masks).to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            predicted = main_map(model(images.to(device))).argmax(1)
        keep = target != IGNORE
        counts += torch.bincount(target[keep] * classes + predicted[keep], minlength=classes * classes)
    model.train()
    return counts.view(classes, classes).cpu()


def scores(counts: Tensor) -> tuple[float, float]:
    """Pixel accuracy and mean IoU (%), the mean over the classes that occur or are predicted."""
    counts = counts.double()
    hits = counts.diag()
    union = counts.sum(0) + counts.sum(1) - hits
    iou = hits[union > 0] / union[union > 0]
    return float(100 * hits.sum() / counts.sum()), float(100 * iou.mean())


def train(args: argparse.Namespace, arm: str, train_set: Dataset, test_set: Dataset, classes: int,
          device: torch.device) -> tuple[float, float]:
    torch.manual_seed(args.seed)  # every arm starts from the same weights and sees the same batches
    model = build(args.arch, classes, args.pretrained)
    loader = DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
                        generator=torch.Generator().manual_seed(args.seed))
    test_loader = DataLoader(test_set, args.batch_size, num_workers=args.workers)
    if arm == "wrapped":
        reference = copy.deepcopy(model).to(device) if args.fusion != "tsm" else None
        model = i2v.wrap(model, args.genotype, T=args.T, fusion=args.fusion).to(device)  # the whole integration
        images, masks = next(iter(DataLoader(test_set, 2)))
        check_alignment(model, reference, images.to(device), masks.to(device), classes)
        del reference
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    steps = args.epochs * len(loader)
    schedule = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=steps, power=0.9)  # DeepLab's "poly"
    for epoch in range(args.epochs):
        start, total = time.time(), 0.0
        for images, masks in batches(loader, not args.no_progress, f"{arm} epoch {epoch + 1}"):
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                loss = loss_of(model(images.to(device)), labels_of(masks).to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        print(f"{arm} epoch {epoch + 1}/{args.epochs}: train loss {total / len(loader):.3f}  "
              f"({time.time() - start:.0f} s)")
    if args.calibration_batches:
        recalibrate_bn(model, loader, device, args.calibration_batches)
    acc, miou = scores(confusion(model, test_loader, classes, device, not args.no_progress))
    print(f"{arm}: test pixel accuracy {acc:.1f} %, mIoU {miou:.1f} %")
    return acc, miou


def at_least(low: float, kind: type = int):
    """An argparse type: a number of ``kind`` no smaller than ``low``, or a clear error."""
    def parse(text: str):
        value = kind(text)
        if not value >= low:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__} >= {low}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names it in "invalid int value: 'x'"
    return parse


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and each option's default (where it has one)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default in (None, False) else super()._get_help_string(action)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--dataset", choices=["digits", "voc"], default="digits", help="see above")
    parser.add_argument("--data-dir", help="with --dataset voc: the folder that holds VOCdevkit/VOC2012")
    parser.add_argument("--arch", choices=ARCHS,
                        help="torchvision segmentation model, or smp_* from segmentation_models_pytorch "
                        "(default: deeplabv3_resnet50; deeplabv3_mobilenet_v3_large with --quick)")
    parser.add_argument("--pretrained", action="store_true",
                        help="ImageNet backbone (weights_backbone='DEFAULT'; downloaded once by torchvision)")
    parser.add_argument("--arm", choices=["wrapped", "baseline", "both"], default="wrapped",
                        help="wrapped: i2v.wrap(model); baseline: the plain 2D model; both: one after the other")
    parser.add_argument("--genotype", default="translate_x:0.05,translate_y:0.05", help="the motion")
    parser.add_argument("--T", type=at_least(1), default=5, help="frames per clip")
    parser.add_argument("--fusion", choices=["gsf", "tsm", "none"], default="gsf", help="temporal fusion")
    parser.add_argument("--size", type=at_least(16), default=96, help="image side in pixels (canvas, or VOC crop)")
    parser.add_argument("--digit-size", type=at_least(8), default=32, help="digits: side of an enlarged scan")
    parser.add_argument("--train", type=at_least(1), default=512, help="digits: training canvases")
    parser.add_argument("--test", type=at_least(1), default=256, help="digits: test canvases")
    parser.add_argument("--limit", type=at_least(1), help="voc: use only the first N images of each split")
    parser.add_argument("--epochs", type=at_least(1), default=20, help="training epochs")
    parser.add_argument("--batch-size", type=at_least(2), default=16, help="images per batch")
    parser.add_argument("--lr", type=at_least(0.0, float), default=0.05, help="SGD learning rate, poly schedule")
    parser.add_argument("--weight-decay", type=at_least(0.0, float), default=1e-4, help="SGD weight decay")
    parser.add_argument("--calibration-batches", type=at_least(0), default=8,
                        help="training batches that re-estimate BatchNorm statistics before testing (0: off)")
    parser.add_argument("--workers", type=at_least(0), default=0, help="DataLoader workers")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="'cuda' trains under bfloat16 autocast")
    parser.add_argument("--seed", type=int, default=0, help="fixes the data, the initialisation and the batches")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    parser.add_argument("--quick", action="store_true", help="smallest configuration (32 + 16 images of 32 x 32, "
                        "DeepLabV3-MobileNetV3, T=3, 1 epoch): < 40 s on a 2-core CPU")
    args = parser.parse_args()
    if args.quick:
        args.arch = args.arch or "deeplabv3_mobilenet_v3_large"
        args.size, args.digit_size, args.train, args.test = 32, 12, 32, 16
        args.limit, args.T, args.epochs, args.batch_size, args.no_progress = 16, 3, 1, 8, True
        args.calibration_batches = 2
    args.arch = args.arch or "deeplabv3_resnet50"
    if args.dataset == "voc" and not args.data_dir:
        parser.error("--dataset voc needs --data-dir")
    if args.dataset == "digits" and args.digit_size > args.size:
        parser.error(f"--digit-size ({args.digit_size}) must not exceed --size ({args.size})")
    try:
        i2v.ImageToVideo(args.genotype, args.T)
    except ValueError as error:
        parser.error(f"--genotype: {error}")

    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r} is not a torch device (e.g. cpu, cuda, cuda:1)")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    torch.manual_seed(args.seed)
    start = time.time()
    train_set, test_set, classes = digits(args) if args.dataset == "digits" else voc(args)
    if len(train_set) < args.batch_size:  # drop_last would leave no batch at all
        raise SystemExit(f"error: {len(train_set)} training images, fewer than one batch of {args.batch_size}")
    print(f"{args.dataset}: {len(train_set)} train / {len(test_set)} test images, {args.size} x {args.size}, "
          f"{classes} classes; {args.arch}, genotype {args.genotype!r}, T={args.T}, {args.fusion}; device {device}")
    if args.dataset == "digits":  # what predicting "background" everywhere scores
        background = torch.stack([labels_of(m) for _, m in test_set]).flatten()
        counts = torch.zeros(classes, classes, dtype=torch.long)
        counts[:, 0] = torch.bincount(background, minlength=classes)
        acc, miou = scores(counts)
        print(f"all-background prediction: test pixel accuracy {acc:.1f} %, mIoU {miou:.1f} %")
    for arm in ["wrapped", "baseline"] if args.arm == "both" else [args.arm]:
        train(args, arm, train_set, test_set, classes, device)
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
