"""The default run's job written as a plain PyTorch loop: the baseline train.py is measured against.

Same job as `python train.py` with no overrides: LeNet-5 on the embedded digits with the same split,
seeds, initial weights, batch order, augmentation draws, epochs, batch size, optimizer and schedule;
each epoch is validated, the weights with the lowest validation loss are saved, and those are tested
at the end. Left out: Lightning, Hydra, TensorBoard, resumable mid-epoch checkpoints. Prints the test
accuracy and the time spent training.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

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
    # As train.py's accelerator=auto: the GPU when there is one.
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", help="folder for best.pt (default: a temporary one)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(args.seed)

    digits = load_digits()
    pixels = torch.from_numpy(digits.images.astype(np.float32) / 16).unsqueeze(1)
    images = (F.interpolate(pixels, size=(32, 32), mode="bilinear").clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    rest, test = stratified_split(labels.numpy(), 0.2, seed=0, setting="test fraction 0.2")
    train_rel, val_rel = stratified_split(labels[rest].numpy(), 0.1 / 0.8, seed=0, setting="val fraction 0.1")
    train, val, test = (torch.from_numpy(index) for index in (rest[train_rel], rest[val_rel], test))
    train_images, train_labels = images[train], labels[train]
    # Rounded as DataSpec rounds them, so both runs normalise with the same numbers.
    mean = round(float(train_images.float().mean() / 255), 4)
    std = round(float(train_images.float().std() / 255), 4)
    # Held on the training device, as the data module holds them (data.on_device=auto): no batch
    # crosses the bus, and no copy from pageable memory waits for the GPU.
    images, labels = images.to(device), labels.to(device)
    train_images, train_labels = train_images.to(device), train_labels.to(device)
    val, test = val.to(device), test.to(device)

    model = create_model("lenet5", num_classes=10, in_chans=1).to(device)
    # Fused, as train.py builds it (optimizer.fused=auto).
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, fused=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    # Seeded as the data module seeds its augmentation generator (seed x 1000 + rank).
    augment_rng = torch.Generator(device).manual_seed(args.seed * 1_000)

    def evaluate(index: torch.Tensor) -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            logits = model((images[index].float() / 255 - mean) / std)
            target = labels[index]
            return float(F.cross_entropy(logits, target)), float((logits.argmax(1) == target).float().mean())

    output = Path(args.output or tempfile.mkdtemp(prefix="plain_digits_"))
    output.mkdir(parents=True, exist_ok=True)
    best_loss = float("inf")
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(
            len(train), generator=torch.Generator().manual_seed(args.seed * 100_003 + epoch)
        ).to(device)
        for first in range(0, len(order), args.batch_size):
            index = order[first : first + args.batch_size]
            batch = augment_batch(train_images[index], "digits", augment_rng)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model((batch - mean) / std), train_labels[index]).backward()
            optimizer.step()
        scheduler.step()
        val_loss, _ = evaluate(val)
        if val_loss < best_loss:
            best_loss = val_loss
            torch.save(model.state_dict(), output / "best.pt")
    elapsed = time.perf_counter() - start

    model.load_state_dict(torch.load(output / "best.pt", weights_only=True))
    _, accuracy = evaluate(test)
    print(f"plain loop: test/acc={accuracy:.4f}  train_seconds={elapsed:.2f}")


if __name__ == "__main__":
    main()
