"""Training throughput of the in-memory data path against a per-sample DataLoader, on MNIST-shaped data.

Both paths train the same LeNet-5 with the same optimizer, batch size and digit augmentation
(small shifts, rotations and zoom) on synthetic uint8 1 x 28 x 28 images:

- in-memory: `InMemoryBatches` cuts each batch out of one uint8 tensor, held on the training device
  (on a GPU too, as `InMemoryDataModule` holds it by default, data.on_device=auto), and
  `augment_batch` warps all its images at once (what `InMemoryDataModule` does under Lightning);
- per-sample: a torch Dataset returns one float tensor per image through v2 transforms, in DataLoader
  workers, collated and then moved to the device (the usual torchvision recipe).

Each path trains for a fixed time after a short warm-up; the figure is images per second, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from zoo import create_model
from zoo.data.augment import augment_batch
from zoo.data.batches import InMemoryBatches
from zoo.data.synthetic import random_images


class PerSampleDigits(Dataset):
    """One image at a time, as a DataLoader-based pipeline sees it."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels
        self.transform = v2.Compose(
            [
                v2.RandomAffine(
                    degrees=10,
                    translate=(0.08, 0.08),
                    scale=(0.9, 1.1),
                    interpolation=v2.InterpolationMode.BILINEAR,
                ),
                v2.ToDtype(torch.float32, scale=True),
            ]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), int(self.labels[index])


def in_memory_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator(device).manual_seed(0)
    images, labels = images.to(device), labels.to(device)
    epoch = 0
    while True:
        loader = InMemoryBatches(images, labels, batch_size, shuffle=True, seed=0)
        loader.set_epoch(epoch)
        for batch_images, batch_labels in loader:
            yield augment_batch(batch_images, "digits", generator), batch_labels
        epoch += 1


def per_sample_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device, workers: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    loader = DataLoader(
        PerSampleDigits(images, labels),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    while True:
        for batch_images, batch_labels in loader:
            yield batch_images.to(device, non_blocking=True), batch_labels.to(device, non_blocking=True)


def throughput(batches: Iterable, device: torch.device, seconds: float, warmup_steps: int = 20) -> float:
    """Images per second of a LeNet-5 trained on `batches` for `seconds` after a warm-up."""
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10, in_chans=1).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mean, std = 0.5, 0.29  # uniform noise; normalising keeps the step's work that of a real run

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    iterator = iter(batches)
    seen, start = 0, None
    for step in range(10**9):
        if step == warmup_steps:
            sync()
            seen, start = 0, time.perf_counter()
        images, labels = next(iterator)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model((images - mean) / std), labels).backward()
        optimizer.step()
        seen += len(labels)
        if start is not None and step % 10 == 0:
            sync()
            if time.perf_counter() - start >= seconds:
                break
    sync()
    return seen / (time.perf_counter() - start)


def main() -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=60_000, help="synthetic 1 x 28 x 28 training images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=15.0, help="timed training per path")
    parser.add_argument("--workers", type=int, default=min(8, cpus), help="DataLoader workers (per-sample)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    images, labels = random_images(args.samples, 1, 28, 10, seed=0)
    print(
        f"{args.samples} x 1 x 28 x 28 uint8, lenet5, batch {args.batch_size}, digit augmentation, "
        f"{args.seconds:g} s per path on {device}, {torch.get_num_threads()} threads, {args.workers} workers",
        flush=True,
    )
    fast = throughput(in_memory_batches(images, labels, args.batch_size, device), device, args.seconds)
    print(f"in-memory  : {fast:10,.0f} images/s", flush=True)
    slow = throughput(
        per_sample_batches(images, labels, args.batch_size, device, args.workers), device, args.seconds
    )
    print(f"per-sample : {slow:10,.0f} images/s", flush=True)
    print(f"in-memory / per-sample = {fast / slow:.1f}x")


if __name__ == "__main__":
    main()
