"""Checkpoint files that are either the old version or the new one, never half of either.

Lightning writes a checkpoint straight to its final name, so a kill during the write leaves a
truncated `last.ckpt` and the run cannot resume. Here the bytes go to a temporary file in the same
folder, are flushed to disk, and only then replace the old file in one rename.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

# Fault injection for the kill-during-save test: seconds to wait between writing the temporary file
# and renaming it, so a test can reliably kill the process inside that window.
SLOW_WRITE_ENV = "CNN_ZOO_CHECKPOINT_WRITE_DELAY"
TEMP_SUFFIX = ".partial"


def save_atomically(payload: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        delay = float(os.environ.get(SLOW_WRITE_ENV, "0") or 0)
        if delay:
            time.sleep(delay)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    # The rename itself is durable only once the folder's entry is on disk.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def remove_stale_partials(folder: str | Path) -> None:
    """Temporary files of a process killed mid-write; the checkpoints beside them are intact."""
    for stale in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        save_atomically(checkpoint, path)
