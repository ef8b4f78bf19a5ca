"""Checks and rewrites of the command line made before Hydra runs: where Hydra itself would answer
with a multi-line report, write into a folder it should not touch, or not know which run to resume."""

from __future__ import annotations

import difflib
import errno
import gc
import logging
import os
import re
import shlex
import signal
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError, in_one_line, user_errors

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs"
RUNS_DIR = Path("runs")
# Groups a user picks by name on the command line, with the word used in the error line.
_NAMED_GROUPS = {
    "paths": "paths setting",
    "model": "model",
    "data": "data set",
    "optimizer": "optimizer",
    "scheduler": "scheduler",
    "trainer": "trainer",
    "callbacks": "callbacks",
    "logger": "logger",
    "experiment": "experiment",
    "debug": "debug mode",
}
# Folders a run writes in, when the command line names them.
_RUN_DIR_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "paths.output_dir")
# Overrides that say where and how to resume, not what to train: ignored when matching runs.
# finetune.py's ckpt_path names what it trains (the source), so a fine-tune is matched on it.
_RUN_LOCATION_KEYS = {
    "ckpt_path": ("resume", "ckpt_path", "hydra.run.dir", "resume_ckpt", "hydra.output_subdir"),
    "resume_ckpt": ("resume", "hydra.run.dir", "resume_ckpt", "hydra.output_subdir"),
}


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def _overrides(argv: list[str]) -> dict[str, str]:
    return {key: value for key, sep, value in (token.partition("=") for token in argv) if sep}


def _group_defaults(config_name: str) -> dict[str, Any]:
    """The option each config group of an entry point's config takes when the command line names none."""
    tree = yaml.safe_load((CONFIG_DIR / f"{config_name}.yaml").read_text()) or {}
    return {k: v for entry in tree.get("defaults", []) if isinstance(entry, dict) for k, v in entry.items()}


def _no_option_named(group: str, value: str, config_name: str) -> str:
    """`group=null` or `group=`: Hydra answers with a traceback (null) or a multi-line report (empty);
    say instead how to get what was most likely meant."""
    known = options(group)
    given = f"{group}={value}: a config group takes the name of one of its options"
    if "none" in known:
        return (
            f"{given}; {group}=none is the one without a {_NAMED_GROUPS[group]} (known: {', '.join(known)})"
        )
    if _group_defaults(config_name).get(group) is None:
        return f"{given}; null is its default already, so leave {group}= out (known: {', '.join(known)})"
    return f"{given} (known: {', '.join(known)})"


# Groups whose section the code reads only when present (cfg.get): removing them is allowed.
_REMOVABLE_GROUPS = ("logger",)


_NEEDS_FINETUNE_SECTION = (
    "{given}: finetune.py needs its finetune section; set its keys one by one instead "
    "(finetune.head=..., finetune.freeze_backbone=...; see configs/finetune.yaml)"
)


def _check_removable(group: str, config_name: str) -> None:
    """`~group` deletes a config section; a section the entry point reads ended in OmegaConf's
    ConfigAttributeError traceback ('Key 'data' is not in struct')."""
    if group == "finetune" and config_name == "finetune":
        raise UserError(_NEEDS_FINETUNE_SECTION.format(given="~finetune"))
    if group not in (*_NAMED_GROUPS, "paths") or group in _REMOVABLE_GROUPS:
        return
    if group in _NAMED_GROUPS and _group_defaults(config_name).get(group) is None:
        return  # off by default (experiment, debug, evaluate's data): removing it changes nothing
    known = options(group)
    instead = f"{group}=none turns it off" if "none" in known else f"choose another with {group}=NAME"
    raise UserError(
        f"~{group}: {config_name}.py needs its {group} section; {instead} (known: {', '.join(known)})"
    )


# The keys that name a checkpoint file on the command line (resume_ckpt is resume=, rewritten).
_CHECKPOINT_KEYS = ("ckpt_path", "resume_ckpt")


