"""A folder of image files, one subfolder per class, decoded in DataLoader workers.

    DIR/train/CLASS/*.png, DIR/val/CLASS/*.jpg[, DIR/test/CLASS/...]  with no test/, val/ is also test
    DIR/CLASS/*.png            a seeded, stratified val_fraction is split off; it is also the test split

torchvision's ImageFolder finds the classes and files. Every image is converted to `channels` (1 or 3)
and, in a worker, passed through the augmentation recipe's v2 transforms; batches arrive as uint8
N x C x size x size and are normalised on the device by the LightningModule. MixUp and CutMix run per
batch after the transfer. Every file is checked at setup, so an unreadable image is a one-line error
(or, with skip_bad_images, a warning) before training starts rather than a crash in a worker.
"""

from __future__ import annotations

import collections
import copy
import functools
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from ..training.errors import UserError, in_one_line
from ..training.quoting import typed_override
from .augment import check_augmentation, sample_transform
from .base import DataSpec, ImageDataModule, rounded_statistics, same_names_in_other_unicode_forms
from .batches import PADDING, shard
from .mixing import BatchMixer
from .splits import stratified_split


def default_num_workers() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(8, cpus)


# Full-range scale of the high-precision modes PIL opens, to map them onto 0-255: PIL's own
# conversion to L or RGB clips them instead (a 16-bit image comes out almost all white).
_HIGH_PRECISION_RANGE = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}


def _to_eight_bits(image: Image.Image) -> Image.Image:
    full_range = _HIGH_PRECISION_RANGE.get(image.mode)
    if full_range is None:
        return image
    values = np.asarray(image, dtype=np.float64) * (255.0 / full_range)
    return Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8), mode="L")


