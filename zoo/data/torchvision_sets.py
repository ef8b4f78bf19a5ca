"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100, read by torchvision's own data set classes and then
held in memory as uint8 tensors (the fast path of `InMemoryDataModule`).

torchvision reads the official files, so what is read is exactly what everyone else reads (CIFAR
files that skip its md5 check are read by `cifar_files`, which runs no code from them); after that
the images are tensors and torchvision's per-sample `__getitem__` is never called. The official
test split is the test split; validation is a seeded, stratified slice of the official training split.

Files that are missing offline, or a download that fails, end in one `UserError` line naming the
files and the folder expected, and a failed download leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from pickle import UnpicklingError
from urllib.error import URLError

import torch
import torch.nn.functional as F
import torchvision.datasets as tv_datasets

from ..downloads import stall_timeout
from ..training.errors import UserError, in_one_line
from .cifar_files import RefusedGlobal, read_cifar
from .idx_files import check_idx_pair
from .memory import InMemoryDataModule
from .splits import stratified_split


@dataclass(frozen=True)
class TorchvisionSet:
    """Which torchvision class reads a set, and where under `root` that class looks for it."""

    title: str
    class_name: str
    family: str  # "mnist": idx files in ROOT/<class name>/raw; "cifar": python pickles in ROOT/<base folder>

    @property
    def dataset_class(self) -> type:
        return getattr(tv_datasets, self.class_name)

    def home(self, root: Path) -> Path:
        """The one folder under `root` that is the set's own."""
        cls = self.dataset_class
        return root / cls.__name__ if self.family == "mnist" else root / cls.base_folder

    def folder(self, root: Path) -> Path:
        """Where the files torchvision reads lie."""
        return self.home(root) / "raw" if self.family == "mnist" else self.home(root)

    def files(self) -> list[str]:
        """The file names torchvision reads, taken from its own class so they cannot drift apart."""
        cls = self.dataset_class
        if self.family == "mnist":
            return [name.removesuffix(".gz") for name, _ in cls.resources]
        return [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]


DATASETS = {
    "mnist": TorchvisionSet("MNIST", "MNIST", "mnist"),
    "fashion_mnist": TorchvisionSet("Fashion-MNIST", "FashionMNIST", "mnist"),
    "cifar10": TorchvisionSet("CIFAR-10", "CIFAR10", "cifar"),
    "cifar100": TorchvisionSet("CIFAR-100", "CIFAR100", "cifar"),
}


def describe_files(folder: Path, names: list[str], suffix: str = "") -> str:
    """`folder/{a,b,c}`, with numbered runs folded (`data_batch_1..5`) so the list fits on one line."""
    runs: list[list] = []  # [stem, first, last] for numbered names, [name] for the rest
    for name in names:
        stem, _, number = name.rpartition("_")
        if number.isdigit() and runs and len(runs[-1]) == 3 and runs[-1][0] == stem:
            if runs[-1][2] == int(number) - 1:
                runs[-1][2] = int(number)
                continue
        runs.append([stem, int(number), int(number)] if number.isdigit() and stem else [name])
    shown = [
        run[0] if len(run) == 1 else f"{run[0]}_{run[1]}" + (f"..{run[2]}" if run[2] > run[1] else "")
        for run in runs
    ]
    return f"{folder}/{{{','.join(shown)}}}{suffix}"