def check_overrides(argv: list[str], resume_key: str | None = None, config_name: str = "train") -> None:
    """Unknown or missing group options, and a new run into a finished or unfinished run's directory
    (anything but resuming it, through `resume_key`), fail here in one line, before Hydra writes there."""
    overrides = _overrides(argv)
    resuming = resume_key is not None and overrides.get(resume_key, "null") not in ("", "null")
    for token in argv:
        if token.startswith("~"):
            _check_removable(token[1:].partition("=")[0], config_name)
    if config_name == "finetune" and overrides.get("finetune", overrides.get("+finetune")) in ("null", ""):
        raise UserError(_NEEDS_FINETUNE_SECTION.format(given=f"finetune={overrides.get('finetune', '')}"))
    for key, value in overrides.items():
        key = key.lstrip("+~")
        if config_name == "evaluate" and key.split(".")[0] == "model":
            # Hydra would suggest +model=..., which evaluate.py would then ignore.
            raise UserError(
                f"{key}=: evaluate.py takes the model (its architecture and settings) from the checkpoint; "
                "drop it, or fine-tune the checkpoint into another model with finetune.py"
            )
        if key in _NAMED_GROUPS:
            if "(" in value:  # a sweep function, choice(a,b) or glob(res*): Hydra expands and checks it
                continue
            known = options(key)
            for choice in (c.strip() for c in value.split(",")):  # a -m sweep lists several
                if choice in ("null", ""):
                    raise UserError(_no_option_named(key, choice, config_name))
                if choice not in known:
                    raise UserError(f"unknown {_NAMED_GROUPS[key]} {choice!r}; known: {', '.join(known)}")
        if key in _CHECKPOINT_KEYS and value not in ("", "null") and not any(c in value for c in ",($"):
            check_weights_path(value.strip("\"'"))  # before Hydra makes a run folder for the refusal
        if key in _RUN_DIR_KEYS:
            folder = Path(value.strip("\"'"))
            refuse_unwritable_dir(key, folder)
            if key == "hydra.sweep.dir":
                refuse_reused_sweep_dir(folder)
            else:
                refuse_reused_run_dir(folder, resuming, key=key, can_resume=resume_key is not None)


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
        resume = f"resume it with resume={run_dir}, or " if can_resume else ""
        raise UserError(
            f"run directory {run_dir} holds the checkpoints of an unfinished run; "
            f"{resume}choose another {key}"
        )


def refuse_reused_sweep_dir(sweep_dir: Path) -> None:
    """A sweep into a folder that holds an earlier sweep's runs: each job would be refused only after
    Hydra had rewritten that run's record (.hydra/) and the sweep's multirun.yaml."""
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


def run_task(run_dir: Path) -> str | None:
    """Which entry point made a run (its task_name: train, finetune), from the config it recorded."""
    for record in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        try:
            task = (yaml.safe_load(record.read_text()) or {}).get("task_name")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if task:
            return str(task)
    return None


def _refuse_other_task(run_dir: Path, task: str | None) -> None:
    made_by = run_task(run_dir)
    if task is not None and made_by is not None and made_by != task:
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
    overrides = _overrides(argv)
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
        return [*argv, f"{resume_key}={last}", f"hydra.run.dir={run_dir}", *_KEEP_RECORD]
    checkpoint = overrides.get(resume_key)
    if resume_key == "ckpt_path" and checkpoint and checkpoint != "null":
        run_dir = Path(checkpoint).parent.parent
        if Path(checkpoint).parent.name == "checkpoints":
            if not is_finished(run_dir):
                _refuse_other_task(run_dir, task)
                argv = _with_recorded_overrides(argv, run_dir, resume_key)
                return [*argv, f"hydra.run.dir={run_dir}", *_KEEP_RECORD]
            # Said, because the README's "continues that run in its folder" is about unfinished runs.
            print(f"run {run_dir} already finished: training on from {checkpoint} in a new run directory")
            return _with_recorded_overrides(argv, run_dir, resume_key)
    return argv


_KEEP_RECORD = ("hydra.output_subdir=null",)


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


def external_launch_overrides(argv: list[str], environ: dict[str, str], task: str = "train") -> list[str]:
    """Processes started by torchrun or SLURM each compose their own config: without one shared
    run directory named on the command line, every rank would time-stamp a folder of its own."""
    world_size = int(environ.get("WORLD_SIZE") or environ.get("SLURM_NTASKS") or 1)
    rank = int(environ.get("RANK") or environ.get("SLURM_PROCID") or 0)
    if world_size <= 1 or "LOCAL_RANK" in environ and "RANK" not in environ:
        return (
            argv  # a single process, or a child that Lightning started (it gets the folder from its parent)
        )
    if not any(t.lstrip("+~").startswith("hydra.run.dir=") for t in argv):
        raise UserError(
            f"this is one of {world_size} processes started by torchrun or SLURM; give all of them the same "
            f"run directory on a shared file system: hydra.run.dir=runs/{task}/NAME"
        )
    if rank == 0:
        return argv
    no_record = [] if "hydra.output_subdir=null" in argv else ["hydra.output_subdir=null"]
    return [*argv, *no_record, f"hydra.job.name={task}_rank{rank}"]