def load_image(path: str, mode: str) -> Image.Image:
    """Decode one file into `mode` ("L" or "RGB"), whatever it was stored as.

    Transparent pixels are composited onto black first: converting RGBA straight to RGB would show
    whatever colour the invisible pixels happen to store. A camera's EXIF orientation is applied,
    so a photo taken upright is upright. 16- and 32-bit integer images are read as 16-bit values
    (0-65535), floating-point ones as 0-1, and scaled to 8 bits.
    """
    try:
        with open(path, "rb") as file:
            image = Image.open(file)
            image.load()
    except OSError as error:
        # A file damaged in a way the setup check cannot see without decoding every image.
        reason = in_one_line(error)
        raise UserError(
            f"cannot read image {path}: {reason}; fix or remove it (data.skip_bad_images=true skips "
            "only the files found unreadable at setup)"
        ) from None
    ImageOps.exif_transpose(image, in_place=True)
    image = _to_eight_bits(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return image.convert(mode)


# JPEG data ends with the end-of-image marker; a file cut short (an interrupted copy or download)
# lacks it, and verify() reads only JPEG's headers, so it passes such a file.
_JPEG_END = b"\xff\xd9"


# Formats whose verify() finds a file cut short: PNG checks every chunk's checksum, WebP its
# container's sizes. Others (BMP, GIF, TIFF, ...) are rare in large folders, and decoded to check.
_VERIFIED_WHOLE = frozenset({"PNG", "WEBP"})


def _may_be_cut_short(path: str, image_format: str | None) -> bool:
    if image_format not in ("JPEG", "MPO"):
        return image_format not in _VERIFIED_WHOLE
    with open(path, "rb") as file:
        file.seek(-len(_JPEG_END), os.SEEK_END)
        return file.read() != _JPEG_END


def unreadable(path: str) -> str | None:
    """Why PIL cannot read this file, or None. `verify()` checks structure without decoding the pixels;
    a JPEG that does not end as one should (some valid files carry trailing bytes) and the formats
    verify() cannot check to their end are decoded, so the check stays a header read per file on a
    large folder of JPEG or PNG files."""
    try:
        with Image.open(path) as image:
            image_format = image.format
            image.verify()
        if _may_be_cut_short(path, image_format):
            with Image.open(path) as image:
                image.load()
    except Exception as error:  # PIL raises many types for a bad file; all mean the same here
        return in_one_line(error)
    return None


def _is_hidden(name: str) -> bool:
    # A zip made on macOS unpacks elsewhere with __MACOSX/, a tree of ._* metadata files that a Mac's
    # own unzip never shows: hidden there as the dot names are everywhere.
    return name.startswith(".") or name == "__MACOSX"


def _visible_dir(entry: os.DirEntry) -> bool:
    return not _is_hidden(entry.name) and _stat_says(entry.is_dir)


def _visible_file(entry: os.DirEntry) -> bool:
    return not _is_hidden(entry.name) and _stat_says(entry.is_file)


def _stat_says(test) -> bool:
    # A link that loops or points nowhere is neither a file nor a folder, as os.walk takes it; the
    # DirEntry tests raise for a loop.
    try:
        return test()
    except OSError:
        return False


class _ClassFolders(ImageFolder):
    """torchvision's ImageFolder without hidden entries: a notebook's .ipynb_checkpoints/ and macOS's
    __MACOSX/ are not classes, nor macOS's ._photo.jpg (its metadata, not an image) a sample."""

    def __init__(self, root: str, loader) -> None:
        # Images of formats ImageFolder does not read (GIF, HEIC, ...), by suffix: left out, and said so.
        self.passed_over: collections.Counter[str] = collections.Counter()

        def is_image(path: str) -> bool:
            inside = Path(path).relative_to(root).parts[1:]  # below the class folder
            if any(map(_is_hidden, inside)):
                return False
            if has_file_allowed_extension(path, IMG_EXTENSIONS):
                return True
            suffix = Path(path).suffix.lower()
            if suffix in _OTHER_IMAGE_SUFFIXES:
                self.passed_over[suffix] += 1
            return False

        # allow_empty: an empty class folder gets the error in _scan, which names it.
        super().__init__(root, loader=loader, is_valid_file=is_image, allow_empty=True)

    def find_classes(self, directory):
        classes = sorted(entry.name for entry in os.scandir(directory) if _visible_dir(entry))
        if not classes:
            raise FileNotFoundError(directory)
        return classes, {name: index for index, name in enumerate(classes)}

    @staticmethod
    def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        for name in class_to_idx:
            _refuse_a_link_back_up(Path(directory) / name)
        return ImageFolder.make_dataset(directory, class_to_idx, extensions, is_valid_file, allow_empty)


def _refuse_a_link_back_up(class_folder: Path) -> None:
    """ImageFolder follows links to folders. One that leads back up (`ln -s .. all`) is walked round
    and round until the path grows too long, and every image above it, other classes' included, is
    taken many times over as this class."""
    for folder, subfolders, _ in os.walk(class_folder):  # links are listed here, not entered
        for name in subfolders:
            link = Path(folder) / name
            if link.is_symlink() and Path(folder).resolve().is_relative_to(target := link.resolve()):
                raise UserError(
                    f"{link} links back to {target}, a folder above it: the images under {target} would "
                    f"be taken again and again as class {class_folder.name!r}; remove the link"
                )


# Image formats people keep beside their JPEGs that torchvision's ImageFolder does not take.
_OTHER_IMAGE_SUFFIXES = frozenset(
    {".gif", ".jfif", ".heic", ".heif", ".avif", ".jp2", ".ico", ".tga", ".psd"}
)

_SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test", "testing", "eval"})


def _images_beside_class_folders(folder: Path) -> list[str]:
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if _visible_file(entry) and has_file_allowed_extension(entry.name, IMG_EXTENSIONS)
    )


def _one_level_down_hint(only_folder: Path) -> str:
    """The fix when the one folder found holds folders and nothing else: a zipped data set unpacks as
    its own folder (beside __MACOSX/ when zipped on a Mac), one level below the folder named."""
    try:
        entries = list(os.scandir(only_folder))
    except OSError:
        return ""
    if any(_visible_file(entry) for entry in entries) or sum(map(_visible_dir, entries)) < 2:
        return ""
    return f"; if its folders are the classes, set {typed_override('data.root', only_folder)}"


