"""Per-class metrics and the confusion matrix of a trained classifier on a data split."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)


@torch.no_grad()
def predict(
    module: torch.nn.Module, batches: Iterable, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """All logits and targets of a split, kept on the device until the end (no per-batch sync)."""
    module.eval().to(device)
    logits, targets = [], []
    for images, labels in batches:
        logits.append(module(images.to(device, non_blocking=True)).float())
        targets.append(labels.to(device, non_blocking=True))
    return torch.cat(logits).cpu(), torch.cat(targets).cpu()


def classification_report(logits: torch.Tensor, targets: torch.Tensor, class_names: list[str]) -> dict:
    n = len(class_names)
    per_class = {
        "precision": multiclass_precision(logits, targets, n, average=None, zero_division=0),
        "recall": multiclass_recall(logits, targets, n, average=None, zero_division=0),
        "f1": multiclass_f1_score(logits, targets, n, average=None, zero_division=0),
        "support": torch.bincount(targets, minlength=n),
    }
    report = {
        "acc": float(multiclass_accuracy(logits, targets, n, average="micro")),
        "loss": float(F.cross_entropy(logits, targets)),
        "samples": int(len(targets)),
        "per_class": {
            name: {
                metric: float(values[i]) if metric != "support" else int(values[i])
                for metric, values in per_class.items()
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": multiclass_confusion_matrix(logits, targets, n).tolist(),
        "class_names": list(class_names),
    }
    if n > 5:
        report["acc_top5"] = float(multiclass_accuracy(logits, targets, n, top_k=5, average="micro"))
    return report


def format_table(report: dict) -> str:
    width = max(8, *(len(name) for name in report["class_names"]))
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for name, row in report["per_class"].items():
        lines.append(
            f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:5.4f}"
            f"  {row['support']:7d}"
        )
    return "\n".join(lines)


def save_confusion_png(matrix: list[list[int]], class_names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display is needed or present
    import matplotlib.pyplot as plt

    n = len(class_names)
    size = min(4 + 0.45 * n, 30)
    fig, ax = plt.subplots(figsize=(size, size))
    counts = torch.tensor(matrix)
    ax.imshow(counts, cmap="Blues")
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title="confusion matrix")
    ax.set_xticklabels(class_names, rotation=90 if n > 10 else 0)
    ax.set_yticklabels(class_names)
    if n <= 30:
        threshold = counts.max().item() / 2
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    int(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if counts[i, j] > threshold else "black",
                )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
