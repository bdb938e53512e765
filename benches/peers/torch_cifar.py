"""PyTorch peer of kiln's `cifar10` example: CIFAR-10 from the same JPEG archive (decoded with
Pillow), the same augmentation (random 32×32 crop of the image padded by 4, horizontal flip,
normalization by the training set's channel statistics), the same ResNet-20 (option-A
shortcuts, kiln's state-dict names) and the same optimizer and schedule (SGD, Nesterov momentum
0.9, weight decay 5e-4, cosine by epoch or one-cycle by step).

    python benches/peers/torch_cifar.py DATA_DIR [--epochs 1] [--batch-size 128] [--threads 2]
    python benches/peers/torch_cifar.py DATA_DIR --epochs 50 --checkpoint runs/torch_cifar.pt
    python benches/peers/torch_cifar.py DATA_DIR --load runs/cifar/last.safetensors
    python benches/peers/torch_cifar.py DATA_DIR --step-bench

Prints seconds per epoch and test accuracy. `--checkpoint` saves the whole training state after
each epoch (atomically) and, when the file exists, resumes from it: the run continues exactly as
an uninterrupted one would, so a 50-epoch run can span sessions. `--load` evaluates a checkpoint kiln wrote, loaded
with `load_state_dict(strict=True)`. `--step-bench` times one training step (forward, backward,
SGD update) of LeNet-5 on (128, 1, 28, 28) and of ResNet-20 on (128, 3, 32, 32), the peer rows
of kiln's `bench --only cnn-step`.
"""
import argparse
import io
import math
import os
import tarfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def load_split(archive, split):
    """(N, 32, 32, 3) uint8 images and labels of cifar10/<split>/<class>/*.jpg, sorted as kiln's ImageFolder."""
    found = []
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and parts[1] == split and parts[3].endswith(".jpg"):
                data = tar.extractfile(member).read()
                found.append((parts[2], member.name, data))
    found.sort(key=lambda f: (f[0], f[1]))
    images = np.stack([np.asarray(Image.open(io.BytesIO(d)).convert("RGB")) for _, _, d in found])
    labels = np.array([CLASSES.index(c) for c, _, _ in found], dtype=np.int64)
    return images, labels


def augment(images, generator):
    """Random crop of the zero-padded image and a flip, per image (as torchvision's transforms)."""
    n = images.shape[0]
    padded = F.pad(images, (4, 4, 4, 4))
    tops = torch.randint(0, 9, (n,), generator=generator)
    lefts = torch.randint(0, 9, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    out = torch.empty_like(images)
    for i in range(n):
        crop = padded[i, :, tops[i]:tops[i] + 32, lefts[i]:lefts[i] + 32]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


class BasicBlock(nn.Module):
    def __init__(self, inp, out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.stride, self.pad = stride, (out - inp) // 2

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        skip = x
        if self.stride != 1 or self.pad:
            skip = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(h + skip)


class ResNet(nn.Module):
    """He et al.'s CIFAR ResNet of 6n + 2 layers, with kiln's names (conv1, bn1, layer1…3, fc)."""

    def __init__(self, n=3, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        channels, layers = 16, []
        for stage, width in enumerate([16, 32, 64]):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(channels, width, 2 if stage > 0 and b == 0 else 1))
                channels = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer3(self.layer2(self.layer1(h)))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def evaluate(model, images, labels):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), 1000):
            correct += (model(images[i:i + 1000]).argmax(1) == labels[i:i + 1000]).sum().item()
    return correct / len(images)


def step_bench(reps):
    for name, model, shape in [("lenet5 step", lenet5(), (128, 1, 28, 28)), ("resnet20 step", ResNet(), (128, 3, 32, 32))]:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
        x, y = torch.randn(shape), torch.randint(0, 10, (shape[0],))
        times = []
        for r in range(reps + 2):
            start = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            times.append(time.perf_counter() - start)
        ms = sorted(times[2:])[len(times[2:]) // 2] * 1e3
        print(f"| PyTorch {torch.__version__.split('+')[0]} | {name} | batch {shape[0]} | {ms:.1f} ms |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--schedule", choices=["cosine", "one-cycle"], default="cosine")
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint", help="save the training state here after each epoch; resume from it if present")
    ap.add_argument("--load", help="evaluate this kiln checkpoint instead of training")
    ap.add_argument("--step-bench", action="store_true")
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.step_bench:
        return step_bench(args.reps)

    archive = f"{args.data}/cifar10/cifar10-jpeg.tar.gz"
    train_u8, train_y = load_split(archive, "train")
    test_u8, test_y = load_split(archive, "test")
    scaled = train_u8.reshape(-1, 3).astype(np.float64) / 255
    mean, std = scaled.mean(0), scaled.std(0)
    to_tensor = lambda u8: torch.from_numpy(((u8 / 255 - mean) / std).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    # padding with 0 in [0, 1] units is padding with -mean/std after normalization
    train_x, test_x = to_tensor(train_u8), to_tensor(test_u8)
    train_y, test_y = torch.from_numpy(train_y), torch.from_numpy(test_y)
    zero = torch.tensor(-mean / std, dtype=torch.float32).view(1, 3, 1, 1)
    model = ResNet()
    if args.load:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(args.load), strict=True)
        print(f"loaded {args.load} (strict): test accuracy {evaluate(model, test_x, test_y) * 100:.2f}%")
        return

    steps_per_epoch = len(train_x) // args.batch_size
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    if args.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    else:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(0)
    first_epoch = 0
    if args.checkpoint and os.path.exists(args.checkpoint):
        state = torch.load(args.checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        first_epoch = state["epoch"]
        print(f"resumed from {args.checkpoint} after epoch {first_epoch}")
    for epoch in range(first_epoch, args.epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(train_x), generator=generator)
        total = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * args.batch_size:(s + 1) * args.batch_size]
            x = augment(train_x[idx] - zero, generator) + zero  # pad with the normalized zero
            loss = F.cross_entropy(model(x), train_y[idx], label_smoothing=args.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if args.schedule == "one-cycle":
                sched.step()
            total += loss.item()
        if args.schedule == "cosine":
            sched.step()
        seconds = time.perf_counter() - start
        acc = evaluate(model, test_x, test_y)
        print(f"epoch {epoch + 1}  train loss {total / steps_per_epoch:.4f}  test accuracy {acc * 100:.2f}%  ({seconds:.1f} s)", flush=True)
        if args.checkpoint:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
                     "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "epoch": epoch + 1}
            torch.save(state, args.checkpoint + ".tmp")
            os.replace(args.checkpoint + ".tmp", args.checkpoint)


if __name__ == "__main__":
    main()
