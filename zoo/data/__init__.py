"""Data modules: each exposes num_classes, class_names, channels, image_size and its normalization.

Names load on first use, so code that needs only the tensor helpers (augment, splits) does not pay
for importing Lightning.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DataSpec": ".base",
    "ImageDataModule": ".base",
    "InMemoryBatches": ".batches",
    "InMemoryDataModule": ".memory",
    "DigitsDataModule": ".digits",
    "TorchvisionDataModule": ".torchvision_sets",
    "ImageFolderDataModule": ".imagefolder",
    "SyntheticDataModule": ".synthetic",
    "BatchMixer": ".mixing",
}

__all__ = sorted(_EXPORTS)

# The data modules a run's config may build (configs/data/ names each one; a test holds the two to
# each other): the only classes a checkpoint's data section may name. Kept here, not read from
# configs/, which an installed package does not have.
DATA_MODULES = ("DigitsDataModule", "TorchvisionDataModule", "ImageFolderDataModule", "SyntheticDataModule")


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
