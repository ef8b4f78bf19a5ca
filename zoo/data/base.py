"""What every data module tells the model and the checkpoint about its images."""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass

import pytorch_lightning as pl
import torch

from .generators import RankGenerators


@dataclass(frozen=True)
class DataSpec:
    """The facts a model is built from and a checkpoint must carry to read new images the same way."""

    class_names: tuple[str, ...]
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        # Plain lists and numbers only: checkpoints are read back with weights_only=True.
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, spec: dict) -> DataSpec:
        return cls(
            class_names=tuple(spec["class_names"]),
            channels=int(spec["channels"]),
            image_size=int(spec["image_size"]),
            mean=tuple(float(v) for v in spec["mean"]),
            std=tuple(float(v) for v in spec["std"]),
        )


def same_names_in_other_unicode_forms(names, other_names) -> str:
    """A message's ending when two class lists differ only in how their accented letters are stored:
    printed, 'café' and 'café' look alike, but a Mac writes é as e plus an accent (NFD) in the names
    of a zip, where most other systems write one letter (NFC)."""
    apart = sorted(set(names) - set(other_names))
    if not apart or {_composed(name) for name in names} != {_composed(name) for name in other_names}:
        return ""
    twin = next(name for name in other_names if _composed(name) == _composed(apart[0]))
    return (
        f"; {apart[0]!a} and {twin!a} are one name stored in two Unicode forms (an accent kept apart from "
        f"its letter or within it): rename the folder {apart[0]!a} to {twin!a}"
    )


def _composed(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def rounded_statistics(mean, std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std as a DataSpec carries them, to 4 places. A channel without spread (one
    value in every image: an empty blue channel) keeps a std of 1, as scikit-learn's StandardScaler
    does: its std rounds to 0, and dividing by that made every input NaN."""
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) or 1.0 for v in std)


class ImageDataModule(pl.LightningDataModule):
    """Base for the project's data modules. Subclasses fill `self.spec` in `setup()`.

    Batches hold uint8 images, from memory or decoded in workers: a quarter of float32's bytes to
    copy to the device. Normalisation happens there, in the LightningModule, with the mean and std
    that travel in the checkpoint.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self._spec: DataSpec | None = None
        # The module's own random draws (batch augmentation, MixUp/CutMix): a stream per process.
        self._generators = RankGenerators(seed)

    def _generator(self, device: torch.device) -> torch.Generator:
        return self._generators.get(device, self._rank())

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer else 0

    def state_dict(self) -> dict:
        return self._generators.state_dict(self.trainer)

    def load_state_dict(self, state_dict: dict) -> None:
        self._generators.load_state_dict(state_dict, self._rank())

    @property
    def spec(self) -> DataSpec:
        if self._spec is None:
            self.setup("fit")
        assert self._spec is not None
        return self._spec

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def channels(self) -> int:
        return self.spec.channels

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.spec.mean, self.spec.std
