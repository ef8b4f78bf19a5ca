"""What a command may read and write, checked before anything is built: a checkpoint path that names
a file, and a run folder that can be written and holds no other run."""

from __future__ import annotations

import errno
import os
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .quoting import typed_override


def first_process() -> bool:
    """Not one of the other processes of a multi-process run, which share the first one's folder."""
    return all(os.environ.get(key, "0") == "0" for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


def check_weights_path(path: str | Path) -> None:
    """A checkpoint path that names no file (a typo, a folder), refused before anything is built."""
    path = Path(path)
    if path.is_dir():
        inside = sorted([*path.glob("*.ckpt"), *path.glob("checkpoints/*.ckpt")])
        listed = f": {', '.join(map(str, inside[:3]))}" if inside else " (it holds no .ckpt file)"
        raise UserError(f"checkpoint {path} is a folder; pass ckpt_path=PATH to a checkpoint file{listed}")
    if not path.is_file():
        kind = "state dict file" if path.suffix in (".pt", ".pth", ".bin") else ".ckpt file of a run"
        raise UserError(f"checkpoint {path} does not exist; pass ckpt_path=PATH to an existing {kind}")


def check_weights_file(path: str | Path) -> None:
    """check_weights_path, then the file's first bytes (not_a_checkpoint): called where the file
    is about to be read, once the command's settings have passed, but before torch is imported."""
    check_weights_path(path)
    refusal = not_a_checkpoint(Path(path))
    if refusal:
        raise UserError(refusal)


def not_a_checkpoint(path: Path) -> str | None:
    """Why a file's first bytes show it is no PyTorch checkpoint, or None. torch.load reads only a zip
    archive or (before torch 1.6) a pickle, which begins with its protocol byte; told from the bytes,
    an empty file, a text file or an HDF5 file is refused without importing torch (seconds). A file
    of another format that starts as one of those two (an .npz, a TorchScript archive, a truncated
    zip) is refused by torch.load, with torch's reason."""
    try:
        with path.open("rb") as handle:
            start = handle.read(64)
    except OSError:
        return None  # an unreadable file: torch.load's attempt names the reason
    if not start:
        return f"{path} is empty: a checkpoint whose writing never finished"
    if not start.startswith((b"PK", b"\x80")):
        return (
            f"{path} is not a PyTorch checkpoint: torch.save writes a zip archive (or, before torch "
            f"1.6, a pickle), and this file begins {start[:16]!r}"
        )
    return None


def refuse_unwritable_dir(key: str, folder: Path) -> None:
    """A folder the run cannot create or write in fails here, not as Hydra's or our own traceback
    once the run has started. The probe is a temporary folder in the nearest existing ancestor,
    removed at once: nothing is left behind by a command that is refused later."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{key}={folder}: that is a file, not a folder; choose another {key}")
    ancestor = folder
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:
        if not ancestor.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(ancestor))
        os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=ancestor))
    except OSError as error:
        raise UserError(
            f"{key}={folder}: cannot create it, as {ancestor} takes no new folders ({error.strerror}); "
            f"choose another {key}"
        ) from None


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").exists()


def holds_a_run(folder: Path) -> bool:
    return is_finished(folder) or any((folder / "checkpoints").glob("*.ckpt"))


def refuse_reused_run_dir(
    run_dir: Path, resuming: bool, key: str = "hydra.run.dir", can_resume: bool = True
) -> None:
    """A run never goes into a folder holding another: a finished one, or an unfinished one's
    checkpoints unless it resumes that run. It would replace that run's best.ckpt and Hydra's record
    of its overrides (which resume=auto matches on), and mark it finished. `can_resume`: whether
    the entry point resumes at all (evaluate.py does not), for the advice."""
    if is_finished(run_dir):
        also = ", or resume an unfinished one" if can_resume else ""
        raise UserError(
            f"run directory {run_dir} already holds a finished run (metrics.json); choose another {key}{also}"
        )
    if not resuming and any((run_dir / "checkpoints").glob("*.ckpt")):
        # The command last, where nothing the shell would take for part of it follows it; run by the
        # script that made the run (a fine-tune resumes with finetune.py).
        resume = f", or resume it with {resume_command(run_dir)}" if can_resume else ""
        raise UserError(
            f"run directory {run_dir} holds the checkpoints of an unfinished run; "
            f"choose another {key}{resume}"
        )


def refuse_reused_sweep_dir(sweep_dir: Path) -> None:
    """A sweep into a folder that holds an earlier sweep's runs: each job would be refused only after
    Hydra had rewritten that run's record (.hydra/) and the sweep's multirun.yaml. A folder that is
    itself a run's would take the sweep's points and multirun.yaml among that run's files."""
    if holds_a_run(sweep_dir):
        finished = is_finished(sweep_dir)
        state = "a finished run (metrics.json)" if finished else "an unfinished run's checkpoints"
        raise UserError(f"hydra.sweep.dir={sweep_dir} already holds {state}; choose another hydra.sweep.dir")
    runs = (
        sorted(p.name for p in sweep_dir.glob("*") if p.is_dir() and holds_a_run(p))
        if sweep_dir.is_dir()
        else []
    )
    if runs:
        raise UserError(
            f"hydra.sweep.dir={sweep_dir} already holds the runs of another sweep ({', '.join(runs[:3])}); "
            "choose another hydra.sweep.dir"
        )


def hydra_record(run_dir: Path, *keys: str) -> object:
    """A setting Hydra recorded for a run (its .hydra/hydra.yaml), by its keys under `hydra`; None
    when the run has no such record."""
    try:
        setting = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text()) or {}
        for key in ("hydra", *keys):
            setting = setting[key]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return setting


# The scripts whose runs these are, by the names Hydra gives their jobs.
ENTRY_POINTS = ("train", "finetune", "evaluate")


def entry_point(hydra: Any) -> str | None:
    """The script a Hydra job ran, from Hydra's settings for it: the job's name is the script's
    (train.py: train) unless hydra.job.name renamed it, and the config's name is the script's unless
    --config-name chose the user's own (mytrain.yaml, which made it a run of "mytrain.py")."""
    job = hydra.get("job") if isinstance(hydra, Mapping) else None
    names = (job.get("name"), job.get("config_name")) if isinstance(job, Mapping) else ()
    return next((str(name) for name in names if name in ENTRY_POINTS), None)


def run_task(run_dir: Path) -> str | None:
    """Which entry point made a run (train, finetune), from the records it left. Hydra's record of
    the job comes first: an experiment file may set task_name to name its runs' folder
    (runs/resnet18_digits/), and its runs were taken for another script's."""
    script = entry_point(hydra_record(run_dir))
    if script:
        return script
    for record in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        try:
            task = (yaml.safe_load(record.read_text()) or {}).get("task_name")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if task:
            return str(task)
    return None


def resume_command(run_dir: Path, task: str | None = None, source: Any = None) -> str:
    """The command that resumes `run_dir`: the script that made it, with the Hydra flags that chose
    its config (--config-dir DIR, --config-name NAME), which its record of overrides does not hold;
    from `source` (an overrides.ConfigSource) when given, else from the run's record."""
    from .overrides import config_flags, recorded_config_source  # overrides imports this module

    task = task or run_task(run_dir) or "train"
    source = source or recorded_config_source(hydra_record(run_dir))
    flags = [shlex.quote(flag) for flag in config_flags(source, task)] if source else []
    return " ".join(["python", f"{task}.py", *flags, typed_override("resume", run_dir)])
