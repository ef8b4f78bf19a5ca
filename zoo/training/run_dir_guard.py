"""A Hydra callback that checks the run or sweep directory before Hydra writes its record there."""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from .errors import EXIT_USER_ERROR, UserError
from .run_dirs import first_process, refuse_reused_run_dir, refuse_reused_sweep_dir


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def hold_run_dir(run_dir: Path) -> None:
    """Take the run directory for this process until it exits. Two commands started into one folder
    both found it free (metrics.json and checkpoints come later) and wrote one run over the other. A
    lock left by a killed process (its pid gone) is taken over."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_NAME
    for attempt in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            # A second failure: another command took the folder after the killed run's lock went.
            if attempt or (holder and holder != os.getpid() and _alive(holder)):
                raise UserError(
                    f"run directory {run_dir} is in use by another process (pid {holder}); "
                    "choose another hydra.run.dir, or wait for that run to end"
                ) from None
            lock.unlink(missing_ok=True)  # a killed run's
            continue
        with os.fdopen(descriptor, "w") as out:
            out.write(str(os.getpid()))
        atexit.register(_release, lock, os.getpid())
        return


def _release(lock: Path, pid: int) -> None:
    try:
        if lock.read_text().strip() == str(pid):
            lock.unlink()
    except OSError:
        pass


class RunDirGuard(Callback):
    """Configured in each entry point's hydra.callbacks. A directory given literally was checked
    before Hydra started (overrides.check_overrides); one named through an interpolation
    (hydra.run.dir=runs/${model.name}) is known only once Hydra has composed the config, which is
    when this runs, before Hydra writes .hydra/ into it. The run then holds the folder (hold_run_dir)
    until it exits. `resume_key`: the key that resumes a run in its own directory (none for
    evaluate.py)."""

    def __init__(self, resume_key: str | None = None) -> None:
        self.resume_key = resume_key

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        run_dir = _resolved(config, "hydra.run.dir")
        if run_dir is None:
            return
        resuming = self.resume_key is not None and config.get(self.resume_key) not in (None, "")
        _refuse(refuse_reused_run_dir, run_dir, resuming, can_resume=self.resume_key is not None)
        if first_process():
            _refuse(hold_run_dir, run_dir)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = _resolved(config, "hydra.sweep.dir")
        if sweep_dir is not None:
            _refuse(refuse_reused_sweep_dir, sweep_dir)
