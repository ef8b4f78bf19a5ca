"""The default run's job written as a plain PyTorch loop: the baseline train.py is measured against.

Same model (lenet5), data, split function and seeds, augmentation, epochs, batch size, optimizer and
schedule as `python train.py` with no overrides, but no Lightning, Hydra, TensorBoard, validation or
checkpoints. Prints the test accuracy and the time spent training.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from zoo import create_model
from zoo.data.augment import augment_batch
from zoo.data.splits import stratified_split


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    digits = load_digits()
    pixels = torch.from_numpy(digits.images.astype(np.float32) / 16).unsqueeze(1)
    images = (F.interpolate(pixels, size=(32, 32), mode="bilinear").clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    rest, test = stratified_split(labels.numpy(), 0.2, seed=0)
    train_rel, _ = stratified_split(labels[rest].numpy(), 0.1 / 0.8, seed=0)
    train = torch.from_numpy(rest[train_rel])
    test = torch.from_numpy(test)
    train_images, train_labels = images[train], labels[train]
    mean, std = train_images.float().mean() / 255, train_images.float().std() / 255

    model = create_model("lenet5", num_classes=10, in_chans=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    augment_rng = torch.Generator().manual_seed(args.seed)

    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(
            len(train), generator=torch.Generator().manual_seed(args.seed * 100_003 + epoch)
        )
        for first in range(0, len(order), args.batch_size):
            index = order[first : first + args.batch_size]
            batch = augment_batch(train_images[index], "digits", augment_rng)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model((batch - mean) / std), train_labels[index]).backward()
            optimizer.step()
        scheduler.step()
    elapsed = time.perf_counter() - start

    model.eval()
    with torch.no_grad():
        predictions = model((images[test].float() / 255 - mean) / std).argmax(1)
    accuracy = float((predictions == labels[test]).float().mean())
    print(f"plain loop: test/acc={accuracy:.4f}  train_seconds={elapsed:.2f}")


if __name__ == "__main__":
    main()