class _WithoutAdvertising(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def quiet_library_notices() -> None:
    """Two lines every run would print that a user can do nothing about: Lightning 2.6's tip to
    install its cloud logger, and the FutureWarning Lightning's own code triggers in torch 2.14
    (its batch flattening still builds torch's deprecated LeafSpec)."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_WithoutAdvertising())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.formatwarning = _own_warnings_in_one_line(warnings.formatwarning)


def _own_warnings_in_one_line(library_format: Callable[..., str]) -> Callable[..., str]:
    """The package's warnings are sentences for the user (skip_bad_images' list of skipped files);
    Python's format would add the file, line and source line of the code that raised them."""
    package = Path(__file__).resolve().parents[1]

    def format_warning(message, category, filename, lineno, line=None) -> str:
        if Path(filename).resolve().is_relative_to(package):
            return f"warning: {message}\n"
        return library_format(message, category, filename, lineno, line)

    return format_warning


def _exit_quietly_on_ctrl_c() -> None:
    # Ctrl-C while the libraries import (seconds) would print a traceback of importlib's frames.
    signal.signal(signal.SIGINT, lambda signum, frame: sys.exit(128 + signal.SIGINT))


def precheck(config_name: str, resume_key: str | None = None) -> None:
    """Run before Hydra: fail fast on typos; with `resume_key`, rewrite resume requests in sys.argv."""
    _exit_quietly_on_ctrl_c()
    quiet_library_notices()
    with user_errors():
        if resume_key is not None:
            sys.argv[1:] = resolve_resume(sys.argv[1:], resume_key, task=config_name)
        check_overrides(sys.argv[1:], resume_key, config_name)
        sys.argv[1:] = run_dir_of_output_dir(sys.argv[1:])
        if _is_multirun(sys.argv[1:]):
            check_sweep_points(sys.argv[1:], config_name)
        sys.argv[1:] = external_launch_overrides(sys.argv[1:], dict(os.environ), task=config_name)


def run_dir_of_output_dir(argv: list[str]) -> list[str]:
    """paths.output_dir follows hydra.run.dir in the configs. Set alone on the command line, it took
    the checkpoints, while train.log and the .hydra record went to a new time-stamped folder: it now
    names the run's one folder."""
    given = _overrides(argv)
    output_dir, run_dir = given.get("paths.output_dir"), given.get("hydra.run.dir")
    if output_dir is None or _is_multirun(argv):
        return argv
    if run_dir is None:
        return [*argv, f"hydra.run.dir={output_dir}"]
    if run_dir != output_dir:
        raise UserError(
            f"hydra.run.dir={run_dir} and paths.output_dir={output_dir} name two folders for one run; "
            "give one of them"
        )
    return argv


def _is_multirun(argv: list[str]) -> bool:
    return any(token in ("-m", "--multirun", "hydra.mode=MULTIRUN") for token in argv)


def check_sweep_points(argv: list[str], config_name: str) -> None:
    """Every point of a -m sweep, composed and checked against the config rules before the first
    one trains: a bad value in the last point was found only once the points before it had run."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # Hydra's default sweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, HydraException, OverrideParseException

    from .validation import validate_config

    # Hydra's own settings (run and sweep folders, launcher) are not the job's config.
    overrides = [
        t for t in argv if not t.startswith("-") and not t.lstrip("+~").startswith(("hydra.", "hydra/"))
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        try:
            parsed = OverridesParser.create().parse_overrides(overrides)
            if not any(override.is_sweep_override() for override in parsed):
                return
            batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
        except OverrideParseException as error:
            raise UserError(describe_override_error(error)) from None
        except HydraException:
            return  # a sweep Hydra expands only once it runs (glob() of a group's options)
        points = [point for batch in batches for point in batch]
        subdir = _overrides(argv).get("hydra.sweep.subdir")
        if subdir is not None and "${" not in subdir and len(points) > 1:
            raise UserError(
                f"hydra.sweep.subdir={subdir} puts all {len(points)} points of the sweep in one folder; "
                "name each its own, e.g. hydra.sweep.subdir=${hydra.job.num} (the default)"
            )
        output_dir = _overrides(argv).get("paths.output_dir")
        if output_dir is not None and len(points) > 1:
            # It follows each point's folder in the configs; set, it took every point's checkpoints.
            raise UserError(
                f"paths.output_dir={output_dir} puts the checkpoints of all {len(points)} points of the "
                f"sweep in one folder; name the sweep's folder instead, hydra.sweep.dir={output_dir} "
                "(each point gets a folder in it)"
            )
        swept = {override.get_key_element() for override in parsed if override.is_sweep_override()}
        for number, point in enumerate(points):
            try:
                validate_config(compose(config_name=config_name, overrides=list(point)))
            except (ConfigCompositionException, OverrideParseException) as error:
                raise UserError(describe_override_error(error)) from None
            except UserError as error:
                shown = " ".join(o for o in point if o.partition("=")[0] in swept)
                raise UserError(f"sweep point #{number} ({shown}) of {len(points)}: {error}") from None


def _leaf_keys(tree: dict, prefix: str = "") -> list[str]:
    """Every dotted key of a plain config tree, Hydra's own settings left out."""
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if dotted != "hydra":
            keys += _leaf_keys(value, f"{dotted}.") if isinstance(value, dict) else [dotted]
    return keys


