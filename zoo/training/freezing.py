"""Training only the new head while the trained backbone stays fixed, then unfreezing it on schedule.

The head is what `model.head_names` names (the fully connected layers, auxiliary heads included); the
backbone is every other parameter. Frozen parameters stay in the optimizer with `requires_grad=False`:
they get no gradient, and PyTorch's optimizers skip a parameter without one (no step, no weight
decay, no state). Unfreezing therefore needs no optimizer surgery, and a resumed run's optimizer
state loads into the same parameter groups whether or not the backbone was frozen when it was saved.
This is where Lightning's `BackboneFinetuning` goes wrong on resume: it adds the backbone to the
optimizer when it unfreezes, and freezes again from scratch when a run resumes.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.strategies import DDPStrategy
from torch import nn

from ..models import ClassifierModel
from .checkpoint import peek_checkpoint
from .errors import UserError
from .runlog import say


def head_modules(net: ClassifierModel) -> list[nn.Module]:
    return [getattr(net, name) for name in net.head_names]


def split_parameters(net: ClassifierModel) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(head parameters, backbone parameters), each in the network's own order."""
    head_ids = {id(p) for module in head_modules(net) for p in module.parameters()}
    params = list(net.parameters())
    return [p for p in params if id(p) in head_ids], [p for p in params if id(p) not in head_ids]


def backbone_batch_norms(net: ClassifierModel) -> list[nn.Module]:
    in_head = {id(m) for module in head_modules(net) for m in module.modules()}
    return [
        m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in in_head
    ]


def set_backbone_frozen(net: ClassifierModel, frozen: bool) -> None:
    for param in split_parameters(net)[1]:
        param.requires_grad_(not frozen)
    for norm in backbone_batch_norms(net):
        # Frozen BatchNorm runs in eval mode: it normalises with the source's running statistics and
        # does not update them. In train mode it would normalise each batch by its own statistics
        # (features the head never sees at test time) and drift the running statistics that the
        # trained convolutions after it rely on, so the "frozen" backbone would still change.
        norm.train(not frozen and net.training)


class BackboneFreeze(pl.Callback):
    """Freezes the backbone while `freeze` holds and until epoch `unfreeze_at_epoch` (0-based: 2 means
    two epochs of head-only training); `unfreeze_at_epoch=None` keeps it frozen for the whole run.

    Whether it has unfrozen is part of the checkpoint (`state_dict`), so a resumed run never freezes a
    backbone that was already training, even if the resumed command asks for a later epoch.
    Under DDP, choose trainer.strategy=ddp_find_unused_parameters_true: frozen parameters get no
    gradient, which plain DDP takes for an error (see refuse_freezing_under_plain_ddp).
    """

    def __init__(self, freeze: bool = False, unfreeze_at_epoch: int | None = None) -> None:
        self.freeze = bool(freeze) or unfreeze_at_epoch is not None
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.unfrozen_at_epoch: int | None = None
        self._frozen = False
        self._frozen_norms: list[nn.Module] = []  # backbone BatchNorms while frozen, else empty

    def frozen_in(self, epoch: int) -> bool:
        if not self.freeze or self.unfrozen_at_epoch is not None:
            return False
        return self.unfreeze_at_epoch is None or epoch < self.unfreeze_at_epoch

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A run resumed from a mid-epoch checkpoint (last.ckpt every N steps) skips that epoch's
        # on_train_epoch_start, and its module was rebuilt with every parameter trainable: without
        # this, the resumed rest of a frozen epoch would train the backbone.
        self._apply(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(trainer, pl_module)

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Idempotent: on_train_start and the first on_train_epoch_start both run it for one epoch,
        # and the unfreezing line prints once because unfrozen_at_epoch is set the first time.
        epoch = trainer.current_epoch
        frozen = self.frozen_in(epoch)
        if self.freeze and not frozen and self.unfrozen_at_epoch is None:
            self.unfrozen_at_epoch = epoch
            if trainer.is_global_zero:
                say(f"epoch {epoch + 1}: backbone unfrozen")
        if frozen or self._frozen:
            set_backbone_frozen(pl_module.net, frozen)
        self._frozen = frozen
        self._frozen_norms = backbone_batch_norms(pl_module.net) if frozen else []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Anything that calls .train() on the module (a validation loop's clean-up, user code) would
        # put frozen BatchNorm back into train mode; re-asserting it per batch costs microseconds.
        for norm in self._frozen_norms:
            norm.eval()

    def state_dict(self) -> dict:
        return {"unfrozen_at_epoch": self.unfrozen_at_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.unfrozen_at_epoch = state_dict.get("unfrozen_at_epoch")


def refuse_freezing_under_plain_ddp(trainer: pl.Trainer, resume_from: str | None = None) -> None:
    """A frozen backbone under DDP that expects every parameter to get a gradient failed at the second
    training step, with a traceback from each process; refused before the processes start. A resumed
    fine-tune (`resume_from`) whose backbone has unfrozen never freezes it again, so it may go on
    under plain DDP."""
    strategy = trainer.strategy
    freezes = any(
        isinstance(callback, BackboneFreeze)
        and callback.freeze
        and callback.unfreeze_at_epoch != 0
        and not _unfrozen_in(resume_from, callback)
        for callback in trainer.callbacks
    )
    if (
        freezes
        and trainer.world_size > 1
        and isinstance(strategy, DDPStrategy)
        and not strategy._ddp_kwargs.get("find_unused_parameters")  # Lightning has no public reader
    ):
        raise UserError(
            "a frozen backbone (finetune.freeze_backbone, finetune.unfreeze_at_epoch) gets no gradients, "
            "which DDP with trainer.strategy=ddp fails on at the second step; "
            "set trainer.strategy=ddp_find_unused_parameters_true"
        )


def _unfrozen_in(checkpoint: str | None, callback: BackboneFreeze) -> bool:
    """Whether `checkpoint` records that `callback`'s backbone has unfrozen (read without its tensors,
    before Lightning restores the callback's state at the start of fit)."""
    if not checkpoint:
        return False
    state = (peek_checkpoint(checkpoint).get("callbacks") or {}).get(callback.state_key)
    return isinstance(state, dict) and state.get("unfrozen_at_epoch") is not None
