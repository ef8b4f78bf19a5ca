"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 through torchvision's own loaders, on tiny files
written here in each set's real format; and what a user sees when the files are missing offline."""

from __future__ import annotations

import errno
import gzip
import json
import os
import pickle
import re
import socket
import struct
import time
import urllib.error
import urllib.request
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from zoo.data import InMemoryDataModule, SyntheticDataModule, TorchvisionDataModule
from zoo.data.cifar_files import read_cifar
from zoo.data.torchvision_sets import _resized, describe_files
from zoo.downloads import STALL_TIMEOUT_S
from zoo.training.errors import UserError

from .conftest import Payload, run_script


def _pixels(count: int, shape: tuple[int, ...], labels: np.ndarray, seed: int) -> np.ndarray:
    """Noise with a class-dependent brightness, so a tiny run has something to learn."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 96, size=(count, *shape))
    return (noise + labels.reshape(-1, *[1] * len(shape)) * 15).clip(0, 255).astype(np.uint8)


def write_mnist(root: Path, folder: str, train: int = 120, test: int = 40, gz: bool = True) -> None:
    """idx files as yann.lecun.com serves them: big-endian magic and sizes, then raw bytes."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, count, seed in (("train", train, 0), ("t10k", test, 1)):
        labels = np.arange(count) % 10
        images = _pixels(count, (28, 28), labels, seed)
        files = {
            f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 0x803, count, 28, 28) + images.tobytes(),
            f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 0x801, count)
            + labels.astype(np.uint8).tobytes(),
        }
        for name, content in files.items():
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(content))
            else:
                (raw / name).write_bytes(content)


def _cifar_entry(count: int, classes: int, label_key: str, seed: int) -> dict:
    labels = np.arange(count) % classes
    flat = _pixels(count, (3 * 32 * 32,), labels % 10, seed)  # rows of R then G then B planes, as CIFAR's
    entry = {"data": flat, label_key: labels.tolist()}
    if label_key == "fine_labels":
        entry["coarse_labels"] = (labels // 5).tolist()
    return entry


def write_cifar10(root: Path, per_batch: int = 20, test: int = 40) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for index in range(1, 6):
        entry = _cifar_entry(per_batch, 10, "labels", seed=index)
        (folder / f"data_batch_{index}").write_bytes(pickle.dumps(entry))
    (folder / "test_batch").write_bytes(pickle.dumps(_cifar_entry(test, 10, "labels", seed=9)))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))


def write_cifar100(root: Path, train: int = 200, test: int = 100) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    (folder / "train").write_bytes(pickle.dumps(_cifar_entry(train, 100, "fine_labels", seed=0)))
    (folder / "test").write_bytes(pickle.dumps(_cifar_entry(test, 100, "fine_labels", seed=1)))
    meta = {
        "fine_label_names": [f"fine{i}" for i in range(100)],
        "coarse_label_names": [f"c{i}" for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta))


WRITERS = {
    "mnist": lambda root: write_mnist(root, "MNIST"),
    "fashion_mnist": lambda root: write_mnist(root, "FashionMNIST"),
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
}
# Tiny files are not the official release, so CIFAR's md5 check has to be off (read by cifar_files).
TINY = {
    "cifar10": ["data.verify_checksums=false"],
    "cifar100": ["data.verify_checksums=false", "data.val_fraction=0.5"],
}