def _misplaced_root(folder: Path, classes: list[str]) -> str | None:
    """Why `folder` looks like the folder above the class folders, or None. ImageFolder takes images
    at any depth below a class folder, so split folders of other names (Train/, validation/), or a
    folder holding two data sets, would silently train a classifier of those names. Class folders
    that keep their images in subfolders of shared names (2019/, 2020/ in each) are a class each."""
    below = {}
    for name in classes:
        try:
            entries = list(os.scandir(folder / name))
        except PermissionError:
            return None  # the empty-class check names the folder it cannot read
        if any(_visible_file(entry) for entry in entries):
            return None  # images right in a class folder: a class
        below[name] = {entry.name for entry in entries if _visible_dir(entry)}
    shared = set.intersection(*below.values()) if below else set()
    folders, subfolders = ", ".join(classes[:3]), ", ".join(sorted(shared)[:3])
    if shared and {name.lower() for name in classes} <= _SPLIT_NAMES:
        return (
            f"its folders {folders} hold the same class folders ({subfolders}, ...): they look like "
            f"splits; name them train/ and val/ (and test/), lower case, in {folder}"
        )
    if {name.lower() for name in shared} & _SPLIT_NAMES:
        return (
            f"its folders {folders} each hold split folders ({subfolders}, ...): data.root is a level too "
            f"high; set {typed_override('data.root', folder / classes[0])}"
        )
    return None


