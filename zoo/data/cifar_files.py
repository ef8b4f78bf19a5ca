"""CIFAR's python-format files read without running code from them.

The files are pickles. torchvision's CIFAR classes unpickle them with `pickle.load`, which runs
whatever a file names; that is safe only for files that pass its md5 check against the official
release. Files that skip the check (`data.verify_checksums=false`: a subset, a re-pickled copy)
are read here instead, by an unpickler that builds numpy arrays and plain Python values and refuses
every other global a file names. File names and label keys still come from torchvision's classes.
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# What a pickled numpy array names: numpy 1's module paths (numpy.core, as in the official files,
# written by Python 2) and numpy 2's (numpy._core), for pickle protocols 2 to 5. _codecs.encode
# carries the array's bytes in a protocol-2 pickle written by Python 3.
ARRAY_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)


NUMPY_2 = int(np.__version__.split(".")[0]) >= 2


class RefusedGlobal(pickle.UnpicklingError):
    """A file named a global that is not part of a numpy array: a file that would run code."""


class ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ARRAY_GLOBALS:
            raise RefusedGlobal(f"it names {module}.{name}, which is not part of a numpy array")
        if module.startswith("numpy.core.") and NUMPY_2:
            module = "numpy._core." + module.removeprefix("numpy.core.")  # renamed in numpy 2
        return getattr(importlib.import_module(module), name)


def load_arrays(path: Path) -> Any:
    """A pickle of numpy arrays and plain values. Another object raises RefusedGlobal; a file that
    is not a pickle at all, UnpicklingError (arbitrary bytes fail in many ways, all caught here)."""
    with open(path, "rb") as handle:
        # latin1: the official files are Python 2 pickles, whose byte strings hold the pixels.
        unpickler = ArraysOnlyUnpickler(handle, encoding="latin1")
        try:
            return unpickler.load()
        except RefusedGlobal as error:
            raise RefusedGlobal(f"{path.name}: {error}") from None
        except Exception as error:
            raise pickle.UnpicklingError(f"{path.name} is not a readable pickle ({error})") from None


@dataclass(frozen=True)
class CifarArrays:
    """What TorchvisionDataModule takes from a torchvision CIFAR data set."""

    data: np.ndarray  # N x 32 x 32 x 3, uint8
    targets: list[int]
    classes: list[str]


def _text(value: Any) -> Any:
    return value.decode("latin1") if isinstance(value, bytes) else value


def _with_text_keys(entry: Any) -> Any:
    """A re-pickled file read as CIFAR's page suggests, pickle.load(encoding="bytes"), has bytes keys."""
    return {_text(key): value for key, value in entry.items()} if isinstance(entry, dict) else entry


def _label_list(labels: Any) -> list | None:
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        return labels.tolist()  # a copy that kept its labels as an array
    return labels if isinstance(labels, list) else None


def read_cifar(cls: type, root: Path, train: bool) -> CifarArrays:
    """The training or test split of torchvision's CIFAR10 or CIFAR100 (`cls`) under `root`, in the
    layout its class reads: rows of 3072 bytes (the R, G and B planes), and "labels" (CIFAR-10) or
    "fine_labels" (CIFAR-100). A file of another layout raises ValueError naming it."""
    folder = root / cls.base_folder
    images, targets = [], []
    for name, _ in cls.train_list if train else cls.test_list:
        entry = _with_text_keys(load_arrays(folder / name))
        pixels = entry.get("data") if isinstance(entry, dict) else None
        labels = (
            _label_list(entry.get("labels", entry.get("fine_labels"))) if isinstance(entry, dict) else None
        )
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.shape[1:] != (3072,):
            raise ValueError(f"{name} holds no 'data' array of uint8 rows of 3072 bytes")
        if not isinstance(labels, list) or len(labels) != len(pixels):
            raise ValueError(f"{name} holds no list of {len(pixels)} labels ('labels' or 'fine_labels')")
        images.append(pixels)
        targets += [int(label) for label in labels]
    meta = _with_text_keys(load_arrays(folder / cls.meta["filename"]))
    if not isinstance(meta, dict) or cls.meta["key"] not in meta:
        raise ValueError(f"{cls.meta['filename']} holds no {cls.meta['key']!r}")
    classes = [str(_text(name)) for name in meta[cls.meta["key"]]]
    if not all(0 <= label < len(classes) for label in targets):
        raise ValueError(f"labels outside 0..{len(classes) - 1}, the classes {cls.meta['filename']} names")
    data = np.concatenate(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return CifarArrays(data, targets, classes)
