"""The embedded digits: real images, a fixed stratified split, and batches that resume exactly."""

from __future__ import annotations

import pytest
import torch

from zoo.data import DigitsDataModule, InMemoryBatches
from zoo.data.augment import augment_batch
from zoo.data.digits import load_digit_images


def test_split_is_fixed_stratified_and_disjoint() -> None:
    first, second = DigitsDataModule(), DigitsDataModule(seed=123)
    first.setup(), second.setup()
    assert first.split_sizes() == {"train": 1257, "val": 180, "test": 360}
    for split in ("train", "val", "test"):
        assert torch.equal(
            first._splits[split][1], second._splits[split][1]
        )  # shuffle seed does not move the split
    for split in ("val", "test"):
        counts = torch.bincount(first._splits[split][1], minlength=10)
        assert counts.min() >= counts.max() - 2  # every digit in proportion
    images = torch.cat([first._splits[s][0].flatten(1) for s in ("train", "val", "test")])
    assert len(torch.unique(images, dim=0)) >= 1790  # the real digits hold a few exact duplicates


def test_spec_describes_the_images() -> None:
    data = DigitsDataModule(image_size=28)
    assert (data.num_classes, data.channels, data.image_size) == (10, 1, 28)
    assert data.class_names == tuple("0123456789")
    mean, std = data.normalization
    assert 0.05 < mean[0] < 0.6 and 0.1 < std[0] < 0.6
    images, _ = data._splits["train"]
    assert images.dtype == torch.uint8 and images.shape[1:] == (1, 28, 28)
    # Mean and std (not swapped) of the training pixels themselves, to the module's 4 places.
    pixels = images.double() / 255
    assert mean[0] == pytest.approx(pixels.mean().item(), abs=1e-3)
    assert std[0] == pytest.approx(pixels.std().item(), abs=1e-3)


def test_batches_follow_seed_and_epoch_and_resume_mid_epoch() -> None:
    images, labels = torch.arange(100).view(100, 1, 1, 1).to(torch.uint8), torch.arange(100)
    loader = InMemoryBatches(images, labels, batch_size=16, shuffle=True, seed=5)
    loader.set_epoch(3)
    full = [y.tolist() for _, y in loader]
    assert len(full) == len(loader) == 7
    assert sorted(sum(full, [])) == list(range(100))

    interrupted = InMemoryBatches(images, labels, batch_size=16, shuffle=True, seed=5)
    interrupted.set_epoch(3)
    iterator = iter(interrupted)
    seen = [next(iterator)[1].tolist() for _ in range(3)]
    state = interrupted.state_dict()
    resumed = InMemoryBatches(images, labels, batch_size=16, shuffle=True, seed=5)
    resumed.load_state_dict(state)
    assert seen + [y.tolist() for _, y in resumed] == full

    loader.set_epoch(4)
    assert [y.tolist() for _, y in loader] != full


def test_a_loader_restored_from_an_epochs_end_gives_the_next_epoch_whole() -> None:
    # Lightning stops after len(loader) batches without running the iterator out, and restores a
    # checkpoint from an epoch's end (under trainer.max_steps) before it sets the next epoch: that
    # epoch had no batches.
    images, labels = torch.arange(100).view(100, 1, 1, 1).to(torch.uint8), torch.arange(100)
    finished = InMemoryBatches(images, labels, batch_size=16, shuffle=True, seed=5)
    finished.set_epoch(3)
    iterator = iter(finished)
    for _ in range(len(finished)):
        next(iterator)
    resumed = InMemoryBatches(images, labels, batch_size=16, shuffle=True, seed=5)
    resumed.load_state_dict(finished.state_dict())
    resumed.set_epoch(4)
    uninterrupted = InMemoryBatches(images, labels, batch_size=16, shuffle=True, seed=5)
    uninterrupted.set_epoch(4)
    assert [y.tolist() for _, y in resumed] == [y.tolist() for _, y in uninterrupted]


def test_shards_are_disjoint_and_equal_in_length() -> None:
    images, labels = torch.zeros(10, 1, 1, 1, dtype=torch.uint8), torch.arange(10)
    shards = [
        InMemoryBatches(images, labels, 2, shuffle=True, seed=1, rank=r, world_size=3) for r in range(3)
    ]
    seen = [sum((y.tolist() for _, y in shard), []) for shard in shards]
    assert len({len(s) for s in seen}) == 1 and len(shards[0]) == 2
    assert set(sum(seen, [])) == set(range(10))


def test_digit_augmentation_moves_pixels_but_keeps_shape_and_range() -> None:
    data = DigitsDataModule()
    data.setup()
    images = data._splits["train"][0][:32]
    augmented = augment_batch(images, "digits", torch.Generator().manual_seed(0))
    assert augmented.shape == images.shape and augmented.dtype == torch.float32
    assert 0 <= augmented.min() and augmented.max() <= 1
    assert not torch.allclose(augmented, images.float() / 255)
    assert torch.equal(augment_batch(images, "none"), images.float() / 255)


# Guards the scaling of the digits' grey levels 0..16 to 0..255: 16 is white and none is clipped.
def test_digit_pixels_keep_their_grey_levels() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = load_digit_images(8)  # their own size: no resampling
    expected = (torch.from_numpy(digits.images).float() * 255 / 16).round().to(torch.uint8)
    assert torch.equal(images[:, 0], expected) and labels.tolist() == digits.target.tolist()


def test_overfit_batches_are_the_same_images_every_epoch() -> None:
    # Lightning turns shuffling off for overfit_batches only in a DataLoader's sampler: debug=overfit
    # drew three new batches each epoch from these loaders and memorised nothing.
    import pytorch_lightning as pl

    datamodule = DigitsDataModule()
    datamodule.trainer = pl.Trainer(overfit_batches=3, accelerator="cpu", logger=False)

    def first_batch_labels(epoch: int) -> list[int]:
        loader = datamodule.train_dataloader()
        loader.set_epoch(epoch)
        return next(iter(loader))[1].tolist()

    assert first_batch_labels(0) == first_batch_labels(1)


def test_overfit_notices_that_are_not_true_here_are_quiet() -> None:
    import warnings

    from zoo.training.cli import quiet_library_notices

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_library_notices()
        warnings.warn("You requested to overfit but enabled val dataloader shuffling.", stacklevel=1)
        warnings.warn(
            "The number of training batches (3) is smaller than the logging interval "
            "Trainer(log_every_n_steps=10).",
            stacklevel=1,
        )
    assert not caught