@contextlib.contextmanager
def _removed_on_failure(root: Path, set_folder: Path) -> Iterator[None]:
    """If the body raises, delete what it created: `root` itself (and any parents it needed), new
    entries of `root` (an archive, a set folder), and new files inside a set folder that was already
    there. Nothing that existed before is touched, and nothing outside the set is walked."""
    first_new = next((p for p in [*reversed(root.parents), root] if not p.exists()), None)
    top_before = set(root.iterdir()) if first_new is None else set()
    set_folder_existed = set_folder.is_dir()
    inside_before = set(set_folder.rglob("*")) if set_folder_existed else set()
    try:
        yield
    except BaseException:
        if first_new is not None:
            shutil.rmtree(first_new, ignore_errors=True)
        elif root.is_dir():
            for entry in set(root.iterdir()) - top_before:
                _remove(entry)
            if set_folder_existed and set_folder.is_dir():
                # Deepest first, so a new folder is emptied before it is removed.
                for path in sorted(set(set_folder.rglob("*")) - inside_before, key=lambda p: -len(p.parts)):
                    _remove(path)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _one_line(error: BaseException, limit: int = 160) -> str:
    text = in_one_line(error)
    # MNIST's download error lists every mirror it tried ("Tried URL, got: ERROR"); the last error says why.
    text = text.rpartition(" got: ")[2]
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TorchvisionDataModule(InMemoryDataModule):
    """One of `DATASETS`, read once by torchvision's class into uint8 tensors N x C x H x W.

    `image_size` (null: the set's own size) resizes every image once at load time. `verify_checksums`
    leaves torchvision's md5 check of the CIFAR files on; turning it off loads files that are not the
    official release (a subset, a re-pickled copy) with `cifar_files.read_cifar`, which runs no
    code from them.
    """

    def __init__(
        self,
        dataset: str,
        root: str = "data",
        download: bool = True,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        image_size: int | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        augment: str = "standard",
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        on_device: bool | str = "auto",
        verify_checksums: bool = True,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            seed=seed,
            augment=augment,
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            on_device=on_device,
        )
        if dataset not in DATASETS:
            raise UserError(f"unknown data set {dataset!r}; known: {', '.join(DATASETS)}")
        if not 0 < val_fraction < 1:
            raise UserError(f"data.val_fraction must be between 0 and 1, not {val_fraction}")
        self.dataset, self.root, self.download = dataset, Path(root), download
        self.image_size_requested, self.val_fraction, self.split_seed = image_size, val_fraction, split_seed
        self.verify_checksums = verify_checksums

    # --- files ----------------------------------------------------------------------------------
    def _find_files(self) -> list[str]:
        """The names of the files torchvision will read that are not there; MNIST's local .gz are unpacked."""
        info = DATASETS[self.dataset]
        folder = info.folder(self.root)
        missing = []
        for name in info.files():
            packed = folder / f"{name}.gz"
            if info.family == "mnist" and packed.is_file() and not _newer_or_same(folder / name, packed):
                # torchvision reads the decompressed idx files; it only unpacks the .gz it downloads.
                # A .gz newer than its unpacked file replaces it (a damaged one, fixed by a new .gz).
                try:
                    _unpack(packed, folder / name)
                except (OSError, EOFError) as error:
                    if not (folder / name).is_file():
                        if getattr(error, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS):
                            raise UserError(
                                f"cannot unpack {packed} beside it: {folder} is read-only; unpack it there "
                                f"once (gunzip -k {packed}), or copy {info.home(self.root)} into a writable "
                                "folder and set data.root to that folder"
                            ) from None
                        raise UserError(f"cannot decompress {packed}: {_one_line(error)}") from None
                    # A read-only folder, or a damaged .gz beside a whole file: the file is read
                    # as it is (and checked), and the .gz named.
                    warnings.warn(
                        f"cannot decompress {packed} ({_one_line(error)}); reading {folder / name} as it is",
                        stacklevel=2,
                    )
            if not (folder / name).is_file():
                missing.append(name)
        return missing

    def _expected(self) -> str:
        info = DATASETS[self.dataset]
        suffix = "[.gz]" if info.family == "mnist" else ""
        return describe_files(info.folder(self.root), info.files(), suffix)

    def _missing(self, missing: list[str]) -> str:
        """`; missing: NAMES` when some of the set's files are there: which are not is the news."""
        return (
            f"; missing: {', '.join(missing)}" if len(missing) < len(DATASETS[self.dataset].files()) else ""
        )

    def _fetch(self, missing: list[str]) -> None:
        info = DATASETS[self.dataset]
        try:
            with (
                _removed_on_failure(self.root, info.home(self.root)),
                stall_timeout(),
            ):
                info.dataset_class(str(self.root), train=True, download=True)
        except (URLError, OSError, RuntimeError) as error:
            raise UserError(
                f"{info.title} is not in {self.root} and could not be downloaded ({_one_line(error)}); "
                f"expected {self._expected()}{self._missing(missing)}"
            ) from None

    def _open(self, train: bool):
        info = DATASETS[self.dataset]
        cls = info.dataset_class
        try:
            if info.family == "cifar" and not self.verify_checksums:
                # Unverified files may be anything: never unpickled by torchvision's pickle.load.
                return read_cifar(cls, self.root, train)
            return cls(str(self.root), train=train, download=False)
        except RuntimeError as error:
            # Every file is there by now, so CIFAR's RuntimeError can only be its md5 check failing.
            if info.family == "cifar" and self.verify_checksums:
                raise UserError(
                    f"the {info.title} files in {info.folder(self.root)} do not match torchvision's "
                    "checksums (damaged, or not the official release); delete them to download again, "
                    "or set data.verify_checksums=false to load them as they are"
                ) from None
            raise UserError(
                f"cannot read {info.title} from {info.folder(self.root)}: {_one_line(error)}"
            ) from None
        except RefusedGlobal as error:
            raise UserError(
                f"refused to read {info.title} from {info.folder(self.root)}: {_one_line(error)}; "
                "only read files from sources you trust"
            ) from None
        except (OSError, ValueError, EOFError, KeyError, TypeError, AssertionError, UnpicklingError) as error:
            raise UserError(
                f"cannot read {info.title} from {info.folder(self.root)}: {_one_line(error)}"
            ) from None

    # --- splits ---------------------------------------------------------------------------------
    def load_splits(self):
        info = DATASETS[self.dataset]
        missing = self._find_files()
        if missing:
            if not self.download:
                raise UserError(
                    f"{info.title} not found: expected {self._expected()}{self._missing(missing)} "
                    "(set data.download=true to fetch it, or data.root=DIR to point at it)"
                )
            self._fetch(missing)
        if info.family == "mnist":
            self._check_idx_files()
        train_set, test_set = self._open(train=True), self._open(train=False)
        train_images, train_labels = self._as_tensors(train_set)
        test_images, test_labels = self._as_tensors(test_set)
        for labels, split in ((train_labels, "training"), (test_labels, "test")):
            self._check_labels(labels, len(train_set.classes), split)
        kept, held_out = stratified_split(
            train_labels.numpy(), self.val_fraction, self.split_seed, f"data.val_fraction={self.val_fraction}"
        )
        kept_t, held_out_t = torch.from_numpy(kept), torch.from_numpy(held_out)
        splits = {
            "train": (train_images[kept_t], train_labels[kept_t]),
            "val": (train_images[held_out_t], train_labels[held_out_t]),
            "test": (test_images, test_labels),
        }
        return splits, tuple(str(name) for name in train_set.classes)

    def _check_idx_files(self) -> None:
        """Each idx file whole, as many labels as images, and training and test images of one size."""
        folder = DATASETS[self.dataset].folder(self.root)
        shapes = {
            prefix: check_idx_pair(
                folder / f"{prefix}-images-idx3-ubyte", folder / f"{prefix}-labels-idx1-ubyte"
            )
            for prefix in ("train", "t10k")
        }
        if shapes["train"][1:] != shapes["t10k"][1:]:
            train, test = (" x ".join(map(str, shapes[prefix][1:])) for prefix in ("train", "t10k"))
            raise UserError(
                f"the training images in {folder} are {train} pixels, the test images {test}; "
                "the files come from different sets: replace them with the official files"
            )

    def _check_labels(self, labels: torch.Tensor, num_classes: int, split: str) -> None:
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
            info = DATASETS[self.dataset]
            wrong = labels[(labels < 0) | (labels >= num_classes)]
            raise UserError(
                f"the {split} labels of {info.title} in {info.folder(self.root)} include {int(wrong[0])}, "
                f"outside its classes 0-{num_classes - 1} ({len(wrong):,} of them); "
                "replace the damaged file with the official one"
            )

    def _as_tensors(self, dataset) -> tuple[torch.Tensor, torch.Tensor]:
        data = dataset.data
        if isinstance(data, torch.Tensor):  # MNIST family: N x H x W
            images = data.unsqueeze(1)
        else:  # CIFAR: a numpy array N x H x W x C
            images = torch.from_numpy(data).permute(0, 3, 1, 2)
        labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
        return _resized(images.contiguous(), self.image_size_requested), labels


def _unpack(packed: Path, target: Path) -> None:
    """Decompress `packed` into `target` through a temporary file, so a failure leaves `target` as
    it was."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with gzip.open(packed, "rb") as source, open(partial, "wb") as destination:
            shutil.copyfileobj(source, destination)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _newer_or_same(path: Path, than: Path) -> bool:
    return path.is_file() and path.stat().st_mtime >= than.stat().st_mtime


def _resized(images: torch.Tensor, size: int | None, chunk: int = 4096) -> torch.Tensor:
    """uint8 images resized once to size x size, in chunks so the float copy stays small."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for first in range(0, len(images), chunk):
        pixels = images[first : first + chunk].float()
        resized = F.interpolate(
            pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[first : first + chunk] = resized.clamp_(0, 255).round_().to(torch.uint8)
    return out
