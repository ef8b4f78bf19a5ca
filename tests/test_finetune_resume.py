"""Resuming finetune.py, in process as finetune.py runs it: from the usual mid-epoch last.ckpt (a step
save) the frozen backbone stays frozen, and a resume on data of other channels is one clear line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from zoo.data import DataSpec
from zoo.training.errors import UserError
from zoo.training.finetuning import build_finetune_module
from zoo.training.fit import start_run
from zoo.training.resume import refuse_a_changed_continuation

from .conftest import compose_config

# Six steps of eight synthetic RGB images, last.ckpt every two steps; one-cycle with a scaled
# backbone rate, whose step count configure_optimizers must still be able to fill in.
QUICK = (
    "logger=none",
    "data=synthetic",
    "data.num_samples=48",
    "data.batch_size=8",
    "data.num_classes=3",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=6",
    "trainer.limit_val_batches=1",
    "callbacks.last_checkpoint.every_n_train_steps=2",
    "test=false",
    "model=resnet18",
    "scheduler=onecycle",
    "finetune.backbone_lr_scale=0.1",
    "finetune.freeze_backbone=true",
)


class _Crash(RuntimeError):
    pass


class _DiesAfterBatch(pl.Callback):
    """A kill between step saves: it runs before the checkpoint callbacks, which Lightning keeps last,
    so last.ckpt is the step save before this batch."""

    def __init__(self, batch_idx: int) -> None:
        self.batch_idx = batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.batch_idx:
            raise _Crash


def _finetune(run_dir: Path, *overrides: str, resume: Path | None = None, dies_after: int | None = None):
    resumed = (f"resume_ckpt={resume}",) if resume else ()
    cfg = compose_config(*QUICK, *overrides, *resumed, f"paths.output_dir={run_dir}", config_name="finetune")
    _, datamodule, trainer = start_run(cfg, resume_from=cfg.resume_ckpt)  # as finetune.py does
    if dies_after is not None:
        trainer.callbacks.insert(0, _DiesAfterBatch(dies_after))
    module, _ = build_finetune_module(cfg, datamodule.spec)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.resume_ckpt, weights_only=True)
    return trainer, module


def test_a_frozen_backbone_stays_the_sources_after_a_mid_epoch_resume(
    torchvision_resnet18: Path, tmp_path: Path
) -> None:
    source = f"ckpt_path={torchvision_resnet18}"
    run_dir = tmp_path / "run"
    with pytest.raises(_Crash):
        _finetune(run_dir, source, dies_after=3)
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2 and saved["epoch"] == 0

    # Resumed on grey data: refused in one line before anything trains.
    with pytest.raises(UserError, match="fine-tuned on 3-channel images, but this data has 1"):
        _finetune(run_dir, source, "data.channels=1", resume=last)

    # In other batches: train.py refused it; finetune.py resumed into an epoch of other batches.
    other_batches = f"{last} was trained with data.batch_size=8 (now 4); resume with the data settings"
    with pytest.raises(UserError, match=re.escape(other_batches)):
        _finetune(run_dir, source, "data.batch_size=4", resume=last)

    # With another backbone rate: the checkpoint's would silently win (only the head's was compared).
    backbone = (
        r"max_lr=\S+ for its backbone parameters, but this run's settings give max_lr=\S+ \(did finetune"
    )
    with pytest.raises(UserError, match=backbone):
        cfg = compose_config(
            *QUICK,
            source,
            "finetune.backbone_lr_scale=0.5",
            f"resume_ckpt={last}",
            f"paths.output_dir={run_dir}",
            config_name="finetune",
        )
        module, _ = build_finetune_module(cfg, DataSpec.from_dict(saved["hyper_parameters"]["data"]))
        module.refuse_a_changed_optimization(str(last), saved)  # as fit_test_and_record does
    # Each of them before Hydra makes a run folder too, for the run and each point of a -m sweep:
    # in the job, the refusal came after the points before it had run.
    started = [t for t in QUICK if not t.startswith("finetune.backbone_lr_scale=")]
    given = [*started, source, f"resume_ckpt={last}"]
    for change, refusal in (
        ("data.batch_size=4", re.escape(other_batches)),
        ("finetune.backbone_lr_scale=0.5", backbone),
        ("model=resnet34", re.escape(f"{last} holds a model=resnet18, not model=resnet34; leave model= out")),
    ):
        with pytest.raises(UserError, match=refusal) as refused:
            refuse_a_changed_continuation([*given, change], "resume_ckpt", "finetune")
        assert str(refused.value).startswith(f"{last} "), change
    point = re.escape("sweep point #1 (finetune.backbone_lr_scale=0.5) of 2: ")
    with pytest.raises(UserError, match=f"^{point}.*{backbone}"):
        refuse_a_changed_continuation(
            ["-m", *given, "finetune.backbone_lr_scale=0.1,0.5"], "resume_ckpt", "finetune"
        )
    # The settings the run began with pass.
    refuse_a_changed_continuation(["-m", *given, "finetune.backbone_lr_scale=0.1"], "resume_ckpt", "finetune")

    trainer, module = _finetune(run_dir, source, resume=last)
    assert trainer.global_step == 6
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == 6
    # Every backbone tensor, BatchNorm running statistics included, is still the file's.
    tuned = module.net.state_dict()
    weights = torch.load(torchvision_resnet18, weights_only=True)
    backbone = [key for key in weights if not key.startswith("fc.")]
    assert backbone and all(torch.equal(tuned[key], weights[key]) for key in backbone)
    assert not torch.equal(tuned["fc.weight"], saved["state_dict"]["net.fc.weight"])
