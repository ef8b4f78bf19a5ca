"""Host-device synchronisations in train.py's training steps on a GPU: there should be none.

A step that waits for the GPU (`.item()`, `float(tensor)`, a blocking copy back) stops the host from
queueing the next step while the device works, so every microsecond of Python in the loop adds to
the step time instead of hiding behind the GPU's work. PyTorch's sync debug mode warns at each such
call; this benchmark trains train.py's real config (synthetic in-memory data, the default callbacks,
last.ckpt every 50 steps, TensorBoard) for two epochs with that mode on, and counts the warnings
raised in each step: from the end of one step's last callback to the next, so the batch's fetch,
its transfer and augmentation and every hook count.

Steps that save a checkpoint (the non-finite-loss check reads the loss sum there, on purpose) and
each epoch's first and last steps (iterator set-up, validation, the epoch's figures) are counted
apart from ordinary steps.
The mode sees explicit waits only: a copy from pageable host memory also waits for the device but
raises nothing, which is why the in-memory data is held on the GPU (data.on_device) or copied
through pinned memory.

    python benchmarks/run.py --device cuda --only syncs
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from collections import Counter

import pytorch_lightning as pl
import torch
from timing import ROOT, quiet

STEPS_PER_EPOCH, BATCH, CHECKPOINT_EVERY = 60, 64, 50
HARDWARE = "trainer=gpu"  # "trainer=cpu" (with the debug mode stubbed) exercises the counting on a CPU


class StepSyncs(pl.Callback):
    """Counts the sync warnings raised in each training step, with the code line that raised them.
    Appended after the trainer is built, it runs after every other callback, checkpoints included."""

    def __init__(self, caught: list[warnings.WarningMessage]) -> None:
        self.caught = caught
        self.steps: list[tuple[str, int, Counter]] = []  # (kind, syncs, sites)
        self._start = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from zoo.training.module import last_batch_of_epoch

        syncs = [w for w in self.caught[self._start :] if "synchronizing" in str(w.message)]
        self._start = len(self.caught)
        sites = Counter(f"{_short(w.filename)}:{w.lineno}" for w in syncs)
        if batch_idx == 0 or last_batch_of_epoch(trainer, batch_idx):
            kind = "epoch_edge"
        elif trainer.global_step % CHECKPOINT_EVERY == 0:
            kind = "checkpoint"
        else:
            kind = "ordinary"
        self.steps.append((kind, len(syncs), sites))


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def count(model: str, on_device: bool | str) -> dict:
    from hydra import compose, initialize_config_dir

    from zoo.training import builders
    from zoo.training.fit import start_run

    with (
        tempfile.TemporaryDirectory() as output_dir,
        initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"),
    ):
        cfg = compose(
            config_name="train",
            overrides=[
                f"model={model}",
                "data=synthetic",
                f"data.num_samples={STEPS_PER_EPOCH * BATCH}",
                f"data.batch_size={BATCH}",
                f"data.on_device={str(on_device).lower()}",
                HARDWARE,
                "trainer.max_epochs=2",
                f"callbacks.last_checkpoint.every_n_train_steps={CHECKPOINT_EVERY}",
                "test=false",
                f"paths.output_dir={output_dir}",
            ],
        )
        with quiet(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, datamodule, trainer = start_run(cfg)
            module = builders.build_module(cfg, datamodule.spec)
            counter = StepSyncs(caught)
            trainer.callbacks.append(counter)
            torch.cuda.set_sync_debug_mode("warn")
            try:
                trainer.fit(module, datamodule=datamodule)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        held = datamodule.holds_on(trainer.strategy.root_device)
    by_kind: dict[str, list[int]] = {}
    sites: Counter = Counter()
    for kind, syncs, step_sites in counter.steps:
        by_kind.setdefault(kind, []).append(syncs)
        if kind == "ordinary":
            sites.update(step_sites)
    ordinary = by_kind.get("ordinary", [])
    return {
        "benchmark": "syncs",
        "model": model,
        "data_on_device": held,
        "ordinary_steps": len(ordinary),
        "syncs_in_ordinary_steps": sum(ordinary),
        "checkpoint_steps": len(by_kind.get("checkpoint", [])),
        "syncs_in_checkpoint_steps": sum(by_kind.get("checkpoint", [])),
        "syncs_in_epoch_edge_steps": sum(by_kind.get("epoch_edge", [])),
        "sites": dict(sites.most_common(5)),
        "pass": sum(ordinary) == 0,
    }


def run(device: torch.device) -> list[dict]:
    if device.type != "cuda":
        return [{"benchmark": "syncs", "model": "-", "note": "needs a GPU (--device cuda)"}]
    return [count("lenet5", "auto"), count("lenet5", False), count("resnet18", "auto")]


COLUMNS = [
    ("model", "model"),
    ("data_on_device", "data on GPU"),
    ("ordinary_steps", "ordinary steps"),
    ("syncs_in_ordinary_steps", "syncs in them"),
    ("checkpoint_steps", "checkpoint steps"),
    ("syncs_in_checkpoint_steps", "syncs in them"),
    ("syncs_in_epoch_edge_steps", "syncs at epoch edges"),
    ("sites", "where (ordinary steps)"),
    ("pass", "pass"),
    ("note", "note"),
]


if __name__ == "__main__":
    # One benchmark of the suite, with the suite's options (run.py --help).
    import run

    sys.exit(run.main(["--only", "syncs", *sys.argv[1:]]))
