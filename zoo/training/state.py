"""Training state Lightning does not checkpoint by itself, and a guard against non-finite losses."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from .errors import UserError


class RNGState(pl.Callback):
    """Saves and restores the global random generators, so dropout and any other global draw after a
    resume continue exactly where the interrupted run was. Stored as plain tensors and lists, which
    `torch.load(weights_only=True)` reads back."""

    def state_dict(self) -> dict:
        np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state_dict["numpy"]
        np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class NonFiniteLossGuard(pl.Callback):
    """Stops training when the loss turns NaN or inf, before a checkpoint with ruined weights is saved.

    The module sums the epoch's losses on the device without synchronising, so a NaN or inf stays
    in that sum; this callback reads it only where a checkpoint may follow (every
    `check_every_n_steps` steps, the step interval of last.ckpt, and before validation and at each
    epoch end). Each read waits for the GPU, so 0, for runs without step checkpoints, reads at
    neither step. Lightning runs checkpoint callbacks after all others, so the last good checkpoint
    is never overwritten.
    """

    def __init__(self, check_every_n_steps: int = 0) -> None:
        self.check_every_n_steps = max(0, check_every_n_steps)

    @staticmethod
    def _check(trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seen = getattr(pl_module, "nonfinite_loss_seen", None)
        if seen is None:
            return
        # Decided alike on every process: a NaN that one process's tally holds, and another's does not
        # yet, stopped that process alone, and the others failed in their next collective (gloo) or
        # waited there until its timeout (NCCL). Every process checks at the same points, as a
        # collective needs.
        if trainer.strategy.reduce_boolean_decision(seen(), all=False):
            folder = getattr(trainer.checkpoint_callback, "dirpath", None)
            kept = (
                f"the last good checkpoint in {folder} is kept"
                if folder and any(Path(folder).glob("*.ckpt"))
                else "no checkpoint had been written yet"
            )
            fix = "lower optimizer.lr or set trainer.gradient_clip_val"
            if trainer.precision == "16-true":
                # Adam's default eps, 1e-8, is 0 in float16: a zero second moment divides by zero.
                fix = "float16 weights overflow (and round Adam's eps to 0): use trainer.precision=16-mixed"
            raise UserError(
                f"the training loss became NaN or infinite by step {trainer.global_step}; training stopped "
                f"and {kept}; {fix}"
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.check_every_n_steps and trainer.global_step % self.check_every_n_steps == 0:
            self._check(trainer, pl_module)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module)
