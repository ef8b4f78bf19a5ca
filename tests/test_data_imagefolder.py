"""Image folders through torchvision's ImageFolder: both layouts, mixed file formats and colour modes,
normalization from the data, and one-line errors for folders a user gets wrong."""

from __future__ import annotations

import functools
import io
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from zoo.data import DataSpec, ImageFolderDataModule
from zoo.data.imagefolder import load_image
from zoo.training.errors import UserError
from zoo.training.evaluation import check_data_fits
from zoo.training.module import ImageClassifier

from .conftest import run_script

# (PIL mode, file suffix): grayscale, RGB and RGBA, as PNG and JPEG (JPEG cannot hold alpha).
FORMATS = [("L", ".png"), ("RGB", ".png"), ("RGBA", ".png"), ("L", ".jpg"), ("RGB", ".jpeg")]


def write_image(path: Path, mode: str, shade: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = 20 + seed % 7, 24 - seed % 5  # sizes and aspect ratios differ, as real photos do
    bands = len(mode)
    pixels = (rng.integers(0, 60, size=(height, width, bands)) + shade).clip(0, 255).astype(np.uint8)
    if mode == "RGBA":
        pixels[..., 3] = 255
        pixels[: height // 2, :, 3] = 0  # half transparent
    Image.fromarray(pixels[..., 0] if bands == 1 else pixels, mode).save(path)


def write_classes(folder: Path, classes=("cat", "dog", "fox"), per_class: int = 10, seed: int = 0) -> None:
    for index, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        for number in range(per_class):
            mode, suffix = FORMATS[(number + index) % len(FORMATS)]
            write_image(folder / name / f"{number}{suffix}", mode, shade=60 * index, seed=seed + number)


def test_train_runs_end_to_end_on_a_train_val_folder_with_workers_and_mixing(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_classes(root / "train", per_class=12)
    write_classes(root / "val", per_class=4, seed=100)  # no test/: val/ is also the test split
    run_dir = tmp_path / "run"
    run_script(
        "train.py",
        "data=imagefolder",
        f"data.root={root}",
        "data.image_size=32",
        "data.batch_size=8",
        "data.num_workers=1",
        "data.augment=alexnet",
        "data.mixup_alpha=0.2",
        "data.cutmix_alpha=1.0",
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["test/acc"] <= 1
    config = (run_dir / "config.yaml").read_text()
    assert "mixup_alpha: 0.2" in config
    # Evaluated on a folder of class folders alone, the checkpoint is scored on its held-out share,
    # and evaluate.py says so.
    evaluated = run_script(
        "evaluate.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        # data.KEY= as in training: without data=NAME it is laid over the checkpoint's data.
        f"data.root={root / 'train'}",
        f"hydra.run.dir={tmp_path / 'evaluated'}",
    )
    assert f"{root / 'train'} holds class folders only: its val and test splits are the 4 of its 36" in (
        evaluated.stdout
    )


def test_a_run_on_a_relative_folder_is_evaluated_from_anywhere(tmp_path: Path) -> None:
    # data.root is relative to where the run started; evaluate.py started elsewhere, where a folder
    # of the same name holds other images, must still read the run's own.
    started, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    write_classes(started / "images", per_class=10)
    write_classes(elsewhere / "images", classes=("ant", "bee", "cow"), per_class=10)
    run_dir = tmp_path / "run"
    run_script(
        "train.py",
        "data=imagefolder",
        "data.root=images",
        "data.image_size=16",
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        cwd=started,
    )
    evaluated = run_script(
        "evaluate.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        "tensorboard=false",
        f"hydra.run.dir={tmp_path / 'evaluated'}",
        cwd=elsewhere,
    )
    assert f"{started / 'images'} holds class folders only" in evaluated.stdout


def test_a_corrupt_image_is_a_one_line_error_naming_the_file(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_classes(root, per_class=4)
    bad = root / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    result = run_script(
        "train.py",
        "data=imagefolder",
        f"data.root={root}",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'r'}",
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert str(bad) in line and "skip_bad_images=true" in line
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_skip_bad_images_warns_and_leaves_them_out(tmp_path: Path) -> None:
    write_classes(tmp_path, per_class=10)
    (tmp_path / "cat" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    data = ImageFolderDataModule(str(tmp_path), image_size=16, num_workers=0, skip_bad_images=True)
    with pytest.warns(UserWarning, match="truncated.jpg"):
        data.setup()
    assert sum(data.split_sizes()[split] for split in ("train", "val")) == 30


def _cut_jpeg(path: Path, keep: float = 0.5, trailing: bytes = b"") -> None:
    """A 64x64 JPEG cut to `keep` of its bytes (an interrupted copy), then `trailing` appended."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG")
    data = buffer.getvalue()
    path.write_bytes(data[: int(len(data) * keep)] + trailing)


# verify() reads only a JPEG's headers, so a file cut in half passed the setup check and crashed
# the statistics (or a worker) with "OSError: image file is truncated", skip_bad_images or not.
# A whole JPEG with bytes after its end marker (as some cameras write) is still read.
def test_a_truncated_jpeg_is_found_at_setup(tmp_path: Path) -> None:
    write_classes(tmp_path, classes=("cat", "dog"), per_class=6)
    bad = tmp_path / "cat" / "big.jpg"
    _cut_jpeg(bad)
    _cut_jpeg(tmp_path / "dog" / "padded.jpg", keep=1.0, trailing=b"\0" * 16)
    with pytest.raises(UserError) as raised:
        ImageFolderDataModule(str(tmp_path), image_size=32, num_workers=0).setup()
    message = str(raised.value)
    assert str(bad) in message and "skip_bad_images=true" in message and "\n" not in message
    data = ImageFolderDataModule(str(tmp_path), image_size=32, num_workers=0, skip_bad_images=True)
    with pytest.warns(UserWarning, match="skipping 1 unreadable image.*big.jpg"):
        data.setup()
    assert sum(data.split_sizes()[split] for split in ("train", "val")) == 13
    # Decoding it anyway (a file broken in a way the setup check cannot see) names the file.
    with pytest.raises(UserError, match=re.escape(f"cannot read image {bad}: image file is truncated")):
        load_image(str(bad), "RGB")


# verify() reads a BMP's, PPM's or TIFF's header only: a file cut short passed the setup check and
# crashed a DataLoader worker, with twenty lines of its traceback, skip_bad_images or not.
@pytest.mark.parametrize("suffix", [".bmp", ".ppm", ".tiff"])
def test_a_truncated_image_of_any_format_is_found_at_setup(tmp_path: Path, suffix: str) -> None:
    write_classes(tmp_path, classes=("cat", "dog"), per_class=6)
    bad = tmp_path / "cat" / f"cut{suffix}"
    pixels = np.random.default_rng(0).integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(bad)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size * 2 // 3])
    with pytest.raises(UserError, match=re.escape(f"cannot read image {bad}")):
        ImageFolderDataModule(str(tmp_path), image_size=32, num_workers=0).setup()
    data = ImageFolderDataModule(str(tmp_path), image_size=32, num_workers=0, skip_bad_images=True)
    with pytest.warns(UserWarning, match=f"skipping 1 unreadable image.*cut{suffix}"):
        data.setup()


def test_hidden_files_and_folders_are_not_images_or_classes(tmp_path: Path) -> None:
    # A notebook's .ipynb_checkpoints/ was a class (an empty one stopped the run); macOS's ._0.png, its
    # metadata beside an image, stopped it as an unreadable image.
    write_classes(tmp_path, classes=("cat", "dog"), per_class=5)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "cat" / "._0.png").write_bytes(b"\0\5\26\7 Mac OS X metadata")
    (tmp_path / "dog" / ".thumbnails").mkdir()
    write_image(tmp_path / "dog" / ".thumbnails" / "0.png", "RGB", shade=0, seed=0)
    data = ImageFolderDataModule(str(tmp_path), image_size=16, val_fraction=0.2, num_workers=0)
    assert data.class_names == ("cat", "dog")
    assert sum(data.split_sizes()[split] for split in ("train", "val")) == 10


# A zip made on macOS unpacks elsewhere with __MACOSX/ beside the folders it holds, full of ._*
# files: it was taken as a class, and refused as one that holds no images.
def test_macos_zip_metadata_is_not_a_class_in_either_layout(tmp_path: Path) -> None:
    write_classes(tmp_path / "flat", classes=("cat", "dog"), per_class=5)
    for split in ("train", "val"):
        write_classes(tmp_path / "split" / split, classes=("cat", "dog"), per_class=2)
    for metadata in (
        tmp_path / "flat" / "__MACOSX" / "cat",
        tmp_path / "split" / "train" / "__MACOSX" / "dog",
    ):
        metadata.mkdir(parents=True)
        (metadata / "._0.png").write_bytes(b"\0\5\26\7 Mac OS X metadata")
    flat = ImageFolderDataModule(str(tmp_path / "flat"), image_size=16, val_fraction=0.2, num_workers=0)
    assert flat.class_names == ("cat", "dog")
    assert sum(flat.split_sizes()[split] for split in ("train", "val")) == 10
    split = ImageFolderDataModule(str(tmp_path / "split"), image_size=16, num_workers=0)
    assert split.class_names == ("cat", "dog") and split.split_sizes()["train"] == 4


def test_a_zipped_folder_unpacked_beside_its_metadata_names_the_folder_below(tmp_path: Path) -> None:
    # images.zip unpacks as images/ beside __MACOSX/: once __MACOSX/ is no class, images/ is the only one.
    write_classes(tmp_path / "images", classes=("cat", "dog"), per_class=3)
    (tmp_path / "__MACOSX" / "images").mkdir(parents=True)
    with pytest.raises(UserError) as raised:
        ImageFolderDataModule(str(tmp_path), num_workers=0).setup()
    assert str(raised.value).endswith(f"if its folders are the classes, set data.root={tmp_path / 'images'}")


def test_a_single_class_folder_holding_one_folder_gets_no_folder_below_to_set(tmp_path: Path) -> None:
    # Set as data.root, its one folder would be a single class again: the hint is for two or more.
    write_classes(tmp_path / "only", classes=("photos",), per_class=3)
    with pytest.raises(UserError) as raised:
        ImageFolderDataModule(str(tmp_path), num_workers=0).setup()
    assert (
        str(raised.value) == f"{tmp_path} holds a single class folder (only); a classifier needs at least two"
    )


def test_images_beside_the_class_folders_are_said_to_be_left_out(tmp_path: Path) -> None:
    # ImageFolder trains without them and says nothing; a README or a labels file beside them is no image.
    write_classes(tmp_path, classes=("cat", "dog"), per_class=5)
    write_image(tmp_path / "unsorted.JPG", "RGB", shade=0, seed=0)
    (tmp_path / "README.txt").write_text("my photos")
    data = ImageFolderDataModule(str(tmp_path), image_size=8, val_fraction=0.2, num_workers=0)
    with pytest.warns(
        UserWarning, match=re.escape(f"{tmp_path}: left out 1 image(s) in no class folder (unsorted.JPG)")
    ):
        data.setup()
    assert sum(data.split_sizes()[split] for split in ("train", "val")) == 10


# macOS writes an accented letter in a zip's names as the letter and a combining accent; most other
# systems as one character. Printed, the two names look the same, so the refusals read
# "in one but not the other: café, café" and "has classes ['café'] but ... trained on ['café']".
def test_class_names_in_two_unicode_forms_are_told_apart(tmp_path: Path) -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    write_classes(tmp_path / "train", classes=(composed, "dog"), per_class=2)
    write_classes(tmp_path / "val", classes=(decomposed, "dog"), per_class=2)
    fix = f"rename the folder {decomposed!a} to {composed!a}"
    with pytest.raises(UserError, match=re.escape(fix)):
        ImageFolderDataModule(str(tmp_path), num_workers=0).setup()
    trained_on = DataSpec((composed, "dog"), 3, 16, (0.5,) * 3, (0.2,) * 3).to_dict()
    with pytest.raises(UserError, match=re.escape(fix)):
        check_data_fits(DataSpec((decomposed, "dog"), 3, 16, (0.5,) * 3, (0.2,) * 3), trained_on)


def test_links_that_loop_are_neither_classes_nor_images(tmp_path: Path) -> None:
    # A link pointing at itself, beside the images or the class folders, stopped setup with a traceback.
    write_classes(tmp_path, classes=("cat", "dog"), per_class=5)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "cat" / "loop").symlink_to(tmp_path / "cat" / "loop")
    data = ImageFolderDataModule(str(tmp_path), image_size=16, val_fraction=0.2, num_workers=0)
    assert data.class_names == ("cat", "dog")
    assert sum(data.split_sizes()[split] for split in ("train", "val")) == 10
    # Named as an image, it is an image that cannot be read, and said so.
    (tmp_path / "dog" / "9.png").symlink_to(tmp_path / "dog" / "9.png")
    with pytest.raises(UserError, match=re.escape(f"cannot read image {tmp_path / 'dog' / '9.png'}: ")):
        ImageFolderDataModule(str(tmp_path), image_size=16, val_fraction=0.2, num_workers=0).setup()


def test_a_link_back_up_from_a_class_folder_is_refused(tmp_path: Path) -> None:
    # ImageFolder walked round it until the path grew too long: the other class's images were taken
    # dozens of times over as this class, and the run trained on them.
    write_classes(tmp_path, classes=("cat", "dog"), per_class=5)
    (tmp_path / "cat" / "more").mkdir()
    (tmp_path / "cat" / "more" / "all").symlink_to(tmp_path)
    message = f"{tmp_path / 'cat' / 'more' / 'all'} links back to {tmp_path}, a folder above it"
    with pytest.raises(UserError, match=re.escape(message)):
        ImageFolderDataModule(str(tmp_path), image_size=16, val_fraction=0.2, num_workers=0).setup()
    # A link to a folder elsewhere is followed, as ImageFolder does.
    write_classes(tmp_path.parent / f"{tmp_path.name}-extra", classes=("cat",), per_class=3)
    (tmp_path / "cat" / "more" / "all").unlink()
    (tmp_path / "cat" / "more" / "extra").symlink_to(tmp_path.parent / f"{tmp_path.name}-extra" / "cat")
    data = ImageFolderDataModule(str(tmp_path), image_size=16, val_fraction=0.2, num_workers=0)
    assert sum(data.split_sizes()[split] for split in ("train", "val")) == 13


def test_class_folders_that_are_links_are_classes(tmp_path: Path) -> None:
    # A data set put together from links to class folders kept elsewhere, as ImageFolder takes it.
    write_classes(tmp_path / "store", classes=("cat", "dog"), per_class=5)
    root = tmp_path / "images"
    root.mkdir()
    for name in ("cat", "dog"):
        (root / name).symlink_to(tmp_path / "store" / name)
    data = ImageFolderDataModule(str(root), image_size=16, val_fraction=0.2, num_workers=0)
    assert data.class_names == ("cat", "dog")
    assert sum(data.split_sizes()[split] for split in ("train", "val")) == 10


def test_a_link_back_up_is_refused_when_data_root_is_given_through_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    write_classes(real, classes=("cat", "dog"), per_class=3)
    (real / "cat" / "all").symlink_to(real)
    (tmp_path / "via").symlink_to(real)
    with pytest.raises(
        UserError, match=re.escape(f"{tmp_path / 'via' / 'cat' / 'all'} links back to {real}")
    ):
        ImageFolderDataModule(str(tmp_path / "via"), image_size=16, val_fraction=0.2, num_workers=0).setup()


def test_images_of_formats_imagefolder_does_not_read_are_named(tmp_path: Path) -> None:
    # A folder of GIFs (or phone HEICs) beside JPEGs trained on the JPEGs alone, without a word.
    write_classes(tmp_path, classes=("cat", "dog"), per_class=5)
    Image.new("RGB", (8, 8)).save(tmp_path / "cat" / "moving.gif")
    (tmp_path / "dog" / "phone.HEIC").write_bytes(b"not decoded here")
    data = ImageFolderDataModule(str(tmp_path), image_size=8, val_fraction=0.2, num_workers=0)
    with pytest.warns(UserWarning, match=re.escape(f"{tmp_path}: left out 1 .gif, 1 .heic file(s)")):
        data.setup()
    assert sum(data.split_sizes()[split] for split in ("train", "val")) == 10


def _splits_with_other_names(root: Path) -> None:
    for split in ("Train", "Val"):
        write_classes(root / split, classes=("a", "b"), per_class=3)


def _two_data_sets(root: Path) -> None:
    for data_set in ("ds1", "ds2"):
        for split in ("train", "val"):
            write_classes(root / data_set / split, classes=("a", "b"), per_class=3)


# ImageFolder takes images at any depth below a class folder, so these trained a classifier of
# "Train" against "Val", or "ds1" against "ds2", without a word.
@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (
            _splits_with_other_names,
            "they look like splits; name them train/ and val/ (and test/), lower case",
        ),
        (
            _two_data_sets,
            "each hold split folders (train, val, ...): data.root is a level too high; set "
            "data.root={root}/ds1",
        ),
    ],
    ids=["Train-Val", "two-data-sets"],
)
def test_a_folder_above_the_class_folders_is_refused(tmp_path: Path, make, needle: str) -> None:
    root = tmp_path / "images"
    make(root)
    with pytest.raises(UserError, match=re.escape(needle.format(root=root))):
        ImageFolderDataModule(str(root), num_workers=0).setup()
    # Subfolders of a class's own (by date, by source) are still its images, also when every class
    # has subfolders of the same names.
    nested = tmp_path / "nested"
    for name, part in (("a", "2019"), ("a", "2020"), ("b", "phone")):
        write_classes(nested / name, classes=(part,), per_class=10)
    assert ImageFolderDataModule(str(nested), image_size=8, num_workers=0).class_names == ("a", "b")
    by_year = tmp_path / "by_year"
    for name in ("cat", "dog"):
        write_classes(by_year / name, classes=("2019", "2020"), per_class=5)
    assert ImageFolderDataModule(str(by_year), image_size=8, num_workers=0).class_names == ("cat", "dog")


def test_a_split_too_small_for_the_classes_says_what_to_change(tmp_path: Path) -> None:
    # scikit-learn's sentence alone ("The test_size = 1 should be greater or equal to the number of
    # classes = 3") named no fix.
    write_classes(tmp_path, per_class=3)
    message = "each class needs images on both sides of the split (9 images, 3 classes): change the fraction"
    with pytest.raises(UserError, match=re.escape(message)):
        ImageFolderDataModule(str(tmp_path), num_workers=0, val_fraction=0.1).setup()


def test_a_class_folder_this_user_cannot_read_is_not_called_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # os.walk passes over a folder it may not read, so it was reported as holding no images. The tests
    # run as root, whom permissions do not stop: the folder is made unreadable by answering as the
    # file system would for another user.
    write_classes(tmp_path, classes=("a", "b"), per_class=3)
    locked = tmp_path / "a"  # first in order, so it is the first folder looked into
    real_access, real_scandir = os.access, os.scandir

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(UserError, match=re.escape(f"cannot read class folder {locked}: permission denied")):
        ImageFolderDataModule(str(tmp_path), num_workers=0).setup()


def test_photos_are_turned_upright_and_deep_images_scaled_to_eight_bits(tmp_path: Path) -> None:
    # A camera stores a portrait photo as landscape pixels and an EXIF orientation; it trained sideways.
    photo = tmp_path / "portrait.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (30, 10), (200, 50, 50)).save(photo, exif=exif)
    assert load_image(str(photo), "RGB").size == (10, 30)
    # 16-bit and floating-point images were clipped to 255 (a 16-bit scan came out all white).
    deep = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16)).save(deep)
    assert np.asarray(load_image(str(deep), "L")).tolist() == [[0, 128, 255]]
    floats = tmp_path / "floats.tiff"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(floats)
    assert np.asarray(load_image(str(floats), "RGB"))[0, :, 0].tolist() == [0, 128, 255]


def test_a_train_val_folder_without_test_says_its_test_split_is_val(tmp_path: Path) -> None:
    # evaluate.py printed test/acc for val/'s images without a word; with test/ there is nothing to say.
    write_classes(tmp_path / "train", per_class=4)
    write_classes(tmp_path / "val", per_class=2, seed=100)
    data = ImageFolderDataModule(str(tmp_path), image_size=16, channels=1, num_workers=0)
    assert data.split_sizes() == {"train": 12, "val": 6, "test": 6}
    assert data.evaluation_note == f"{tmp_path} has no test/: its test split is val/, 6 images"
    write_classes(tmp_path / "test", per_class=1, seed=200)
    data = ImageFolderDataModule(str(tmp_path), image_size=16, channels=1, num_workers=0)
    assert data.split_sizes()["test"] == 3 and data.evaluation_note is None


def test_a_folder_of_class_folders_is_split_stratified_and_seeded(tmp_path: Path) -> None:
    write_classes(tmp_path, per_class=10)
    data = ImageFolderDataModule(str(tmp_path), image_size=16, channels=1, val_fraction=0.3, num_workers=0)
    assert data.split_sizes() == {"train": 21, "val": 9, "test": 9}
    # evaluate.py says so: it used to score 9 of 30 images as if they were the folder.
    assert data.evaluation_note == (
        f"{tmp_path} holds class folders only: its val and test splits are the 9 of its 30 images that "
        "data.val_fraction=0.3 holds out from training"
    )
    assert (data.class_names, data.channels, data.image_size) == (("cat", "dog", "fox"), 1, 16)
    val_labels = [label for _, label in data._datasets["val"]]
    assert sorted(val_labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    again = ImageFolderDataModule(str(tmp_path), image_size=16, channels=1, val_fraction=0.3, num_workers=0)
    again.setup()
    assert data._datasets["val"].indices == again._datasets["val"].indices
    # data.split_seed picks another split, as stratified.
    other = ImageFolderDataModule(
        str(tmp_path), image_size=16, channels=1, val_fraction=0.3, split_seed=1, num_workers=0
    )
    other.setup()
    assert other._datasets["val"].indices != data._datasets["val"].indices
    assert sorted(label for _, label in other._datasets["val"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    images, labels = next(iter(data.val_dataloader()))
    assert images.dtype == torch.uint8 and images.shape[1:] == (1, 16, 16)
    # The classes differ in brightness by 60 grey levels each; the mean must come from the pixels.
    mean, std = data.normalization
    assert 0.2 < mean[0] < 0.6 and std[0] > 0.1
    # Both equal the statistics of the 21 training images as written, read grey and fitted to 16 x 16
    # as evaluation sees them (the module rounds to 4 places).
    fit = v2.Compose([v2.ToImage(), v2.Resize(16, antialias=True), v2.CenterCrop(16), v2.ToPureTensor()])
    train = data._datasets["train"]
    pixels = torch.cat([fit(load_image(train.dataset.samples[i][0], "L")).flatten() for i in train.indices])
    pixels = pixels.double() / 255
    assert len(train.indices) == 21 and pixels.numel() == 21 * 16 * 16
    assert mean[0] == pytest.approx(pixels.mean().item(), abs=1e-3)
    assert std[0] == pytest.approx(pixels.std(unbiased=False).item(), abs=1e-3)


# Guards rounded_statistics: a channel with one value in every image has a std that rounds to 0, and
# the normalised inputs were NaN.
def test_a_channel_without_spread_is_normalised_by_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for number in range(5):
            pixels = np.zeros((12, 12, 3), dtype=np.uint8)  # blue empty everywhere
            pixels[..., 0] = rng.integers(0, 256, size=(12, 12))
            pixels[..., 1] = 128  # green one value everywhere
            Image.fromarray(pixels).save(tmp_path / name / f"{number}.png")
    data = ImageFolderDataModule(str(tmp_path), image_size=12, val_fraction=0.4, num_workers=0)
    mean, std = data.normalization
    assert mean[1:] == (0.502, 0.0) and std[1:] == (1.0, 1.0) and 0.2 < std[0] < 0.4
    module = ImageClassifier(
        model={"name": "lenet5", "num_classes": 2, "in_chans": 3}, data=data.spec.to_dict()
    )
    images, _ = next(iter(data.train_dataloader()))
    assert torch.isfinite(module.normalize(images)).all()


def test_every_mode_becomes_the_requested_channels(tmp_path: Path) -> None:
    for index, (mode, suffix) in enumerate(FORMATS):
        write_image(tmp_path / f"{index}{suffix}", mode, shade=100, seed=index)
        for target in ("L", "RGB"):
            assert load_image(str(tmp_path / f"{index}{suffix}"), target).mode == target
    # Transparent pixels read as black, whatever colour they store underneath.
    rgba = load_image(str(tmp_path / "2.png"), "RGB")
    assert np.asarray(rgba)[0].max() == 0 and np.asarray(rgba)[-1].min() >= 100


def test_given_normalization_is_used_as_is(tmp_path: Path) -> None:
    write_classes(tmp_path, classes=("a", "b"), per_class=5)
    data = ImageFolderDataModule(
        str(tmp_path), image_size=8, val_fraction=0.4, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2]
    )
    assert data.normalization == ((0.5, 0.4, 0.3), (0.2, 0.2, 0.2))


def _single_class(root: Path) -> None:
    write_classes(root, classes=("only",), per_class=3)


def _empty_class(root: Path) -> None:
    write_classes(root, classes=("a", "b"), per_class=3)
    (root / "empty").mkdir()


def _no_images(root: Path) -> None:
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "notes.txt").write_text("not an image")


def _files_but_no_class_folders(root: Path) -> None:
    root.mkdir()
    write_image(root / "loose.png", "RGB", shade=0, seed=0)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.write_bytes(b"zip"), "is a file; set data.root=DIR"),  # was "does not exist"
        (_single_class, "single class folder (only)"),
        (_empty_class, "empty holds no images"),
        (_no_images, "holds no images"),
        (_files_but_no_class_folders, "holds no class folders"),
    ],
    ids=["missing", "a-file", "single-class", "empty-class", "no-images", "no-class-folders"],
)
def test_folders_a_user_gets_wrong_are_one_clear_line(tmp_path: Path, make, needle: str) -> None:
    root = tmp_path / "images"
    make(root)
    with pytest.raises(UserError) as raised:
        ImageFolderDataModule(str(root), num_workers=0).setup()
    assert needle in str(raised.value) and "\n" not in str(raised.value)


def _mixable_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (8, 3, 8, 8), generator=generator, dtype=torch.uint8), torch.arange(8) % 2


def _mixing_data_of_rank(root: Path, rank: int) -> ImageFolderDataModule:
    """A MixUp image-folder module as the process of `rank` in a training run sees it."""
    data = ImageFolderDataModule(str(root), image_size=8, val_fraction=0.2, mixup_alpha=1.0, num_workers=0)
    data.setup()
    data.trainer = SimpleNamespace(training=True, global_rank=rank, world_size=1)
    return data


def test_each_process_mixes_with_draws_of_its_own_that_a_checkpoint_keeps(tmp_path: Path) -> None:
    # Every process of a multi-process run drew the same MixUp weights and pairings, step after step.
    write_classes(tmp_path, classes=("a", "b"), per_class=5)
    batch = _mixable_batch()
    data_of_rank = functools.partial(_mixing_data_of_rank, tmp_path)

    first, second = data_of_rank(0), data_of_rank(1)
    assert not torch.equal(
        first.on_after_batch_transfer(batch, 0)[1], second.on_after_batch_transfer(batch, 0)[1]
    )
    # A resumed process draws on where its checkpoint left off.
    resumed = data_of_rank(0)
    resumed.load_state_dict(first.state_dict())
    expected, drawn = first.on_after_batch_transfer(batch, 0), resumed.on_after_batch_transfer(batch, 0)
    assert all(torch.equal(a, b) for a, b in zip(drawn, expected, strict=True))
    # A checkpoint written before the draws were made per process holds one generator's state.
    old_style = data_of_rank(0)
    old_style.load_state_dict({"mix_generator": first._generators.get(torch.device("cpu"), 0).get_state()})
    expected, drawn = first.on_after_batch_transfer(batch, 0), old_style.on_after_batch_transfer(batch, 0)
    assert all(torch.equal(a, b) for a, b in zip(drawn, expected, strict=True))
    # Each batch gets draws of its own: the next one is not mixed as this one was.
    assert not torch.equal(first.on_after_batch_transfer(batch, 0)[1], expected[1])
    # Validation and test batches are scored as they come: never mixed.
    first.trainer = SimpleNamespace(training=False, global_rank=0, world_size=1)
    assert first.on_after_batch_transfer(batch, 0) is batch


def test_a_resumed_process_draws_on_from_its_own_ranks_saved_position(tmp_path: Path) -> None:
    # A multi-process checkpoint keeps each process's position by rank; a run resumed on more processes
    # than it was saved from gives the processes without one rank 0's.
    write_classes(tmp_path, classes=("a", "b"), per_class=5)
    batch = _mixable_batch()
    data_of_rank = functools.partial(_mixing_data_of_rank, tmp_path)

    saved_processes = [data_of_rank(rank) for rank in (0, 1)]
    for data in saved_processes:
        data.on_after_batch_transfer(batch, 0)  # each moves on from where its seed put it
    saved = {"by_rank": [data.state_dict() for data in saved_processes]}
    expected = [data.on_after_batch_transfer(batch, 0) for data in saved_processes]
    for rank, saved_rank in ((0, 0), (1, 1), (2, 0)):
        resumed = data_of_rank(rank)
        resumed.load_state_dict(saved)
        drawn = resumed.on_after_batch_transfer(batch, 0)
        assert all(torch.equal(a, b) for a, b in zip(drawn, expected[saved_rank], strict=True)), rank


def test_a_run_on_a_relative_folder_is_resumed_from_anywhere_on_its_own_images(tmp_path: Path) -> None:
    # Its recorded data.root=images was re-applied in the resuming command's folder, and a folder of
    # the same name there, with other classes, was trained on without a word.
    started, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    write_classes(started / "images", per_class=10)
    write_classes(elsewhere / "images", classes=("ant", "bee", "cow"), per_class=10)
    run_dir = tmp_path / "run"
    short = ("data.image_size=16", "data.num_workers=0", "scheduler=none", "logger=none", "test=false")
    run_script(
        "train.py",
        "data=imagefolder",
        "data.root=images",
        *short,
        "trainer.max_epochs=1",
        f"hydra.run.dir={run_dir}",
        cwd=started,
    )
    (run_dir / "metrics.json").unlink()  # as if killed after its last checkpoint
    last = run_dir / "checkpoints" / "last.ckpt"
    resumed = run_script("train.py", f"ckpt_path={last}", "trainer.max_epochs=2", cwd=elsewhere)
    assert f"data.root={started / 'images'} " in resumed.stdout
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 1
    assert checkpoint["hyper_parameters"]["data"]["class_names"] == ["cat", "dog", "fox"]
    assert f"root: {started / 'images'}\n" in (run_dir / "config.yaml").read_text()


def test_a_missing_relative_folder_names_where_it_was_looked_for(tmp_path: Path, monkeypatch) -> None:
    # "image folder images does not exist" left open which folder the relative path was read from.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        UserError, match=re.escape(f"image folder images does not exist, looked for in {tmp_path}")
    ):
        ImageFolderDataModule("images", num_workers=0).setup()
    with pytest.raises(UserError) as raised:
        ImageFolderDataModule(str(tmp_path / "images"), num_workers=0).setup()
    assert "looked for in" not in str(raised.value)
