"""Seeded, stratified splits shared by every data module that has to cut its own."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def stratified_split(labels: np.ndarray, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out), each class held out in proportion; the same seed gives the same split."""
    indices = np.arange(len(labels))
    kept, held_out = train_test_split(indices, test_size=holdout_fraction, random_state=seed, stratify=labels)
    return np.sort(kept), np.sort(held_out)
