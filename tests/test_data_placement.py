"""Where in-memory data lives on a GPU run (data.on_device), and what may wait for the device per step.

No GPU here: the `meta` device stands in for one where only placement is checked, and CUDA's
memory size is faked where the `auto` rule reads it.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from zoo.data import DigitsDataModule, InMemoryBatches
from zoo.data.imagefolder import _MarkedPaddingSampler
from zoo.training.errors import UserError
from zoo.training.state import NonFiniteLossGuard
from zoo.training.validation import validate_config


def test_batches_are_cut_on_the_device_their_tensors_are_on() -> None:
    images, labels = torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.arange(10)
    on_host = InMemoryBatches(images, labels, 4, shuffle=True, seed=2)
    on_device = InMemoryBatches(images.to("meta"), labels.to("meta"), 4, shuffle=True, seed=2)
    host_batches, device_batches = list(on_host), list(on_device)
    assert [y.shape for _, y in device_batches] == [y.shape for _, y in host_batches] == [(4,), (4,), (2,)]
    assert all(x.device.type == "meta" and y.device.type == "meta" for x, y in device_batches)
    # Only host batches are pinned: tensors already on a device are cut there.
    asked_to_pin = InMemoryBatches(images.to("meta"), labels.to("meta"), 4, shuffle=False, pin_memory=True)
    assert not asked_to_pin.pin_memory


def test_on_device_true_holds_every_split_on_the_device_once() -> None:
    data = DigitsDataModule(on_device=True)
    data.setup()
    meta = torch.device("meta")
    assert data.holds_on(meta)
    images, labels = data._tensors("train", meta)
    assert images.device == labels.device == meta and images.shape == data._splits["train"][0].shape
    assert data._tensors("train", meta)[0] is images  # copied once, not per epoch
    # A CPU run keeps the host tensors whatever the setting.
    assert data._tensors("train", torch.device("cpu"))[0] is data._splits["train"][0]


@pytest.mark.parametrize(
    ("on_device", "gpu_bytes", "held"),
    [
        ("auto", 80 * 2**30, True),  # the digits (1.8 MB) fit easily
        ("auto", 4 * 2**20, False),  # more than a quarter of a 4 MiB device
        (False, 80 * 2**30, False),
        (True, 4 * 2**20, True),  # asked for: held even where auto would not
    ],
)
def test_on_device_rule_for_a_gpu(monkeypatch, on_device, gpu_bytes: int, held: bool) -> None:
    gpu = SimpleNamespace(total_memory=gpu_bytes)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: gpu)
    data = DigitsDataModule(on_device=on_device)
    data.setup()
    assert data.holds_on(torch.device("cuda", 0)) is held
    assert not data.holds_on(torch.device("cpu"))


def test_auto_leaves_other_accelerators_to_the_host() -> None:
    data = DigitsDataModule(on_device="auto")
    data.setup()
    assert not data.holds_on(torch.device("meta"))


def test_on_device_takes_true_false_or_auto_only() -> None:
    with pytest.raises(UserError, match="data.on_device must be true, false or auto"):
        DigitsDataModule(on_device="yes")


@pytest.mark.parametrize(
    ("key", "value", "accepted"),
    [
        ("data.on_device", "auto", True),
        ("data.on_device", False, True),
        ("data.on_device", "gpu", False),
        ("optimizer.lr", 0.1, True),
        ("optimizer.lr", -0.1, False),
        ("trainer.max_epochs", 0, False),
        ("trainer.precision", "bf16-mixed", True),
        ("trainer.precision", "fp8", False),
        # Each rule's edges: the last value taken and the first refused.
        ("optimizer.momentum", 0.99, True),
        ("optimizer.momentum", 1, False),
        ("data.image_size", 8, True),
        ("data.image_size", 7, False),
        ("trainer.limit_val_batches", 1.0, True),
        ("trainer.limit_val_batches", 1.5, False),
        ("logger.tensorboard.flush_secs", 0.5, True),
        ("logger.tensorboard.flush_secs", 0, False),
        ("data.num_classes", 2, True),
        ("data.num_classes", 1, False),
    ],
)
def test_config_values_are_checked_before_any_work(key: str, value, accepted: bool) -> None:
    cfg = OmegaConf.create({})
    OmegaConf.update(cfg, key, value, force_add=True)
    if accepted:
        validate_config(cfg)
    else:
        with pytest.raises(UserError, match=rf"{key} must be .*\({key}=\.\.\.\)"):
            validate_config(cfg)


def _one_process(**trainer) -> SimpleNamespace:
    """A trainer of one process, as the loss guard reads it; `others_saw_nan`: what the other
    processes' tallies answer in the guard's vote."""
    others_saw_nan = trainer.pop("others_saw_nan", False)
    # all=True would stop only when every process saw one: the vote must ask whether any did.
    strategy = SimpleNamespace(
        reduce_boolean_decision=lambda decision, all: (
            (decision and others_saw_nan) if all else (decision or others_saw_nan)
        )
    )
    return SimpleNamespace(strategy=strategy, **trainer)


class _Module:
    def __init__(self) -> None:
        self.reads = 0

    def nonfinite_loss_seen(self) -> bool:
        self.reads += 1  # each read waits for a GPU
        return False


@pytest.mark.parametrize(("interval", "read_at"), [(0, []), (3, [3, 6, 9]), (1, list(range(1, 11)))])
def test_the_loss_guard_reads_only_at_checkpoint_steps(interval: int, read_at: list[int]) -> None:
    guard, module = NonFiniteLossGuard(check_every_n_steps=interval), _Module()
    reads = []
    for step in range(1, 11):
        before = module.reads
        guard.on_train_batch_end(_one_process(global_step=step), module, None, None, step - 1)
        if module.reads > before:
            reads.append(step)
    assert reads == read_at
    guard.on_validation_start(_one_process(global_step=10), module)
    guard.on_train_epoch_end(_one_process(global_step=10), module)
    assert module.reads == len(read_at) + 2  # and always before validation and at the epoch's end


@pytest.mark.parametrize(("precision", "fix"), [("32-true", "lower optimizer.lr"), ("16-true", "16-mixed")])
def test_the_loss_guard_names_the_fix_for_the_precision(precision: str, fix: str) -> None:
    module = SimpleNamespace(nonfinite_loss_seen=lambda: True)
    trainer = _one_process(global_step=20, precision=precision, checkpoint_callback=None)
    with pytest.raises(UserError, match=f"NaN or infinite by step 20; .*{fix}"):
        NonFiniteLossGuard(check_every_n_steps=1).on_train_epoch_end(trainer, module)


def test_the_loss_guard_names_a_kept_checkpoint_only_where_there_is_one(tmp_path: Path) -> None:
    module = SimpleNamespace(nonfinite_loss_seen=lambda: True)
    trainer = _one_process(
        global_step=20, precision="32-true", checkpoint_callback=SimpleNamespace(dirpath=str(tmp_path))
    )
    guard = NonFiniteLossGuard(check_every_n_steps=1)
    with pytest.raises(UserError, match="training stopped and no checkpoint had been written yet; "):
        guard.on_train_epoch_end(trainer, module)
    (tmp_path / "last.ckpt").write_bytes(b"")
    with pytest.raises(
        UserError, match=f"training stopped and the last good checkpoint in {tmp_path} is kept; "
    ):
        guard.on_train_epoch_end(trainer, module)


def test_the_loss_guard_stops_every_process_when_one_saw_a_nonfinite_loss() -> None:
    # A NaN in another process's tally alone stopped that process, and this one waited for it in
    # its next collective.
    trainer = _one_process(global_step=20, precision="32-true", checkpoint_callback=None, others_saw_nan=True)
    with pytest.raises(UserError, match="NaN or infinite by step 20"):
        NonFiniteLossGuard(check_every_n_steps=1).on_train_epoch_end(trainer, _Module())
    NonFiniteLossGuard(check_every_n_steps=1).on_train_epoch_end(_one_process(global_step=20), _Module())


def test_evaluation_shards_mark_their_padding_so_every_image_counts_once() -> None:
    # Every process runs as many evaluation steps, so a share is padded with repeated images; they
    # come labelled PADDING, in memory and from image folders alike, and the rest is each image once.
    from PIL import Image

    from zoo.data.batches import PADDING
    from zoo.data.imagefolder import _LabelledPadding, _MarkedPaddingSampler

    labels = torch.arange(10)
    counted, steps = [], set()
    for rank in range(3):
        shard = InMemoryBatches(
            torch.zeros(10, 1, 2, 2), labels, 2, shuffle=False, rank=rank, world_size=3, mark_padding=True
        )
        batches = [batch_labels for _, batch_labels in shard]
        steps.add(len(batches))
        counted += [int(label) for label in torch.cat(batches) if label != PADDING]
    assert sorted(counted) == list(range(10)) and steps == {2}

    images = [(Image.new("L", (2, 2)), index) for index in range(10)]
    counted, steps = [], set()
    for rank in range(3):
        view = _LabelledPadding(images)
        shard = [view[index][1] for index in _MarkedPaddingSampler(len(images), rank, 3)]
        steps.add(len(shard))
        counted += [label for label in shard if label != PADDING]
    assert sorted(counted) == list(range(10)) and steps == {4}


def test_a_padded_share_counts_every_batch_it_gives() -> None:
    # len() must count a padded share whole: 10 images over 3 processes are 4 each (not 10 // 3), two
    # batches of 3 (not 4 // 3), in memory, whose iteration stops at len(), and from image folders alike.
    images, labels = torch.zeros(10, 1, 1, 1), torch.arange(10)
    for rank in range(3):
        share = InMemoryBatches(images, labels, 3, shuffle=False, rank=rank, world_size=3, mark_padding=True)
        assert len(share) == len(list(share)) == 2
        assert sum(len(batch_labels) for _, batch_labels in share) == 4
        sampler = _MarkedPaddingSampler(10, rank, 3)
        assert len(sampler) == len(list(sampler)) == 4


def test_fewer_images_than_processes_still_give_every_process_a_share() -> None:
    # Two images over five processes: every process needs its one step, or the others wait for it at
    # their first sync; the padding repeats the images as often as it takes, and is marked as such.
    from zoo.data.batches import PADDING
    from zoo.data.imagefolder import _MarkedPaddingSampler

    images, labels = torch.zeros(2, 1, 1, 1), torch.arange(2)
    counted = []
    for rank in range(5):
        share = InMemoryBatches(images, labels, 4, shuffle=True, rank=rank, world_size=5, mark_padding=True)
        batches = [batch_labels for _, batch_labels in share]
        assert len(share) == len(batches) == 1 and len(batches[0]) == 1
        counted += [int(label) for label in batches[0] if label != PADDING]
        sampler = list(_MarkedPaddingSampler(2, rank, 5))
        assert len(sampler) == 1 and (sampler[0] >= 0) == (rank < 2)
    assert sorted(counted) == [0, 1]


def test_images_that_divide_evenly_among_processes_are_each_given_once() -> None:
    # Padding only evens out shares that differ: a repeat where none was missing would be counted
    # twice in an evaluation, and give every process a step more than its images.
    from zoo.data.batches import shard

    shares = [shard(torch.arange(6), rank, 3, mark_padding=True) for rank in range(3)]
    assert [len(share) for share in shares] == [2, 2, 2]
    assert sorted(torch.cat(shares).tolist()) == list(range(6))  # no index marked as padding
