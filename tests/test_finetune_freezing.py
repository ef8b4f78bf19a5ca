"""Freezing the backbone, in process on a tiny network and data: frozen tensors do not move, the
backbone unfreezes at the given epoch, and a resumed run neither refreezes nor unfreezes early."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from zoo.data import InMemoryDataModule
from zoo.training.finetuning import FineTuneClassifier
from zoo.training.freezing import BackboneFreeze, backbone_batch_norms, set_backbone_frozen, split_parameters

from .conftest import run_script

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


class _Crash(RuntimeError):
    pass


class CrashAtBatch(pl.Callback):
    """Dies after training batch `batch_idx` of `epoch`, before the checkpoint callbacks (which
    Lightning runs last) see it: last.ckpt is then the step save before it, in the middle of the epoch."""

    def __init__(self, batch_idx: int, epoch: int = 0) -> None:
        self.batch_idx, self.epoch = batch_idx, epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch_idx):
            raise _Crash


def _fit(
    tmp_path: Path,
    epochs: int,
    freeze: BackboneFreeze,
    resume: Path | None = None,
    every_n_train_steps: int | None = None,
    extra: tuple[pl.Callback, ...] = (),
) -> tuple[Recorder, FineTuneClassifier]:
    recorder = Recorder()
    module = _module()
    last = ModelCheckpoint(
        dirpath=tmp_path, save_top_k=0, save_last=True, every_n_train_steps=every_n_train_steps
    )
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,  # validation switches modes back and forth: frozen BatchNorm must survive it
        callbacks=[freeze, recorder, *extra, last],
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


def test_freezing_puts_the_backbone_batch_norms_in_eval_mode_and_unfreezing_back_in_train() -> None:
    # Frozen BatchNorm must normalise with the source's running statistics, and not update them.
    net = _module().net.train()
    set_backbone_frozen(net, True)
    assert not any(norm.training for norm in backbone_batch_norms(net))
    set_backbone_frozen(net, False)
    assert all(norm.training for norm in backbone_batch_norms(net))


class _BackToTrainMode(pl.Callback):
    """User code that puts the whole module back in train mode after each batch."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pl_module.train()


def test_frozen_batch_norm_stays_in_eval_mode_whatever_puts_the_module_back_in_train(tmp_path: Path) -> None:
    # A .train() between batches put frozen BatchNorm back in train mode for the rest of the epoch,
    # and its running statistics drifted; the freeze must re-assert eval mode before each batch.
    seen, _ = _fit(tmp_path, epochs=1, freeze=BackboneFreeze(freeze=True), extra=(_BackToTrainMode(),))
    assert seen.norms_training == {0: False}
    assert _same(seen.backbone[0], seen.start)


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


def test_a_run_resumed_mid_epoch_keeps_the_backbone_frozen(tmp_path: Path) -> None:
    # Lightning skips on_train_epoch_start when it resumes in the middle of an epoch, which is where
    # the usual last.ckpt (a step save) leaves it; the rebuilt module starts with everything trainable.
    source = _backbone_state(_module().net)
    with pytest.raises(_Crash):
        _fit(tmp_path, 2, BackboneFreeze(freeze=True), every_n_train_steps=1, extra=(CrashAtBatch(1),))
    last = tmp_path / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 1 and saved["epoch"] == 0
    seen, module = _fit(tmp_path, 2, BackboneFreeze(freeze=True), resume=last)
    assert seen.trainable == {0: False, 1: False}
    assert seen.norms_training == {0: False, 1: False}
    # Every backbone tensor, BatchNorm running statistics included, is still the source's.
    assert _same(_backbone_state(module.net), source)
    assert not torch.equal(module.net.get_classifier().weight, _module().net.get_classifier().weight)