def _unparsable_character(override: str, position: int) -> str:
    character = override[position]
    where = (
        f"cannot parse the override {override!r}: Hydra's grammar stops at {character!r} "
        f"(character {position + 1})"
    )
    if character == "~":
        return f"{where}; a ~ is not your home folder here: write it out ($HOME/..., which the shell expands)"
    key, _, value = override.partition("=")
    # Quoted for Hydra, and the whole for the shell, which would otherwise take the inner quotes.
    hydra_quoted = f'{key}="{value}"' if "'" in value else f"{key}='{value}'"
    return f"{where}; quote the value: {shlex.quote(hydra_quoted)}"


def describe_override_error(error: Exception) -> str:
    """Hydra's multi-line report of a bad override as one line. A key the config lacks is most often
    a typo, so the nearest existing key comes first, and Hydra's "+key=value" (add it) second."""
    override = getattr(error, "override", None)  # OverrideParseException: not key=value at all
    if override is not None:
        lines = str(error).split("\nSee ")[0].splitlines()
        reason = lines[-1]
        if reason.strip() == "^" and len(lines) >= 2 and override in lines[-2]:
            # ANTLR's report is the override with a caret under the character it stopped at.
            position = len(reason) - 1 - lines[-2].index(override)
            if 0 <= position < len(override):
                return _unparsable_character(override, position)
        return f"cannot parse the override {override!r} ({reason}); write key=value, e.g. optimizer.lr=0.01"
    cause = error.__cause__
    parent = getattr(cause, "parent_node", None)
    full_key, key = getattr(cause, "full_key", None), getattr(cause, "key", None)
    if parent is None or not full_key or not key:
        return in_one_line(error)
    section = full_key.rpartition(".")[0]
    siblings = [name for name in parent if not str(name).startswith("_")]
    near = [".".join(filter(None, (section, name))) for name in difflib.get_close_matches(key, siblings, n=2)]
    if not near:  # the key may exist elsewhere: lr=0.1 for optimizer.lr
        from omegaconf import OmegaConf

        root = parent._get_root()  # OmegaConf has no public way up from a node
        everywhere = _leaf_keys(OmegaConf.to_container(root, resolve=False))
        near = [k for k in everywhere if k.rpartition(".")[2] == key][:2]
        if not section:  # a misspelt top-level key (max_epoch=3); in a section, a near key elsewhere
            # is a different setting (data.num_workers is not trainer.num_nodes)
            near = near or difflib.get_close_matches(full_key, everywhere, n=2)
    where = f"{section} has" if section else "the config has"
    if near:
        hint = f"did you mean {' or '.join(near)}? "
    elif section:
        hint = f"its keys: {', '.join(str(name) for name in siblings)}; "
    else:
        hint = ""
    # Hydra's own suggestion names the whole override (+data.image_size=64 where only `data` is
    # missing); +data=... would replace the section rather than set one key of it.
    append = re.search(r"To append to your config use (\+\S+)", str(error))
    addition = append.group(1) if append else f"+{full_key}=..."
    return f"{where} no key {key!r}; {hint}({addition} adds it as a new key)"


def run_hydra_main(main: Callable[[], Any]) -> None:
    """Run a @hydra.main entry point with Hydra's report of a bad override (a key the config lacks,
    an override it cannot parse) given as one error line. HYDRA_FULL_ERROR=1 makes Hydra raise
    instead of printing that report; a user who set it already gets the full traceback."""
    from hydra.errors import ConfigCompositionException, OverrideParseException

    user_wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    # Ctrl-C from here on is a KeyboardInterrupt again (Lightning stops training gracefully on it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main()
        # Python's collector makes a last pass over every object before the process ends: for torch,
        # torchvision, scipy and sympy's modules, most of a second on a slow CPU, spent looking for
        # cycles the OS is about to reclaim. The run's files are closed by now (checkpoints, metrics,
        # TensorBoard); frozen objects are skipped. Only on success: an error's exit is left as it is.
        gc.freeze()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except (ConfigCompositionException, OverrideParseException) as error:
        if user_wants_traceback:
            raise
        with user_errors():
            raise UserError(describe_override_error(error)) from None
