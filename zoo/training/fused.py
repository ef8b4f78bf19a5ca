"""optimizer.fused=auto: torch.optim's fused step wherever the run allows it.

Torch's default step on a CPU loops over the parameters in Python, a dozen small kernels each; the
fused step is one kernel for all of them (Adam in a ResNet-18 training step on a 2-core CPU: 4-6 ms
against 13 ms). Torch keeps it opt-in while it beds in; Adam, AdamW and SGD have it on CPUs and
CUDA GPUs.

`auto` turns it on unless Lightning's mixed precision clips gradients: it leaves the unscaling of a
fused optimizer's gradients to the optimizer's step, after clipping would have read them, and so
refuses that pair at the first step (under bf16-mixed too, which scales nothing). An optimizer
without a fused step, or asked for another (foreach=true), is built without the argument.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from omegaconf import DictConfig

from .errors import UserError
from .validation import clips_under_mixed_precision, refuse_fused_clipping_under_mixed_precision

AUTO = "auto"
# How torch computes a step, not what it computes: a resumed run steps with its own choice, not with
# the one its checkpoint's optimizer state was saved with.
IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable")


def _device_has_fused_steps(trainer: DictConfig) -> bool:
    # Lightning's accelerator=auto and gpu take a CUDA GPU, else Apple's GPU (auto then the CPU); only
    # CUDA and the CPU are sure to have fused steps for all three optimizers.
    accelerator = str(trainer.get("accelerator", AUTO))
    if accelerator in ("cpu", "cuda"):
        return True
    mps = getattr(torch.backends, "mps", None)
    return accelerator in (AUTO, "gpu") and (torch.cuda.is_available() or not (mps and mps.is_available()))


def resolve_fused(optimizer: functools.partial, trainer: DictConfig) -> functools.partial:
    """The optimizer factory with `fused` decided: True or False as configured (True refused where
    Lightning would fail at the first step), and `auto` made True or dropped."""
    keywords = dict(optimizer.keywords)
    fused = keywords.get("fused")
    # A bool, not a value equal to one: fused=1 would pass `in (True, ...)` but not `is True` below.
    if not (fused is None or isinstance(fused, bool) or fused == AUTO):
        raise UserError(
            f"optimizer.fused must be auto, true or false, got {fused!r}; fix it on the command line"
        )
    if fused is True:
        refuse_fused_clipping_under_mixed_precision(trainer)
    if fused != AUTO:
        return optimizer
    del keywords["fused"]
    takes_fused = "fused" in inspect.signature(optimizer.func).parameters
    # Torch refuses fused with foreach=true or differentiable=true when it builds the optimizer.
    other_step = keywords.get("foreach") or keywords.get("differentiable")
    if (
        takes_fused
        and not other_step
        and _device_has_fused_steps(trainer)
        and not clips_under_mixed_precision(trainer)
    ):
        keywords["fused"] = True
    return functools.partial(optimizer.func, *optimizer.args, **keywords)


def adopt_this_runs_implementation(checkpoint: dict[str, Any], optimizer_factory: Any) -> None:
    """Give the optimizer state a resume restores this run's implementation flags. Torch's
    load_state_dict takes the saved groups whole, flags included: a run saved unfused, resumed fused,
    stepped unfused, and under a gradient scaler (which skips unscaling for an optimizer built fused)
    failed at its first step. A group saved without a flag (by an older torch) is given it too: torch
    would fill in its own default."""
    states = checkpoint.get("optimizer_states") or []
    if optimizer_factory is None or not states:
        return
    fresh = optimizer_factory(params=[torch.nn.Parameter(torch.zeros(1))]).param_groups[0]
    for state in states:
        for group in state.get("param_groups", []):
            for key in IMPLEMENTATION_KEYS:
                if key in fresh:
                    group[key] = fresh[key]
