"""Seeded, stratified splits shared by every data module that has to cut its own."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from ..training.errors import UserError


def stratified_split(
    labels: np.ndarray, holdout_fraction: float, seed: int, setting: str
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out), each class held out in proportion; the same seed gives the same split.
    `setting` is the override that asked for the held-out part ("data.val_fraction=0.1"), named if
    the split cannot be made."""
    indices = np.arange(len(labels))
    try:
        kept, held_out = train_test_split(
            indices, test_size=holdout_fraction, random_state=seed, stratify=labels
        )
    except ValueError as error:
        # scikit-learn says what it could not do; what to change is ours to say.
        raise UserError(
            f"cannot split off {setting}: {' '.join(str(error).split())}; each class needs images on both "
            "sides of the split "
            f"({len(labels)} images, {len(np.unique(labels))} classes): change the fraction, or add images"
        ) from None
    return np.sort(kept), np.sort(held_out)