@pytest.mark.parametrize("dataset", list(WRITERS))
def test_train_runs_end_to_end_on_each_real_format(tmp_path: Path, dataset: str) -> None:
    WRITERS[dataset](tmp_path / "files")
    run_dir = tmp_path / "run"
    run_script(
        "train.py",
        f"data={dataset}",
        f"data.root={tmp_path / 'files'}",
        "data.download=false",
        *TINY.get(dataset, []),
        "data.batch_size=32",
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["test/acc"] <= 1


def test_mnist_splits_are_stratified_uint8_with_the_sets_own_classes(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST", train=200, test=50, gz=False)
    data = TorchvisionDataModule("mnist", root=str(tmp_path), download=False, val_fraction=0.1)
    assert data.split_sizes() == {"train": 180, "val": 20, "test": 50}
    assert torch.bincount(data._splits["val"][1], minlength=10).tolist() == [2] * 10
    images, _ = data._splits["train"]
    assert images.dtype == torch.uint8 and images.shape[1:] == (1, 28, 28)
    assert (data.num_classes, data.channels, data.image_size) == (10, 1, 28)
    assert data.class_names[0] == "0 - zero"  # torchvision's names, read from its class
    # Every image keeps the label write_mnist gave it (arange % 10), in each split.
    written = {}
    for count, seed in ((200, 0), (50, 1)):
        labels = np.arange(count) % 10
        for image, label in zip(_pixels(count, (28, 28), labels, seed), labels, strict=True):
            written[image.tobytes()] = int(label)
    assert len(written) == 250
    for split in ("train", "val", "test"):
        images, labels = data._splits[split]
        assert labels.tolist() == [written[image.numpy().tobytes()] for image in images], split
    resized = TorchvisionDataModule("mnist", root=str(tmp_path), download=False, image_size=32)
    assert resized.image_size == 32 and resized._splits["test"][0].shape[1:] == (1, 32, 32)


def _damage(raw: Path, name: str, how: str) -> None:
    path = raw / name
    content = path.read_bytes()
    if how == "magic":
        path.write_bytes(struct.pack(">I", 1234) + content[4:])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "cut":
        path.write_bytes(content[: len(content) // 2])
    elif how == "fewer":  # a labels file of 100 labels beside 120 images, whole in itself
        path.write_bytes(struct.pack(">II", 0x801, 100) + content[8:108])
    elif how == "label 10":
        path.write_bytes(content[:8] + bytes([10]) + content[9:])
    elif how == "one-dimensional":  # a labels file where the images belong
        path.write_bytes(struct.pack(">II", 0x801, 120) + bytes(120))


# torchvision's reader said "AssertionError", "invalid literal for int() with base 16: b''" or
# "shape '[120, 28, 28]' is invalid for input of size 4984", naming no file; fewer labels than
# images trained on some of them silently, a label outside 0-9 failed inside cross_entropy.
@pytest.mark.parametrize(
    ("name", "how", "message"),
    [
        ("train-images-idx3-ubyte", "magic", "train-images-idx3-ubyte is not an idx file of unsigned bytes"),
        ("t10k-labels-idx1-ubyte", "empty", "t10k-labels-idx1-ubyte is not an idx file of unsigned bytes"),
        ("train-images-idx3-ubyte", "cut", "train-images-idx3-ubyte is truncated: its header declares 120 x"),
        (
            "train-labels-idx1-ubyte",
            "fewer",
            "train-images-idx3-ubyte holds 120 images but train-labels-idx1",
        ),
        ("train-labels-idx1-ubyte", "label 10", "the training labels of MNIST in {raw} include 10, outside"),
        (
            "train-images-idx3-ubyte",
            "one-dimensional",
            "train-images-idx3-ubyte holds 1-dimensional data, but a file of images holds 3",
        ),
    ],
)
def test_damaged_idx_files_are_named_with_what_is_wrong(
    tmp_path: Path, name: str, how: str, message: str
) -> None:
    write_mnist(tmp_path, "MNIST", gz=False)
    raw = tmp_path / "MNIST" / "raw"
    _damage(raw, name, how)
    with pytest.raises(UserError, match=re.escape(message.format(raw=raw))):
        TorchvisionDataModule("mnist", root=str(tmp_path), download=False).setup()


# Guards the check that training and test images are of one size, in height as well as width.
def test_training_and_test_images_of_other_heights_are_refused(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST", gz=False)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "t10k-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 0x803, 40, 20, 28) + bytes(40 * 20 * 28)
    )
    message = f"the training images in {raw} are 28 x 28 pixels, the test images 20 x 28"
    with pytest.raises(UserError, match=re.escape(message)):
        TorchvisionDataModule("mnist", root=str(tmp_path), download=False).setup()


# Guards the load-time resize: pixels rounded to the nearest level, and the same in chunks as whole.
def test_resized_images_are_rounded_and_the_same_in_chunks() -> None:
    images = torch.randint(
        0, 256, (7, 3, 10, 10), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    resized = F.interpolate(
        images.float(), size=(16, 16), mode="bilinear", antialias=True, align_corners=False
    )
    expected = resized.clamp(0, 255).round().to(torch.uint8)
    assert torch.equal(_resized(images, 16), expected)
    assert torch.equal(_resized(images, 16, chunk=3), expected)


def test_a_new_gz_replaces_the_damaged_file_unpacked_from_the_old(tmp_path: Path) -> None:
    # The unpacked file of a damaged .gz was read ever after, even once a good .gz replaced it.
    write_mnist(tmp_path, "MNIST")
    raw = tmp_path / "MNIST" / "raw"
    labels = raw / "train-labels-idx1-ubyte.gz"
    good = labels.read_bytes()
    labels.write_bytes(gzip.compress(b""))
    with pytest.raises(UserError, match="train-labels-idx1-ubyte is not an idx file"):
        TorchvisionDataModule("mnist", root=str(tmp_path), download=False).setup()
    labels.write_bytes(good)
    os.utime(labels, ns=(time.time_ns() + 10**9,) * 2)  # newer than the unpacked file, as a new copy is
    assert TorchvisionDataModule("mnist", root=str(tmp_path), download=False).split_sizes()["test"] == 40
    # A newer .gz that is itself damaged leaves the whole unpacked file in place, and is named.
    unpacked = raw / "train-labels-idx1-ubyte"
    whole = unpacked.read_bytes()
    labels.write_bytes(good[: len(good) // 2])
    os.utime(labels, ns=(time.time_ns() + 2 * 10**9,) * 2)
    with pytest.warns(UserWarning, match=re.escape(f"cannot decompress {labels}")):
        data = TorchvisionDataModule("mnist", root=str(tmp_path), download=False)
        assert data.split_sizes()["test"] == 40
    assert unpacked.read_bytes() == whole and not list(raw.glob(".*partial"))


def test_gz_files_in_a_read_only_folder_name_the_two_ways_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The error said only "Permission denied". The tests run as root, whom permissions do not stop:
    # the folder answers as a read-only one would.
    write_mnist(tmp_path, "MNIST")
    raw = tmp_path / "MNIST" / "raw"

    def read_only(path, mode="r", *args, **kwargs):
        if "w" in mode and Path(path).parent == raw:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr("zoo.data.torchvision_sets.open", read_only, raising=False)
    packed = raw / "train-images-idx3-ubyte.gz"
    message = (
        f"cannot unpack {packed} beside it: {raw} is read-only; unpack it there once (gunzip -k {packed}), "
        f"or copy {tmp_path / 'MNIST'} into a writable folder and set data.root to that folder"
    )
    with pytest.raises(UserError, match=re.escape(message)):
        TorchvisionDataModule("mnist", root=str(tmp_path), download=False).setup()
    assert all(path.suffix == ".gz" for path in raw.iterdir())  # no partial file left behind


def test_cifar_layout_and_classes_come_from_the_pickles(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    data = TorchvisionDataModule("cifar10", root=str(tmp_path), download=False, verify_checksums=False)
    assert data.split_sizes() == {"train": 90, "val": 10, "test": 40}
    assert data.class_names[:2] == ("airplane", "automobile") and data.channels == 3
    # CIFAR stores planes (R, then G, then B); the tensor must hold them as channels, not interleaved.
    first = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())["data"][0]
    assert torch.equal(data._splits["test"][0][0], torch.from_numpy(first.reshape(3, 32, 32)))


def test_cifar_files_failing_the_checksum_get_a_clear_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    with pytest.raises(UserError, match="checksums.*data.verify_checksums=false"):
        TorchvisionDataModule("cifar10", root=str(tmp_path), download=False).setup()


def test_missing_files_offline_name_the_files_and_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError) as raised:
        TorchvisionDataModule("mnist", root=str(tmp_path / "data"), download=False).setup()
    message = str(raised.value)
    assert f"{tmp_path}/data/MNIST/raw/{{train-images-idx3-ubyte," in message and "download=true" in message
    assert "missing:" not in message
    assert not (tmp_path / "data").exists()
    # With the rest in place, the message names the one file that is not.
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(UserError, match=re.escape("batches.meta}; missing: batches.meta (set data.download")):
        TorchvisionDataModule("cifar10", root=str(tmp_path), download=False).setup()


def test_file_lists_fold_numbered_runs() -> None:
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "test_batch", "batches.meta"]
    assert describe_files(Path("d"), names) == "d/{data_batch_1..3,test_batch,batches.meta}"


@pytest.mark.parametrize("dataset", ["mnist", "cifar100"])
def test_a_failed_download_removes_only_what_it_created(tmp_path: Path, monkeypatch, dataset: str) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "data"
    root.mkdir()
    (root / "keep.txt").write_text("the user's")
    with pytest.raises(UserError, match="could not be downloaded.*no network"):
        TorchvisionDataModule(dataset, root=str(root), download=True).setup()
    assert sorted(p.name for p in root.iterdir()) == ["keep.txt"]


def test_a_failed_download_names_the_files_missing_from_a_partial_set(tmp_path: Path, monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(UserError, match=r"could not be downloaded .*batches.meta\}; missing: data_batch_3$"):
        TorchvisionDataModule("cifar10", root=str(tmp_path), download=True, verify_checksums=False).setup()
    assert sorted(p.name for p in (tmp_path / "cifar-10-batches-py").iterdir()) == [
        "batches.meta",
        "data_batch_1",
        "data_batch_2",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ]


def test_a_stalled_download_gives_up_and_the_default_timeout_comes_back(tmp_path: Path, monkeypatch) -> None:
    waited = []

    def stalled(*args, **kwargs):
        waited.append(socket.getdefaulttimeout())
        raise TimeoutError("timed out")

    monkeypatch.setattr(urllib.request, "urlopen", stalled)
    socket.setdefaulttimeout(None)
    with pytest.raises(UserError, match="could not be downloaded.*timed out"):
        TorchvisionDataModule("mnist", root=str(tmp_path), download=True).setup()
    assert waited and set(waited) == {STALL_TIMEOUT_S}
    assert socket.getdefaulttimeout() is None


def test_offline_cifar10_prints_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    # A proxy nobody listens on makes the download fail at once, with or without a network here.
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    root = tmp_path / "data" / "cifar10"
    result = run_script(
        "train.py",
        "data=cifar10",
        f"data.root={root}",
        "data.download=true",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"{root}/cifar-10-batches-py/{{data_batch_1..5,test_batch,batches.meta}}" in line
    assert not (tmp_path / "data").exists()


def test_unverified_cifar_files_cannot_run_code(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    marker = tmp_path / "payload-ran"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0]}))
    with pytest.raises(UserError, match=r"refused to read CIFAR-10 .* names posix\.system"):
        TorchvisionDataModule("cifar10", root=str(tmp_path), download=False, verify_checksums=False).setup()
    assert not marker.exists()


# The official files are Python 2 pickles (protocol 2); re-pickled copies are often newer protocols.
@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("dataset", ["CIFAR10", "CIFAR100"])
def test_unverified_cifar_reads_as_torchvision_reads(tmp_path: Path, dataset: str, protocol: int) -> None:
    writer = write_cifar10 if dataset == "CIFAR10" else write_cifar100
    writer(tmp_path)
    for path in tmp_path.glob("*/*"):
        path.write_bytes(pickle.dumps(pickle.loads(path.read_bytes()), protocol=protocol))
    cls = getattr(torchvision.datasets, dataset)
    for train in (True, False):
        ours = read_cifar(cls, tmp_path, train)
        # torchvision's own reader, its md5s cleared for these tiny files (they are this test's).
        with (
            mock.patch.object(cls, "train_list", [[name, None] for name, _ in cls.train_list]),
            mock.patch.object(cls, "test_list", [[name, None] for name, _ in cls.test_list]),
            mock.patch.object(cls, "meta", {**cls.meta, "md5": None}),
        ):
            theirs = cls(str(tmp_path), train=train, download=False)
        assert ours.data.dtype == theirs.data.dtype and np.array_equal(ours.data, theirs.data)
        assert ours.targets == theirs.targets and ours.classes == theirs.classes


def test_unverified_cifar_copies_with_bytes_keys_or_array_labels_read_as_the_official(tmp_path: Path) -> None:
    # A copy loaded as CIFAR's page shows, pickle.load(encoding="bytes"), and saved again has bytes
    # keys and names; one saved from numpy keeps its labels as an array. Both were refused, with a
    # message saying the file held no 'data' array, or no list of labels.
    write_cifar10(tmp_path)
    cls = torchvision.datasets.CIFAR10
    official = [read_cifar(cls, tmp_path, train) for train in (True, False)]
    for path in (tmp_path / "cifar-10-batches-py").iterdir():
        entry = pickle.loads(path.read_bytes())
        if "labels" in entry:
            entry["labels"] = np.asarray(entry["labels"], dtype=np.int64)
        else:
            entry["label_names"] = [name.encode() for name in entry["label_names"]]
        path.write_bytes(pickle.dumps({key.encode(): value for key, value in entry.items()}))
    for train, expected in zip((True, False), official, strict=True):
        copy = read_cifar(cls, tmp_path, train)
        assert np.array_equal(copy.data, expected.data)
        assert (copy.targets, copy.classes) == (expected.targets, expected.classes)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "data_batch_2 is not a readable pickle"),
        (b"not a pickle", "data_batch_2 is not a readable pickle"),
        (bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)), "is not a readable pickle"),
        (pickle.dumps([1, 2]), "data_batch_2 holds no 'data' array"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]}), "holds no 'data' array"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}), "holds no list of 2 labels"),
        (pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [10]}), r"labels outside 0\.\.9"),
    ],
    ids=["empty", "text", "random-bytes", "a-list", "float-pixels", "labels-short", "label-10"],
)
def test_unverified_cifar_files_of_another_layout_name_the_file(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(content)
    with pytest.raises(UserError, match=f"cannot read CIFAR-10 from .*: .*{reason}"):
        TorchvisionDataModule("cifar10", root=str(tmp_path), download=False, verify_checksums=False).setup()


# Guards the synthetic set's seeds: each split is drawn apart, so no validation or test image is a
# training image, and every class is as frequent as the next.
def test_synthetic_splits_share_no_image() -> None:
    data = SyntheticDataModule(num_samples=64, image_size=4, num_classes=4, eval_fraction=0.25)
    data.setup()
    images = {split: {image.numpy().tobytes() for image in data._splits[split][0]} for split in data._splits}
    assert not images["train"] & images["val"] and not images["train"] & images["test"]
    assert not images["val"] & images["test"]
    assert torch.bincount(data._splits["train"][1]).tolist() == [16] * 4


# Guards the synthetic set's own check: fewer samples than classes would leave a class out.
def test_synthetic_data_needs_a_sample_of_every_class() -> None:
    with pytest.raises(UserError, match=re.escape("num_samples >= num_classes") + r".*\(got 4, 3, 3, 32\)"):
        SyntheticDataModule(num_samples=3, num_classes=4)


class _EmptyBlueChannel(InMemoryDataModule):
    def load_splits(self):
        images = torch.zeros(8, 3, 4, 4, dtype=torch.uint8)  # green and blue empty everywhere
        images[:, 0] = torch.randint(
            0, 256, (8, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
        )
        labels = torch.arange(8) % 2
        return {split: (images, labels) for split in ("train", "val", "test")}, ("a", "b")


# Guards rounded_statistics on the in-memory path: the empty channel's std was 0, its inputs NaN.
def test_an_in_memory_channel_without_spread_is_normalised_by_one() -> None:
    data = _EmptyBlueChannel()
    mean, std = data.normalization
    assert mean[1:] == (0.0, 0.0) and std[1:] == (1.0, 1.0) and std[0] > 0.1
