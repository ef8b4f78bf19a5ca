"""What evaluate.py reports of a checkpoint's predictions, checked against scikit-learn's report of
the same predictions."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import precision_recall_fscore_support

from zoo.training import evaluation

NAMES = ["ant", "bee", "cat", "dog", "eel"]


def _predictions() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets where "dog" has no image but is predicted once, "eel" neither has an image
    nor is predicted, and one image's logits tie between "bee" and "cat" (taken as "bee", the first)."""
    predicted = torch.tensor([0, 0, 1, 1, 2, 2, 3, 0, 1])
    targets = torch.tensor([0, 0, 1, 2, 2, 2, 0, 1, 1])
    logits = torch.nn.functional.one_hot(predicted, len(NAMES)).float()
    logits[8] = torch.tensor([0.0, 2.0, 2.0, 0.0, 0.0])
    return logits, targets


def test_per_class_figures_are_scikit_learns() -> None:
    logits, targets = _predictions()
    report = evaluation.classification_report(logits, targets, NAMES)
    predicted = logits.argmax(dim=1)
    expected = precision_recall_fscore_support(targets, predicted, labels=range(len(NAMES)), zero_division=0)
    for i, name in enumerate(NAMES):
        row = report["per_class"][name]
        assert [row["precision"], row["recall"], row["f1"]] == pytest.approx([e[i] for e in expected[:3]])
        assert row["support"] == expected[3][i]
    assert report["per_class"]["dog"]["support"] == report["per_class"]["eel"]["support"] == 0


# The report had per-class rows only: comparing two checkpoints on imbalanced data meant averaging
# them by hand. A class neither in the split nor predicted ("eel") is left out of the macro average,
# as scikit-learn leaves it out given no class list; one predicted but absent ("dog") counts.
@pytest.mark.parametrize("average", ["macro", "weighted"])
def test_averages_are_scikit_learns_over_the_classes_seen_or_predicted(average: str) -> None:
    logits, targets = _predictions()
    report = evaluation.classification_report(logits, targets, NAMES)
    precision, recall, f1, _ = precision_recall_fscore_support(
        targets, logits.argmax(dim=1), average=average, zero_division=0
    )
    row = report["averages"][average]
    assert [row["precision"], row["recall"], row["f1"]] == pytest.approx([precision, recall, f1])
    assert row["support"] == len(targets)
    table = evaluation.format_table(report).splitlines()
    (line,) = [line for line in table if line.startswith(f"{average} avg ")]
    assert line.split()[2:] == [f"{precision:.4f}", f"{recall:.4f}", f"{f1:.4f}", str(len(targets))]