class _MarkedPaddingSampler(torch.utils.data.distributed.DistributedSampler):
    """This process's share of an evaluation split, in order, padded to the length of every other
    process's share (they must run as many steps); a padding position is -1 - index."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        # Not DistributedSampler's __init__, which asks the process group; a subclass only so that
        # Lightning keeps it instead of putting its own in its place.
        self.length, self.rank, self.world_size = length, rank, world_size
        self.num_replicas, self.epoch, self.shuffle, self.drop_last = world_size, 0, False, False

    def __len__(self) -> int:
        return math.ceil(self.length / self.world_size)

    def __iter__(self):
        return iter(shard(torch.arange(self.length), self.rank, self.world_size, mark_padding=True).tolist())

    def set_epoch(self, epoch: int) -> None:
        pass  # the same order every epoch


class _LabelledPadding(Dataset):
    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        if index >= 0:
            return self.dataset[index]
        image, _ = self.dataset[-1 - index]
        return image, PADDING


class ImageFolderDataModule(ImageDataModule):
    """Images in class folders (see the module docstring for the two layouts).

    `mean`/`std` null: computed per channel from up to `stats_samples` training images, seen as the
    evaluation transform shows them. `num_workers` null: one per CPU, at most 8.
    """

    def __init__(
        self,
        root: str,
        image_size: int = 224,
        channels: int = 3,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int | None = None,
        augment: str = "standard",
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        stats_samples: int = 1000,
        skip_bad_images: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        if channels not in (1, 3):
            raise UserError(f"data.channels must be 1 or 3, not {channels}")
        if (mean is None) != (std is None) or (mean is not None and not len(mean) == len(std) == channels):
            raise UserError(f"give data.mean and data.std together, {channels} values each, or neither")
        try:
            self.augment = check_augmentation(augment)
        except ValueError as error:
            raise UserError(f"data.augment: {error}") from None
        self.root, self.image_size_requested, self.channels_requested = Path(root), image_size, channels
        self.val_fraction, self.split_seed, self.seed = val_fraction, split_seed, seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.mean, self.std, self.stats_samples = mean, std, stats_samples
        self.skip_bad_images = skip_bad_images
        self._datasets: dict[str, Dataset] = {}
        # Said by evaluate.py when the splits are not folders of their own.
        self.evaluation_note: str | None = None
        self._mixer: BatchMixer | None = None

    # --- finding and checking the files ------------------------------------------------------------
    def _scan(self, folder: Path) -> ImageFolder:
        loader = functools.partial(load_image, mode="L" if self.channels_requested == 1 else "RGB")
        try:
            found = _ClassFolders(str(folder), loader=loader)
        except FileNotFoundError:
            raise UserError(
                f"{folder} holds no class folders; expected {folder}/CLASS/IMAGE.jpg, one folder per class"
            ) from None
        except PermissionError as error:
            raise UserError(f"cannot read folder {error.filename or folder}: permission denied") from None
        if len(found.classes) < 2:
            raise UserError(
                f"{folder} holds a single class folder ({found.classes[0]}); a classifier needs at least two"
                + _one_level_down_hint(folder / found.classes[0])
            )
        counts = np.bincount(np.asarray(found.targets, dtype=np.int64), minlength=len(found.classes))
        if counts.sum() == 0:
            raise UserError(f"{folder} holds no images (.jpg, .png, ... files) in its class folders")
        if found.passed_over:
            left_out = ", ".join(f"{count} {suffix}" for suffix, count in sorted(found.passed_over.items()))
            warnings.warn(
                f"{folder}: left out {left_out} file(s), formats torchvision's ImageFolder does not read; "
                f"it reads {', '.join(IMG_EXTENSIONS)}",
                stacklevel=2,
            )
        loose = _images_beside_class_folders(folder)
        if loose:
            # ImageFolder passes them over without a word; a class is the folder an image is in.
            warnings.warn(
                f"{folder}: left out {len(loose)} image(s) in no class folder ({', '.join(loose[:3])}); "
                "move each into the folder of its class",
                stacklevel=2,
            )
        misplaced = _misplaced_root(folder, found.classes)
        if misplaced:
            raise UserError(f"{folder} does not hold class folders of images: {misplaced}")
        empty = [name for name, count in zip(found.classes, counts, strict=True) if count == 0]
        if empty:
            # os.walk, which finds the images, passes over a folder it may not read.
            unreadable_folder = next(
                (name for name in empty if not os.access(folder / name, os.R_OK | os.X_OK)), None
            )
            if unreadable_folder:
                raise UserError(f"cannot read class folder {folder / unreadable_folder}: permission denied")
            raise UserError(f"class folder {folder / empty[0]} holds no images ({len(empty)} empty in all)")
        self._drop_unreadable(found)
        return found

    def _drop_unreadable(self, found: ImageFolder) -> None:
        paths = [path for path, _ in found.samples]
        with ThreadPoolExecutor(max_workers=max(1, self.num_workers)) as pool:
            reasons = list(pool.map(unreadable, paths, chunksize=64))
        bad = [(path, why) for path, why in zip(paths, reasons, strict=True) if why is not None]
        if not bad:
            return
        if not self.skip_bad_images:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise UserError(
                f"cannot read image {bad[0][0]}: {bad[0][1]}{more}; fix or remove it, "
                "or set data.skip_bad_images=true to skip unreadable images"
            )
        warnings.warn(
            f"skipping {len(bad)} unreadable image(s): " + ", ".join(path for path, _ in bad[:5]),
            stacklevel=2,
        )
        bad_paths = {path for path, _ in bad}
        # samples/targets/imgs are DatasetFolder's public attributes; __getitem__ reads samples.
        found.samples = [sample for sample in found.samples if sample[0] not in bad_paths]
        found.imgs = found.samples
        found.targets = [target for _, target in found.samples]
        lost = sorted(set(range(len(found.classes))) - set(found.targets))
        if lost:
            raise UserError(f"every image of class {found.classes[lost[0]]!r} in {found.root} is unreadable")

    def _with_transform(self, found: ImageFolder, train: bool) -> ImageFolder:
        view = copy.copy(found)  # shares the sample list; only the transform differs
        view.transform = sample_transform(self.augment, self.image_size_requested, train=train)
        return view

    # --- setup ---------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._spec is not None:
            return
        if self.root.is_file():
            raise UserError(
                f"data.root={self.root} is a file; set data.root=DIR, the folder of class folders"
            )
        if not self.root.is_dir():
            # A relative root is read from the working folder, which is not always the one meant.
            where = "" if self.root.is_absolute() else f", looked for in {Path.cwd()}"
            raise UserError(f"image folder {self.root} does not exist{where} (set data.root=DIR)")
        if (self.root / "train").is_dir():
            if not (self.root / "val").is_dir():
                raise UserError(
                    f"{self.root} has train/ but no val/; add val/ or put the class folders in {self.root}"
                )
            train = self._scan(self.root / "train")
            val = self._scan(self.root / "val")
            test = self._scan(self.root / "test") if (self.root / "test").is_dir() else val
            if test is val:
                # evaluate.py's test/acc is then val/'s, which it says, as for class folders alone.
                self.evaluation_note = f"{self.root} has no test/: its test split is val/, {len(val)} images"
            for name, other in (("val", val), ("test", test)):
                if other.classes != train.classes:
                    differ = ", ".join(sorted(set(other.classes) ^ set(train.classes))[:5])
                    raise UserError(
                        f"{self.root}/{name} and {self.root}/train hold different class folders "
                        f"(in one but not the other: {differ})"
                        + same_names_in_other_unicode_forms(other.classes, train.classes)
                    )
            self._datasets = {
                "train": self._with_transform(train, train=True),
                "val": self._with_transform(val, train=False),
                "test": self._with_transform(test, train=False),
            }
        else:
            found = self._scan(self.root)
            kept, held_out = stratified_split(
                np.asarray(found.targets),
                self.val_fraction,
                self.split_seed,
                f"data.val_fraction={self.val_fraction}",
            )
            evaluation = Subset(self._with_transform(found, train=False), held_out.tolist())
            self.evaluation_note = (
                f"{self.root} holds class folders only: its val and test splits are the {len(held_out)} of "
                f"its {len(found)} images that data.val_fraction={self.val_fraction} holds out from training"
            )
            self._datasets = {
                "train": Subset(self._with_transform(found, train=True), kept.tolist()),
                "val": evaluation,
                "test": evaluation,
            }
            train = found
        mean, std = (self.mean, self.std) if self.mean is not None else self._statistics()
        self._spec = DataSpec(
            class_names=tuple(train.classes),
            channels=self.channels_requested,
            image_size=self.image_size_requested,
            mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in std),
        )
        try:
            self._mixer = BatchMixer(len(train.classes), self.mixup_alpha, self.cutmix_alpha)
        except ValueError as error:
            raise UserError(f"data: {error}") from None

    def _statistics(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of a seeded sample of training images, without augmentation."""
        train = self._datasets["train"]
        base = train.dataset if isinstance(train, Subset) else train
        indices = train.indices if isinstance(train, Subset) else range(len(train))
        chosen = np.random.default_rng(self.split_seed).permutation(len(indices))[: self.stats_samples]
        plain = Subset(self._with_transform(base, train=False), [indices[int(i)] for i in chosen])
        total = torch.zeros(self.channels_requested, dtype=torch.float64)
        squares = torch.zeros_like(total)
        pixels = 0
        for images, _ in self._loader(plain, self.eval_batch_size, shuffle=False, persistent=False):
            values = images.to(torch.float64).div_(255).transpose(0, 1).flatten(1)  # C x (N*H*W)
            total += values.sum(dim=1)
            squares += values.square().sum(dim=1)
            pixels += values.shape[1]
        mean = total / pixels
        std = (squares / pixels - mean.square()).clamp_min(1e-12).sqrt()
        return rounded_statistics(mean, std)

    # --- loaders -------------------------------------------------------------------------------
    def split_sizes(self) -> dict[str, int]:
        self.setup()
        return {name: len(dataset) for name, dataset in self._datasets.items()}

    def _loader(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool,
        persistent: bool = True,
        sampler: torch.utils.data.Sampler | None = None,
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=persistent and self.num_workers > 0,
        )

    def _evaluation_loader(self, split: str) -> DataLoader:
        dataset = self._datasets[split]
        trainer = self.trainer
        if trainer is None or trainer.world_size <= 1:
            return self._loader(dataset, self.eval_batch_size, shuffle=False)
        # Lightning's DistributedSampler would pad each process's share with repeated images that the
        # metrics then count twice; here they come labelled PADDING, and are left out.
        sampler = _MarkedPaddingSampler(len(dataset), trainer.global_rank, trainer.world_size)
        return self._loader(_LabelledPadding(dataset), self.eval_batch_size, shuffle=False, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self._datasets["train"], self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return self._evaluation_loader("test")

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if (
            self._mixer is None
            or not self._mixer.enabled
            or self.trainer is None
            or not self.trainer.training
        ):
            return batch
        images, labels = batch
        return self._mixer(images, labels, self._generator(torch.device("cpu")))

    def load_state_dict(self, state_dict: dict) -> None:
        if "mix_generator" in state_dict:  # a checkpoint of before the draws were made per process
            state_dict = {"cpu": state_dict["mix_generator"]}
        super().load_state_dict(state_dict)
