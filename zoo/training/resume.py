"""Which run a command resumes: `resume=auto|RUN` and a ckpt_path inside an unfinished run become
that run's folder, its checkpoint and the overrides it was started with."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .errors import UserError
from .overrides import given_overrides
from .run_dirs import is_finished, run_task

RUNS_DIR = Path("runs")
# Overrides that say where and how to resume, not what to train: ignored when matching runs.
# finetune.py's ckpt_path names what it trains (the source), so a fine-tune is matched on it.
_RUN_LOCATION_KEYS = {
    "ckpt_path": ("resume", "ckpt_path", "hydra.run.dir", "resume_ckpt", "hydra.output_subdir"),
    "resume_ckpt": ("resume", "hydra.run.dir", "resume_ckpt", "hydra.output_subdir"),
}


def _made_by_another(run_dir: Path, task: str | None) -> str | None:
    """The entry point that made `run_dir`, when it is known and not `task`."""
    made_by = run_task(run_dir)
    return made_by if task is not None and made_by is not None and made_by != task else None


def _refuse_other_task(run_dir: Path, task: str | None) -> None:
    made_by = _made_by_another(run_dir, task)
    if made_by is not None:
        raise UserError(
            f"{run_dir} is a run of {made_by}.py, not {task}.py; resume it with "
            f"python {made_by}.py ... resume={run_dir}"
        )


def _what_is_trained(tokens: list[str], resume_key: str) -> list[str]:
    ignored = _RUN_LOCATION_KEYS[resume_key]
    return sorted(t for t in tokens if "=" in t and t.lstrip("+~").split("=")[0] not in ignored)


def _recorded_overrides(run_dir: Path) -> list[str]:
    try:
        return list(yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or [])
    except (OSError, yaml.YAMLError):
        return []


def find_interrupted_run(
    argv: list[str], runs_dir: Path = RUNS_DIR, resume_key: str = "ckpt_path", task: str | None = None
) -> Path:
    """The newest unfinished run of this entry point (`task`) started with the same overrides as
    this command (resume=auto)."""
    wanted = _what_is_trained(argv, resume_key)
    candidates = [
        last.parent.parent
        for last in runs_dir.glob("**/checkpoints/last.ckpt")
        if not is_finished(last.parent.parent)
        and _what_is_trained(_recorded_overrides(last.parent.parent), resume_key) == wanted
        and (task is None or run_task(last.parent.parent) in (task, None))
    ]
    if not candidates:
        shown = " ".join(wanted) or "(no overrides)"
        raise UserError(f"resume=auto found no unfinished run under {runs_dir}/ started with {shown}")
    return max(candidates, key=lambda run: (run / "checkpoints" / "last.ckpt").stat().st_mtime)


def resolve_resume(
    argv: list[str], resume_key: str = "ckpt_path", runs_dir: Path = RUNS_DIR, task: str | None = None
) -> list[str]:
    """Turn `resume=auto|RUN_DIR` (and a ckpt_path inside an unfinished run) into the run directory
    and checkpoint overrides, so a resumed run continues in its own folder, TensorBoard files included.
    Hydra writes no new record (.hydra/) into it: the run keeps the overrides it was started with,
    which resume=auto matches on, even when this command is refused later."""
    # As Hydra reads them: a path with a comma, a bracket or a non-ASCII letter must be quoted on the
    # command line (ckpt_path='runs/a,b/checkpoints/last.ckpt'), and was taken with its quotes.
    overrides = {key: _unquoted(value) for key, value in given_overrides(argv).items()}
    named_dirs = [value for key, value in overrides.items() if key.lstrip("+~") == "hydra.run.dir"]
    if named_dirs and "resume" not in overrides:
        return _resume_in_named_dir(argv, Path(named_dirs[-1]), overrides.get(resume_key), resume_key, task)
    if "resume" in overrides:
        target = overrides["resume"]
        argv = [t for t in argv if not t.startswith("resume=")]
        if target == "null":  # as for any key: not set, so a new run
            return resolve_resume(argv, resume_key, runs_dir, task)
        if not target:
            raise UserError("resume= needs a value: auto, a run directory, or a run's checkpoints/last.ckpt")
        run_dir = find_interrupted_run(argv, runs_dir, resume_key, task) if target == "auto" else Path(target)
        if run_dir.is_file():  # resume=RUN/checkpoints/last.ckpt
            if run_dir.parent.name != "checkpoints":
                raise UserError(
                    f"resume={target} is a file outside a run's checkpoints folder; give auto, a run "
                    "directory, or a run's checkpoints/last.ckpt"
                )
            run_dir = run_dir.parent.parent
        if is_finished(run_dir):
            raise UserError(f"run {run_dir} already finished (metrics.json); there is nothing to resume")
        last = run_dir / "checkpoints" / "last.ckpt"
        if not run_dir.is_dir():
            raise UserError(f"resume={target}: there is no such run directory")
        if not last.is_file():
            best = run_dir / "checkpoints" / "best.ckpt"
            other = f"; its best checkpoint resumes with ckpt_path={best}" if best.is_file() else ""
            raise UserError(f"cannot resume {run_dir}: it has no checkpoints/last.ckpt{other}")
        _refuse_other_task(run_dir, task)
        argv = [t for t in argv if not t.startswith(f"{resume_key}=")]
        argv = _with_recorded_overrides(argv, run_dir, resume_key)
        return [*argv, _override(resume_key, last), _override("hydra.run.dir", run_dir), *_KEEP_RECORD]
    checkpoint = overrides.get(resume_key)
    if resume_key == "ckpt_path" and checkpoint and checkpoint != "null":
        run_dir = Path(checkpoint).parent.parent
        if Path(checkpoint).parent.name == "checkpoints":
            if not is_finished(run_dir):
                _refuse_other_task(run_dir, task)
                argv = _with_recorded_overrides(argv, run_dir, resume_key)
                return [*argv, _override("hydra.run.dir", run_dir), *_KEEP_RECORD]
            made_by = _made_by_another(run_dir, task)
            if made_by is not None:
                # Built with train.py's config, a fine-tune's checkpoint (two parameter groups, its
                # finetune.* overrides) ended in a traceback or an unknown key.
                raise UserError(
                    f"{run_dir} is a finished run of {made_by}.py, not {task}.py; train on from its "
                    f"weights with python finetune.py ckpt_path={checkpoint} finetune.head=extend"
                )
            # Said, because the README's "continues that run in its folder" is about unfinished runs.
            print(f"run {run_dir} already finished: training on from {checkpoint} in a new run directory")
            return _with_recorded_overrides(argv, run_dir, resume_key)
    return argv


_KEEP_RECORD = ("hydra.output_subdir=null",)

# What Hydra's grammar reads unquoted in a value (a comma would make a list, é stops it).
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_/.\-+%*@?:| ]+")


def _unquoted(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _override(key: str, value: str | Path) -> str:
    """key=value, the value quoted where Hydra would not read it as written."""
    value = str(value)
    if _PLAIN_VALUE.fullmatch(value) and value == value.strip():
        return f"{key}={value}"
    quote = "'" if "'" not in value else '"'
    return f"{key}={quote}{value}{quote}"


def _resume_in_named_dir(
    argv: list[str], run_dir: Path, checkpoint: str | None, resume_key: str, task: str | None
) -> list[str]:
    """`ckpt_path=RUN/checkpoints/last.ckpt hydra.run.dir=RUN` resumes RUN as ckpt_path alone would:
    with the overrides RUN was started with, its record left as it is. A checkpoint from another
    folder starts the named run from it."""
    if resume_key != "ckpt_path" or not checkpoint or checkpoint == "null":
        return argv
    source = Path(checkpoint)
    if source.parent.name != "checkpoints" or not _same_folder(source.parent.parent, run_dir):
        return argv
    if is_finished(run_dir):
        return argv  # refused later, with the reason: a finished run is never reused
    _refuse_other_task(run_dir, task)
    argv = _with_recorded_overrides(argv, run_dir, resume_key)
    return [*argv, *(t for t in _KEEP_RECORD if t not in argv)]


def _same_folder(first: Path, second: Path) -> bool:
    try:
        return first.resolve() == second.resolve()
    except OSError:
        return False


def _with_recorded_overrides(argv: list[str], run_dir: Path, resume_key: str) -> list[str]:
    """The overrides a run was started with (its .hydra/overrides.yaml), then this command's: a resumed
    run is built as it was started, and a key given again takes this command's value."""
    given = {token.partition("=")[0].lstrip("+~") for token in argv}
    location = _RUN_LOCATION_KEYS[resume_key]
    recorded = [
        token
        for token in _recorded_overrides(run_dir)
        if (key := token.partition("=")[0].lstrip("+~")) not in given and key not in location
    ]
    if recorded:
        print(f"resuming {run_dir} with the overrides it was started with: {' '.join(recorded)}", flush=True)
    return [*recorded, *argv]
