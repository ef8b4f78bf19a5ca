"""Freezing the backbone, in process on a tiny network and data: frozen tensors do not move, the
backbone unfreezes at the given epoch, and a resumed run neither refreezes nor unfreezes early."""

from __future__ import annotations

import functools
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from zoo.data import InMemoryDataModule
from zoo.training.finetuning import FineTuneClassifier
from zoo.training.freezing import BackboneFreeze, backbone_batch_norms, split_parameters

CLASSES = ["a", "b", "c"]


class TinyImages(InMemoryDataModule):
    """12 random 8 x 8 grey images per split: three batches of four, nothing to learn but gradients."""

    def load_splits(self):
        generator = torch.Generator().manual_seed(0)
        splits = {
            split: (
                torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8, generator=generator),
                torch.arange(12) % len(CLASSES),
            )
            for split in ("train", "val", "test")
        }
        return splits, tuple(CLASSES)


def _module() -> FineTuneClassifier:
    torch.manual_seed(0)
    # ResNet-18 for its BatchNorm layers; its small stem reads 8 px images.
    return FineTuneClassifier(
        model={"name": "resnet18", "num_classes": 3, "in_chans": 1, "small_input": True},
        data={"class_names": CLASSES, "channels": 1, "image_size": 8, "mean": [0.5], "std": [0.3]},
        optimizer=functools.partial(torch.optim.AdamW, lr=0.01, weight_decay=0.1),
    )


def _backbone_state(net) -> dict[str, torch.Tensor]:
    """Backbone parameters and BatchNorm buffers, cloned."""
    heads = tuple(f"{name}." for name in net.head_names)
    return {k: v.detach().clone() for k, v in net.state_dict().items() if not k.startswith(heads)}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


class Recorder(pl.Callback):
    """The backbone and head after each epoch, and the frozen state seen while it trained."""

    def __init__(self) -> None:
        self.backbone: dict[int, dict] = {}
        self.head: dict[int, torch.Tensor] = {}
        self.trainable: dict[int, bool] = {}
        self.norms_training: dict[int, bool] = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        self.start = _backbone_state(pl_module.net)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        epoch = trainer.current_epoch
        backbone = split_parameters(pl_module.net)[1]
        self.trainable[epoch] = all(p.requires_grad for p in backbone)
        self.norms_training[epoch] = any(n.training for n in backbone_batch_norms(pl_module.net))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.backbone[trainer.current_epoch] = _backbone_state(pl_module.net)
        self.head[trainer.current_epoch] = pl_module.net.get_classifier().weight.detach().clone()


def _fit(
    tmp_path: Path, epochs: int, freeze: BackboneFreeze, resume: Path | None = None
) -> tuple[Recorder, FineTuneClassifier]:
    recorder = Recorder()
    module = _module()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,  # validation switches modes back and forth: frozen BatchNorm must survive it
        callbacks=[freeze, recorder, ModelCheckpoint(dirpath=tmp_path, save_top_k=0, save_last=True)],
    )
    trainer.fit(module, datamodule=TinyImages(batch_size=4), ckpt_path=resume, weights_only=True)
    return recorder, module


def test_frozen_epochs_leave_the_backbone_untouched_then_it_unfreezes(tmp_path: Path) -> None:
    freeze = BackboneFreeze(unfreeze_at_epoch=2)
    seen, _ = _fit(tmp_path, epochs=3, freeze=freeze)
    # Epochs 0 and 1: every backbone tensor, BatchNorm running statistics included, is as it was,
    # despite AdamW's weight decay; the head learns.
    assert _same(seen.backbone[0], seen.start) and _same(seen.backbone[1], seen.start)
    assert not torch.equal(seen.head[0], seen.head[1])
    assert seen.trainable == {0: False, 1: False, 2: True}
    assert seen.norms_training == {0: False, 1: False, 2: True}
    # Epoch 2 trains the backbone too.
    assert not _same(seen.backbone[2], seen.start)
    assert freeze.unfrozen_at_epoch == 2


def test_freeze_backbone_alone_keeps_it_frozen_for_the_whole_run(tmp_path: Path) -> None:
    seen, _ = _fit(tmp_path, epochs=2, freeze=BackboneFreeze(freeze=True))
    assert _same(seen.backbone[1], seen.start)
    assert seen.trainable == {0: False, 1: False}


def test_a_resumed_run_does_not_freeze_again_what_was_unfrozen(tmp_path: Path) -> None:
    _fit(tmp_path, epochs=2, freeze=BackboneFreeze(unfreeze_at_epoch=1))
    last = tmp_path / "last.ckpt"
    assert torch.load(last, weights_only=True)["callbacks"]["BackboneFreeze"] == {"unfrozen_at_epoch": 1}
    # Even a resumed command that asks for a later epoch keeps training the backbone it already trains
    # (Lightning's BackboneFinetuning freezes it again).
    freeze = BackboneFreeze(unfreeze_at_epoch=5)
    seen, _ = _fit(tmp_path, epochs=3, freeze=freeze, resume=last)
    assert seen.trainable == {2: True}
    assert freeze.unfrozen_at_epoch == 1


def test_a_run_resumed_while_frozen_unfreezes_at_the_given_epoch(tmp_path: Path) -> None:
    _fit(tmp_path, epochs=1, freeze=BackboneFreeze(unfreeze_at_epoch=2))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["callbacks"]["BackboneFreeze"] == {"unfrozen_at_epoch": None}
    seen, _ = _fit(
        tmp_path, epochs=3, freeze=BackboneFreeze(unfreeze_at_epoch=2), resume=tmp_path / "last.ckpt"
    )
    assert seen.trainable == {1: False, 2: True}
    assert _same(seen.backbone[1], seen.start)  # seen.start: the resumed weights
    assert not _same(seen.backbone[2], seen.start)
