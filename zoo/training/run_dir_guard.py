"""A Hydra callback that checks the run or sweep directory before Hydra writes its record there."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from .errors import EXIT_USER_ERROR, UserError
from .run_dirs import entry_point, first_process, holds_a_run, refuse_reused_run_dir, refuse_reused_sweep_dir


def _resolved(config: Any, key: str) -> Path | None:
    try:
        value = OmegaConf.select(config, key, throw_on_resolution_failure=True)
    except Exception:  # e.g. ${hydra:...}, which Hydra can answer only once the job starts
        return None
    return Path(str(value)) if value else None


def _refuse(check, *args: Any, **kwargs: Any) -> None:
    # Hydra turns a callback's exception into a warning and goes on: a refusal exits here, printed
    # once (Hydra's own logging is set up by now, so the run log's path through say() would repeat it).
    try:
        check(*args, **kwargs)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


LOCK_NAME = ".run.lock"


# The open lock files of the runs this process holds, by path: a flock lasts as long as its
# descriptor, and a second one taken by this process on the same file would refuse it its own run.
_held: dict[Path, int] = {}


def hold_run_dir(run_dir: Path) -> None:
    """Take the run directory for this process until it exits. Two commands started into one folder
    both found it free (metrics.json and checkpoints come later) and wrote one run over the other.
    The hold is the kernel's flock on .run.lock, which ends with the process however it ends: a
    killed run's lock is taken over even when its pid now names another process, and two commands
    started at the same moment cannot both take it (a pid read from a file just created, still
    empty, was taken for a killed run's). The file holds the pid only for the message."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_NAME
    if lock.resolve() in _held:
        return
    while True:
        descriptor = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise UserError(
                f"run directory {run_dir} is in use by another process (pid {_holder(lock)}); "
                "choose another hydra.run.dir, or wait for that run to end"
            ) from None
        if _same_file(descriptor, lock):
            break
        os.close(descriptor)  # a run ending removed the file we locked: lock the one there now
    os.ftruncate(descriptor, 0)
    os.write(descriptor, str(os.getpid()).encode())
    _held[lock.resolve()] = descriptor
    atexit.register(_release, lock, os.getpid())


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        return False


def _holder(lock: Path) -> str:
    try:
        return lock.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _release(lock: Path, pid: int) -> None:
    try:
        if lock.read_text().strip() == str(pid):
            lock.unlink()
    except OSError:
        pass


# The run folder and its parents that this command made (deepest first), as RunDirGuard found them
# missing before Hydra made them; empty for a folder that existed, or once the run has trained.
_made_here: list[Path] = []


def _missing_folders(run_dir: Path) -> list[Path]:
    # Resolved: in hydra.run.dir=new/../there, the folder Hydra writes into is there/, which may
    # exist; read as written, new/../there was missing and a refusal removed there/ and its files.
    missing, folder = [], run_dir.resolve()
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


def _check_settings(config: Any) -> None:
    """What the job checks first from its config alone (train.py's and finetune.py's settings, the
    fine-tune's options and source file), here before Hydra makes the run folder; -m sweeps check
    theirs before they start. A value that resolves only inside the job is left to the job."""
    from .finetune_request import check_finetune_command
    from .validation import validate_config

    checks = {"train": [validate_config], "finetune": [validate_config, check_finetune_command]}
    # By the script, not the config's name: --config-name mytrain is still train.py's run.
    script = entry_point(config.get("hydra"))
    try:
        for check in checks.get(script or "", []):
            check(config)
    except UserError:
        raise
    except Exception:  # e.g. ${hydra:...}, which Hydra can answer only once the job starts
        return


def _refuse_changing_into_the_run_folder(config: Any) -> None:
    # As composed: the command line's hydra.job.chdir=yes, or a --config-name config's own setting.
    from .overrides import CHANGING_INTO_THE_RUN_FOLDER

    if OmegaConf.select(config, "hydra.job.chdir") is True:
        raise UserError(CHANGING_INTO_THE_RUN_FOLDER)


class RunDirGuard(Callback):
    """Configured in each entry point's hydra.callbacks. A directory given literally was checked
    before Hydra started (overrides.check_overrides); one named through an interpolation
    (hydra.run.dir=runs/${model.name}) is known only once Hydra has composed the config, which is
    when this runs, before Hydra writes .hydra/ into it. The run then holds the folder (hold_run_dir)
    until it exits. `resume_key`: the key that resumes a run in its own directory (none for
    evaluate.py). The config's own rules are checked here too, so that a refused setting makes no
    folder."""

    def __init__(self, resume_key: str | None = None) -> None:
        self.resume_key = resume_key

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        _refuse(_refuse_changing_into_the_run_folder, config)
        _refuse(_check_settings, config)
        run_dir = _resolved(config, "hydra.run.dir")
        if run_dir is None:
            return
        resuming = self.resume_key is not None and config.get(self.resume_key) not in (None, "")
        _refuse(refuse_reused_run_dir, run_dir, resuming, can_resume=self.resume_key is not None)
        if first_process():
            _made_here[:] = _missing_folders(run_dir)
            _refuse(hold_run_dir, run_dir)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        _refuse(_refuse_changing_into_the_run_folder, config)
        sweep_dir = _resolved(config, "hydra.sweep.dir")
        if sweep_dir is not None:
            _refuse(refuse_reused_sweep_dir, sweep_dir)


def keep_the_run_folder() -> None:
    """The run has trained: its folder stays whatever stops it (a NaN loss, a full disk), with what
    it logged."""
    _made_here.clear()


# What a run writes before it trains: Hydra's record and log, the lock, the resolved config, the
# loggers' first files and an empty checkpoint folder.
_WRITTEN_BEFORE_TRAINING = frozenset(
    {".hydra", LOCK_NAME, "config.yaml", "tensorboard", "csv", "checkpoints"}
)


def _only_what_a_refused_run_writes(folder: Path) -> bool:
    # A removal deletes files: anything else in the folder (put there meanwhile by the user or
    # another command) keeps it.
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except OSError:
        return False
    return all(name in _WRITTEN_BEFORE_TRAINING or name.endswith(".log") for name in names)


def _remove_the_folder_made_here() -> None:
    if not _made_here or holds_a_run(_made_here[0]) or not _only_what_a_refused_run_writes(_made_here[0]):
        return
    shutil.rmtree(_made_here[0], ignore_errors=True)
    for parent in _made_here[1:]:
        try:
            parent.rmdir()  # only while empty: another command may have put its run there meanwhile
        except OSError:
            break
    _made_here.clear()


@contextlib.contextmanager
def no_folder_left_by_a_refusal() -> Iterator[None]:
    """A job refused with a user error (its settings, its source, its data) before it trained, or
    before evaluate.py wrote its report, leaves no run folder: Hydra made it, with .hydra/ and the
    log, before the job's checks could run; the trainer may have begun a TensorBoard event file.
    Only a folder this command made goes, never one that existed before it or holds a checkpoint.
    Wraps the entry point's user_errors()."""
    try:
        yield
    except SystemExit as stop:
        if stop.code == EXIT_USER_ERROR:
            _remove_the_folder_made_here()
        raise
