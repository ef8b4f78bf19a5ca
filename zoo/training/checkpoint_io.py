"""Checkpoint files that are either the old version or the new one, never half of either.

Lightning writes a checkpoint straight to its final name, so a kill during the write leaves a
truncated `last.ckpt` and the run cannot resume. Here the bytes go to a temporary file in the same
folder, are flushed to disk, and only then replace the old file in one rename.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

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
        with _naming_the_file(path), open(tmp, "wb") as handle:
            writes = _KeptWriteError(handle)
            try:
                torch.save(payload, writes)
            except RuntimeError:
                if writes.error is None:
                    raise
                raise writes.error from None
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


class _KeptWriteError:
    """The file torch.save writes to. torch's zip writer turns the OSError of a failed write (a full
    disk, a quota) into a RuntimeError ("unexpected pos ...") that names neither the file nor the
    reason; the first one is kept here, to be raised in its place."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.handle.flush()


@contextlib.contextmanager
def _naming_the_file(path: Path) -> Iterator[None]:
    # A failed write, flush or fsync names no file; the run's one-line refusal of a full disk names
    # the checkpoint it could not save.
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from None


def remove_stale_partials(folder: str | Path) -> None:
    """Temporary files of a process killed mid-write; the checkpoints beside them are intact."""
    for stale in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        save_atomically(checkpoint, path)