@pytest.mark.parametrize("mid_epoch", [False, True])
def test_resuming_at_the_unfreezing_epoch_unfreezes_and_says_so_once(
    tmp_path: Path, capsys, mid_epoch: bool
) -> None:
    # Saved while frozen, in or at the start of epoch 1; resumed with the backbone to train from epoch
    # 1. Mid-epoch, on_train_epoch_start never comes; at the epoch's start it follows on_train_start.
    if mid_epoch:
        with pytest.raises(_Crash):
            _fit(
                tmp_path,
                2,
                BackboneFreeze(unfreeze_at_epoch=2),
                every_n_train_steps=1,
                extra=(CrashAtBatch(1, epoch=1),),
            )
    else:
        _fit(tmp_path, epochs=1, freeze=BackboneFreeze(unfreeze_at_epoch=2))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["callbacks"]["BackboneFreeze"] == {"unfrozen_at_epoch": None}
    capsys.readouterr()
    freeze = BackboneFreeze(unfreeze_at_epoch=1)
    seen, _ = _fit(tmp_path, epochs=2, freeze=freeze, resume=tmp_path / "last.ckpt")
    assert seen.trainable == {1: True} and freeze.unfrozen_at_epoch == 1
    out = capsys.readouterr().out
    assert out.count("backbone unfrozen") == 1 and "epoch 2: backbone unfrozen" in out


def test_plain_ddp_is_refused_for_a_frozen_backbone_but_not_for_a_resume_past_its_unfreezing(
    tmp_path: Path,
) -> None:
    # A fine-tune resumed after its backbone unfroze trains every parameter, as plain DDP needs:
    # refused, it could not move to several processes without the slower find_unused_parameters.
    from zoo.training.errors import UserError
    from zoo.training.freezing import refuse_freezing_under_plain_ddp

    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        callbacks=[BackboneFreeze(unfreeze_at_epoch=1)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    unfrozen, frozen = tmp_path / "unfrozen.ckpt", tmp_path / "frozen.ckpt"
    torch.save({"callbacks": {"BackboneFreeze": {"unfrozen_at_epoch": 1}}}, unfrozen)
    torch.save({"callbacks": {"BackboneFreeze": {"unfrozen_at_epoch": None}}}, frozen)

    refuse_freezing_under_plain_ddp(trainer, resume_from=str(unfrozen))
    for resume_from in (None, str(frozen)):
        with pytest.raises(UserError, match="ddp_find_unused_parameters_true"):
            refuse_freezing_under_plain_ddp(trainer, resume_from=resume_from)


def test_plain_ddp_is_left_to_a_fine_tune_that_freezes_nothing_or_runs_one_process() -> None:
    # Every fine-tune has a BackboneFreeze, which by default freezes nothing: a refusal there kept
    # every fine-tune from plain DDP. Unfrozen from epoch 0, or on one process, nothing goes unused.
    from zoo.training.freezing import refuse_freezing_under_plain_ddp

    def trainer(freeze: BackboneFreeze, devices: int = 2) -> pl.Trainer:
        return pl.Trainer(
            accelerator="cpu",
            devices=devices,
            strategy="ddp",
            callbacks=[freeze],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
        )

    refuse_freezing_under_plain_ddp(trainer(BackboneFreeze()))
    refuse_freezing_under_plain_ddp(trainer(BackboneFreeze(freeze=True, unfreeze_at_epoch=0)))
    refuse_freezing_under_plain_ddp(trainer(BackboneFreeze(freeze=True), devices=1))


def test_finetune_py_lets_a_resume_past_the_unfreezing_go_on_under_plain_ddp(tmp_path: Path) -> None:
    # The check must be given the checkpoint the run resumes: without it, every resumed fine-tune
    # that had frozen was refused plain DDP. This stand-in holds only the freezing state, so the run
    # stops at its missing model, past the DDP check and before any process starts.
    from zoo.training.errors import EXIT_USER_ERROR

    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save(
        {"global_step": 8, "epoch": 1, "callbacks": {"BackboneFreeze": {"unfrozen_at_epoch": 1}}}, last
    )
    result = run_script(
        "finetune.py",
        f"resume={last}",
        "finetune.freeze_backbone=true",
        "finetune.unfreeze_at_epoch=1",
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "data=synthetic",
        "logger=none",
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == EXIT_USER_ERROR, result.stderr[-2000:]
    assert "ddp_find_unused_parameters_true" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: {last} is not a cnn-zoo checkpoint (no model description inside); "
        "use a .ckpt written by train.py or finetune.py"
    )
