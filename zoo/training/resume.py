"""Which run a command resumes: `resume=auto|RUN` and a ckpt_path inside an unfinished run become
that run's folder, its checkpoint and the overrides it was started with."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .overrides import (
    ConfigSource,
    composing_from,
    config_flags,
    config_source,
    given_overrides,
    is_multirun,
    job_overrides,
    naming_the_sweep_point,
    recorded_config_source,
    runs_of,
    same_config_source,
    train_on_overrides,
)
from .quoting import override, train_on_command, typed_override, unquoted
from .run_dirs import (
    first_process,
    hydra_record,
    is_finished,
    not_a_checkpoint,
    resume_command,
    run_task,
)
from .validation import duration_seconds, is_integer, is_number

RUNS_DIR = Path("runs")
# Overrides that say where and how to resume, not what to train: ignored when matching runs.
# finetune.py's ckpt_path names what it trains (the source), so a fine-tune is matched on it.
# paths.output_dir names the run's folder as hydra.run.dir does: a recorded one re-applied, relative
# to another working folder, named a second folder beside the resumed run's, and for a finished
# run's continuation named the finished folder itself.
_RUN_LOCATION_KEYS = {
    "ckpt_path": (
        "resume",
        "ckpt_path",
        "hydra.run.dir",
        "paths.output_dir",
        "resume_ckpt",
        "hydra.output_subdir",
    ),
    "resume_ckpt": ("resume", "hydra.run.dir", "paths.output_dir", "resume_ckpt", "hydra.output_subdir"),
}


def _made_by_another(run_dir: Path, task: str | None) -> str | None:
    """The entry point that made `run_dir`, when it is known and not `task`."""
    made_by = run_task(run_dir)
    return made_by if task is not None and made_by is not None and made_by != task else None


def _refuse_another_maker(argv: list[str], run_dir: Path, task: str | None) -> None:
    """A run is resumed by the script that made it, from the config it was composed from."""
    made_by = _made_by_another(run_dir, task)
    if made_by is not None:
        raise UserError(
            f"{run_dir} is a run of {made_by}.py, not {task}.py; resume it with "
            f"python {made_by}.py ... {typed_override('resume', run_dir)}"
        )
    _refuse_another_config(argv, run_dir, task)


def _run_config_source(run_dir: Path) -> ConfigSource | None:
    return recorded_config_source(hydra_record(run_dir))


def _composed_alike(started: ConfigSource | None, source: ConfigSource) -> bool:
    """Whether a run `started` from a config source was composed from `source`'s folders and config;
    a run without Hydra's record of them is taken to be."""
    return started is None or not source.folders or same_config_source(started, source)


def _refuse_another_config(argv: list[str], run_dir: Path, task: str | None) -> None:
    """The flags that chose a run's config (--config-dir, --config-name, --config-path) are not in
    its record of overrides: resumed without them, or with others, the run was rebuilt from another
    config (the project's train.yaml for a copy with other defaults) without a word."""
    task = task or "train"
    given, started = config_source(argv, task), _run_config_source(run_dir)
    if _composed_alike(started, given):
        return

    def shown(source: ConfigSource) -> str:
        return " ".join(config_flags(source, task)) or f"configs/{task}.yaml"

    raise UserError(
        f"run {run_dir} was composed from {shown(started)}, this command from {shown(given)}; "
        f"resume it from its own: {resume_command(run_dir, task, started)}"
    )


def _what_is_trained(tokens: list[str], resume_key: str) -> list[str]:
    """The overrides that say what a run trains. Hydra's own settings (hydra.job.chdir=true,
    hydra/job_logging=...) are left out: its record of a run's overrides never holds them, and a
    command that gave one matched no run."""
    ignored = _RUN_LOCATION_KEYS[resume_key]
    return sorted(
        t for t in job_overrides(tokens) if "=" in t and t.lstrip("+~").split("=")[0] not in ignored
    )


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
    source = config_source(argv, task or "train")
    candidates = [
        last.parent.parent
        for last in runs_dir.glob("**/checkpoints/last.ckpt")
        if not is_finished(last.parent.parent)
        and _what_is_trained(_recorded_overrides(last.parent.parent), resume_key) == wanted
        and (task is None or run_task(last.parent.parent) in (task, None))
        and _composed_alike(_run_config_source(last.parent.parent), source)
    ]
    if not candidates:
        shown = " ".join([*config_flags(source, task or "train"), *wanted]) or "(no overrides)"
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
    overrides = {key: unquoted(value) for key, value in given_overrides(argv).items()}
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
            other = (
                f"; its best checkpoint resumes with {typed_override('ckpt_path', best)}"
                if best.is_file()
                else ""
            )
            raise UserError(f"cannot resume {run_dir}: it has no checkpoints/last.ckpt{other}")
        _refuse_another_maker(argv, run_dir, task)
        _refuse_another_folder(overrides, run_dir, target)
        argv = [t for t in argv if not t.startswith(f"{resume_key}=")]
        argv = _with_recorded_overrides(argv, run_dir, resume_key)
        return [*argv, override(resume_key, last), override("hydra.run.dir", run_dir), *_KEEP_RECORD]
    checkpoint = overrides.get(resume_key)
    if resume_key == "ckpt_path" and checkpoint and checkpoint != "null":
        run_dir = Path(checkpoint).parent.parent
        if Path(checkpoint).parent.name == "checkpoints":
            if not is_finished(run_dir):
                _refuse_another_maker(argv, run_dir, task)
                argv = _with_recorded_overrides(argv, run_dir, resume_key)
                return [*argv, override("hydra.run.dir", run_dir), *_KEEP_RECORD]
            return _train_on_from_finished(argv, run_dir, checkpoint, resume_key, task)
    return argv


def _train_on_from_finished(
    argv: list[str], run_dir: Path, checkpoint: str, resume_key: str, task: str | None
) -> list[str]:
    """A finished run's checkpoint, trained on in a new run folder built as that run was; refused
    here, before Hydra makes that folder, when nothing would be trained or its schedule would change."""
    made_by = _made_by_another(run_dir, task)
    if made_by is not None:
        # Built with train.py's config, a fine-tune's checkpoint (two parameter groups, its
        # finetune.* overrides) ended in a traceback or an unknown key.
        started = _run_config_source(run_dir) or config_source(argv, made_by)
        data = train_on_overrides([*_recorded_overrides(run_dir), *argv], started, made_by)
        raise UserError(
            f"{run_dir} is a finished run of {made_by}.py, not {task}.py; train on from its "
            f"weights with {train_on_command(checkpoint, data)}"
        )
    given, argv = argv, _with_recorded_overrides(argv, run_dir, resume_key)
    source = config_source(argv, task or "train")
    train_on = train_on_command(checkpoint, train_on_overrides(argv, source, task or "train"))
    # Each point of a -m sweep, before the first one runs: one with nothing left to train made a run
    # folder that only tested again, and one that changes the schedule was refused once it had one.
    points, swept = runs_of(argv)
    for number, point in enumerate(points):
        limits = _training_limits(point, source)
        command = _as_one_run(given, point, swept) if swept else given
        with naming_the_sweep_point(number, points, swept):
            _refuse_nothing_left_to_train(limits, command, run_dir, checkpoint, task or "train", train_on)
            _refuse_another_schedule_length(limits, run_dir, checkpoint, task or "train", train_on, source)
            _refuse_early_stopping_again(limits, command, run_dir, checkpoint, task or "train")
    # Said, because the README's "continues that run in its folder" is about unfinished runs; once,
    # not again by each process Lightning starts for DDP (its command names the new folder).
    if first_process():
        print(f"run {run_dir} already finished: training on from {checkpoint} in a new run directory")
    return argv


def _as_one_run(given: list[str], point: list[str], swept: set[str]) -> list[str]:
    """This command as a run of one of its sweep points: no -m, each swept key at the point's value."""
    at_point = {token.partition("=")[0]: token for token in point if token.partition("=")[0] in swept}
    return [at_point.get(token.partition("=")[0], token) for token in given if not is_multirun([token])]


def refuse_a_changed_continuation(argv: list[str], resume_key: str, config_name: str) -> None:
    """What a run continued from a checkpoint may not change (its model, data settings, optimizer and
    schedule), checked from that checkpoint and the composed config before Hydra makes a run folder:
    for the run, and for each point of a -m sweep before the first one runs. In the job, the refusal
    came after Hydra had made that job's folder, and after the points before it had run; it is made
    there again, by the same functions. What only the job knows is left to it: the data's classes when
    the data settings changed, OneCycle's step count, a rate that scale_lr scales by the processes."""
    given = given_overrides(argv).get(resume_key)
    if given is None or unquoted(given) in ("", "null"):
        return
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    points, swept = runs_of(argv)
    source = config_source(argv, config_name)
    if not source.folders:
        return  # composed by Hydra alone, from a package's folder: the job checks it
    with composing_from(source):
        for number, point in enumerate(points):
            try:
                cfg = compose(config_name=source.name, overrides=job_overrides(point))
                path = cfg.get(resume_key)
            except (HydraException, OmegaConfBaseException):
                continue  # Hydra reports it, as the job starts
            if not isinstance(path, str) or not path or not_a_checkpoint(Path(path)):
                continue  # no file, or plainly none of torch's (a text file): the job says which
            from .checkpoint import peek_checkpoint  # torch: only for a file that may be a checkpoint

            saved = peek_checkpoint(path)
            hparams = saved.get("hyper_parameters")
            if (
                "state_dict" not in saved
                or not isinstance(hparams, dict)
                or not {"model", "data"} <= set(hparams)
            ):
                continue  # not a run's checkpoint, or not readable: the job says which
            with naming_the_sweep_point(number, points, swept):
                train_on = train_on_overrides(point, source, config_name)
                _refuse_a_changed_run(str(path), saved, cfg, config_name, train_on)


def _refuse_a_changed_run(
    path: str, saved: dict[str, Any], cfg: Any, config_name: str, data: list[str]
) -> None:
    """The job's refusals of a continued run (checkpoint.check_resumable, the fine-tune's
    refuse_another_model_named, module.refuse_another_optimization), from `cfg` and the checkpoint
    (`saved`) alone; `data` are the point's train_on_overrides, which the advised fine-tune takes on."""
    from omegaconf.errors import OmegaConfBaseException

    from ..data import DataSpec
    from .builders import build_optimization, model_config, recorded_data_config
    from .checkpoint import other_data_settings, refuse_another_model, refuse_other_data_config
    from .finetuning import named_groups, refuse_another_model_named, scaled_scheduler_peak
    from .module import refuse_another_optimization

    hparams = saved["hyper_parameters"]
    try:
        data_config = recorded_data_config(cfg.data)
    except OmegaConfBaseException:
        data_config = None  # resolved only in the job (a ${hydra:...}): compared there
    if config_name == "finetune":
        refuse_another_model_named(path, hparams, cfg)
    elif data_config is not None and not other_data_settings(hparams, data_config):
        # The same data settings: the data the checkpoint describes, which the model is filled in from.
        try:
            spec = DataSpec.from_dict(hparams["data"])
        except (KeyError, TypeError, ValueError):
            spec = None  # a description the job's full load refuses
        if spec is not None:
            refuse_another_model(path, hparams, model_config(cfg, spec), spec.num_classes, data)
    if data_config is not None:
        refuse_other_data_config(path, hparams, data_config, data)
    if cfg.get("scale_lr"):
        return  # the rate is scaled by the run's processes, known only in the job
    try:
        optimizer, scheduler = build_optimization(cfg)
        groups = [{}]  # train.py's one group, at the optimizer's rate
        if config_name == "finetune":
            scale = float(cfg.finetune.backbone_lr_scale)
            groups, scheduler = named_groups(optimizer, scale), scaled_scheduler_peak(scheduler, scale)
    except Exception:
        return  # settings the job refuses, with its own message, before it compares them
    refuse_another_optimization(path, saved, optimizer, scheduler, groups, data)


_KEEP_RECORD = ("hydra.output_subdir=null",)


def _resume_in_named_dir(
    argv: list[str], run_dir: Path, checkpoint: str | None, resume_key: str, task: str | None
) -> list[str]:
    """`ckpt_path=RUN/checkpoints/last.ckpt hydra.run.dir=RUN` resumes RUN as ckpt_path alone would:
    with the overrides RUN was started with, its record left as it is. A checkpoint from another
    folder starts the named run from it: a finished run's as it would without hydra.run.dir."""
    if resume_key != "ckpt_path" or not checkpoint or checkpoint == "null":
        return argv
    source = Path(checkpoint)
    if source.parent.name != "checkpoints":
        return argv
    if not _same_folder(source.parent.parent, run_dir):
        if is_finished(source.parent.parent):
            # A new folder named for it changes nothing else: built as that run was, and refused
            # when nothing is left to train, as without hydra.run.dir.
            return _train_on_from_finished(argv, source.parent.parent, checkpoint, resume_key, task)
        return argv
    if is_finished(run_dir):
        return argv  # refused later, with the reason: a finished run is never reused
    _refuse_another_maker(argv, run_dir, task)
    argv = _with_recorded_overrides(argv, run_dir, resume_key)
    return [*argv, *(t for t in _KEEP_RECORD if t not in argv)]


def _refuse_another_folder(overrides: dict[str, str], run_dir: Path, target: str) -> None:
    """resume= continues a run in its own folder: a hydra.run.dir naming another was replaced by the
    run's without a word, and the run went on where the user had not asked it to."""
    for key, value in overrides.items():
        key = key.lstrip("+~")
        if (
            key in ("hydra.run.dir", "paths.output_dir")
            and "${" not in value
            and not _same_folder(Path(value), run_dir)
        ):
            raise UserError(
                f"resume={target} continues run {run_dir} in its own folder, not in {key}={value}; drop {key}"
            )


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
    started_in = _started_in(run_dir)
    recorded = [
        _data_where_the_run_read_it(token, started_in)
        for token in _recorded_overrides(run_dir)
        if (key := token.partition("=")[0].lstrip("+~")) not in given and key not in location
    ]
    if not given.union(token.partition("=")[0].lstrip("+~") for token in recorded) & set(_DATA_PATH_KEYS):
        recorded += _default_data_dir_the_run_read(run_dir, started_in)
    if recorded:
        print(f"resuming {run_dir} with the overrides it was started with: {' '.join(recorded)}", flush=True)
    # After the command's leading flags: Hydra reads its overrides as one unbroken list, and recorded
    # ones put before -m were refused with its usage text.
    at = next((i for i, token in enumerate(argv) if "=" in token and not token.startswith("-")), len(argv))
    return [*argv[:at], *recorded, *argv[at:]]


# Recorded overrides that name the run's data by a path, relative to where the run was started.
_DATA_PATH_KEYS = ("data.root", "paths.data_dir")


def _started_in(run_dir: Path) -> Path | None:
    """The working folder a run was started in, from Hydra's record of it; None when unknown."""
    cwd = hydra_record(run_dir, "runtime", "cwd")
    return Path(cwd) if isinstance(cwd, str) and Path(cwd).is_absolute() else None


def _data_where_the_run_read_it(token: str, started_in: Path | None) -> str:
    """A recorded relative data.root (or paths.data_dir), as the folder the run read, when the run is
    resumed from another working folder: re-applied as written it named another folder there (one of
    the same name with other images was trained on without a word). Left as written when that folder
    is gone (the project moved, the run with it) or the run's folder is unknown."""
    key, _, value = token.partition("=")
    value = unquoted(value)
    if started_in is None or key.lstrip("+~") not in _DATA_PATH_KEYS or "${" in value:
        return token
    path = Path(value)
    if path.is_absolute() or not (started_in / path).exists() or _same_folder(started_in, Path.cwd()):
        return token
    # Joined, not normalized: a .. after a link leads where the link points, as it did for the run.
    return override(key, started_in / path)


def _default_data_dir_the_run_read(run_dir: Path, started_in: Path | None) -> list[str]:
    """The config's own relative paths.data_dir (data/), as the folder the run read, for a run whose
    data.root follows it and that set neither key: it is in no record of overrides, and resumed
    from another working folder the run read that folder's data/ (images of its own, or a download)."""
    try:
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text()) or {}
        data_dir, root = config["paths"]["data_dir"], config["data"]["root"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return []
    if not isinstance(data_dir, str) or not isinstance(root, str) or "${paths.data_dir}" not in root:
        return []
    as_written = override("paths.data_dir", data_dir)
    token = _data_where_the_run_read_it(as_written, started_in)
    return [] if token == as_written else [token]


def _refuse_nothing_left_to_train(
    limits: dict[str, Any], given: list[str], run_dir: Path, checkpoint: str, task: str, fine_tune: str
) -> None:
    """A finished run's checkpoint that has reached the epoch, step or time limit of this command
    (`limits`, from the run's recorded overrides then the `given` ones) made a new run folder that
    trained nothing and only tested again; refused before Hydra makes that folder. A checkpoint that
    does not say how far it got is left to train on."""
    from .checkpoint import epoch_progress, peek_checkpoint  # torch: only on this path

    saved = peek_checkpoint(checkpoint)
    # Lightning counts an epoch as processed before its end hooks save last.ckpt, and stops at
    # max_epochs processed ones (completed lags by one in such a checkpoint).
    done = {"max_epochs": epoch_progress(saved).get("processed"), "max_steps": saved.get("global_step")}
    if not all(is_integer(value) for value in done.values()):
        return
    reached = [key for key in ("max_epochs", "max_steps") if key in limits and done[key] >= limits[key]]
    # Lightning's Timer keeps the time trained in the checkpoint, and a run resumed with its time
    # spent stops at once, unless min_epochs or min_steps hold it.
    timer = (saved.get("callbacks") or {}).get("Timer") or {}
    elapsed = (timer.get("time_elapsed") or {}).get("train")
    held = done["max_epochs"] < limits.get("min_epochs", 0) or done["max_steps"] < limits.get("min_steps", 0)
    if "max_time" in limits and is_number(elapsed) and elapsed >= limits["max_time"] and not held:
        reached.append("max_time")
    if not reached:
        return
    key = reached[0]
    if key == "max_time":
        trained, limit = f"for {_as_duration(elapsed)}", _as_duration(limits[key])
    else:
        unit = ("epoch" if key == "max_epochs" else "step") + ("s" if done[key] != 1 else "")
        trained, limit = f"{done[key]} {unit}", limits[key]
    if any(limits.get(f"schedule follows {reached_key}") for reached_key in reached):
        # Resumed, a schedule keeps its checkpoint's length: a higher limit would be refused too.
        train_on = f"train on from its weights with a fresh schedule: {fine_tune}"
    else:
        # One epoch more, or as many steps again, or the time trained and the limit again: values,
        # so that the command runs as printed; every limit reached is raised, or the command would
        # be refused again for another.
        higher = {"max_epochs": done["max_epochs"] + 1, "max_steps": 2 * done["max_steps"]}
        if "max_time" in reached:
            higher["max_time"] = _as_duration(int(elapsed) + max(limits["max_time"], 1))
        raised = {f"trainer.{reached_key}": higher[reached_key] for reached_key in reached}
        train_on = f"train on with a higher limit: {_given_again(task, given, checkpoint, raised)}"
    raise UserError(
        f"run {run_dir} already finished, and {checkpoint} has trained {trained} of this "
        f"command's trainer.{key}={limit}: nothing is left to train; {train_on}, or test it: "
        f"{_test_command(checkpoint)}"
    )


def _given_again(task: str, given: list[str], checkpoint: str, changed: dict[str, Any]) -> str:
    """The `given` command with the `changed` keys at their new values, as typed at a shell prompt."""
    kept = [shlex.quote(t) for t in given if t.partition("=")[0] not in ("ckpt_path", *changed)]
    new_values = [f"{key}={value}" for key, value in changed.items()]
    return " ".join([f"python {task}.py", *kept, typed_override("ckpt_path", checkpoint), *new_values])


def _test_command(checkpoint: str) -> str:
    """evaluate.py on the weights the run's own test used, when it kept a best checkpoint beside
    `checkpoint`."""
    best = Path(checkpoint).parent / "best.ckpt"
    return f"python evaluate.py {typed_override('ckpt_path', best if best.is_file() else checkpoint)}"


def stopped_by_patience(wait_count: Any, patience: Any) -> bool:
    """Whether early stopping with `wait_count` validations without improvement stops a run at this
    `patience` (with patience 0, a count of 0 is a run whose last validation improved)."""
    return is_integer(wait_count) and is_integer(patience) and wait_count > 0 and wait_count >= patience


def _refuse_early_stopping_again(
    limits: dict[str, Any], given: list[str], run_dir: Path, checkpoint: str, task: str
) -> None:
    """A finished run that early stopping ended, trained on with a patience its count of validations
    without improvement has reached: Lightning restores that count, and the new run stopped again at
    its first validation that did not improve, in a folder of its own. Refused before Hydra makes it.
    A run that min_epochs or min_steps still hold goes on, as Lightning would not stop it."""
    stopping = limits.get("early_stopping")
    if stopping is None:
        return
    from .checkpoint import epoch_progress, peek_checkpoint  # torch: only on this path

    saved = peek_checkpoint(checkpoint)
    # Lightning's key for the callback's state (Callback._generate_state_key): another monitor or
    # mode starts afresh.
    key = "EarlyStopping" + repr({"monitor": stopping["monitor"], "mode": stopping["mode"]})
    state = (saved.get("callbacks") or {}).get(key) or {}
    count = state.get("wait_count")
    if not stopped_by_patience(count, stopping["patience"]):
        return
    epochs, steps = epoch_progress(saved).get("processed"), saved.get("global_step")
    if not is_integer(epochs) or not is_integer(steps):
        return
    if epochs < limits.get("min_epochs", 0) or steps < limits.get("min_steps", 0):
        return
    # Lightning counts from 0 what the epoch lines count from 1.
    stopped_at = state.get("stopped_epoch", epochs - 1) + 1
    validations = f"{count} validation" + ("s" if count != 1 else "")
    patience = "callbacks.early_stopping.patience"
    raised = _given_again(task, given, checkpoint, {patience: count + stopping["patience"]})
    dropped = _given_again(task, given, checkpoint, {"callbacks.early_stopping": "null"})
    raise UserError(
        f"run {run_dir} stopped early at epoch {stopped_at}: {stopping['monitor']} had not improved "
        f"for {validations} ({patience}={stopping['patience']}), and {checkpoint} carries that count, "
        f"so training on would stop again at its first validation without improvement; train on with "
        f"a patience above {count}: {raised}, or without early stopping: {dropped}, or test it: "
        f"{_test_command(checkpoint)}"
    )


def _as_duration(seconds: float) -> str:
    """Whole seconds as trainer.max_time takes them: DD:HH:MM:SS."""
    minutes, second = divmod(int(seconds), 60)
    hours, minute = divmod(minutes, 60)
    day, hour = divmod(hours, 24)
    return f"{day:02d}:{hour:02d}:{minute:02d}:{second:02d}"


def _refuse_another_schedule_length(
    now: dict[str, Any], run_dir: Path, checkpoint: str, task: str, fine_tune: str, source: ConfigSource
) -> None:
    """A finished run trained on under a schedule whose length follows a limit this command changes
    (`now`; the default cosine's T_max is trainer.max_epochs) is refused once fit restores the
    checkpoint's schedule, by which time Hydra had made a run folder for nothing; refused here,
    before it. A run without its record of overrides is left to fit: its limits are not known here."""
    followed = [key for key in ("max_epochs", "max_steps") if now.get(f"schedule follows {key}")]
    # The run's own config is composed only when there is a limit to compare.
    if not followed or not (run_dir / ".hydra" / "overrides.yaml").is_file():
        return
    # The run's own config: the flags that chose it are in Hydra's record, not its overrides; without
    # that record, the command's (`source`).
    started = _run_config_source(run_dir) or source
    before = _training_limits(_recorded_overrides(run_dir), started)
    for key in followed:
        if before and now.get(key) != before.get(key):
            shown = {limit: "none" if limit is None else limit for limit in (before.get(key), now.get(key))}
            raise UserError(
                f"{checkpoint} continues a schedule whose length follows trainer.{key} "
                f"({shown[before.get(key)]} in run {run_dir}, {shown[now.get(key)]} here), and a resumed "
                "run keeps its checkpoint's schedule; train on from its weights with a fresh schedule: "
                f"{fine_tune}"
            )


def _training_limits(argv: list[str], source: ConfigSource | None) -> dict[str, Any]:
    """The epoch, step and time limits the command's config sets (an experiment file may set them
    too), its minimum epochs and steps, and whether the learning-rate schedule's length follows each
    limit (a cosine T_max of ${trainer.max_epochs}, OneCycle's total_steps left to the run's step
    count), and its early stopping's monitor, mode and patience. Empty when the config does not
    compose (or `source` is unknown), or under fast_dev_run: the command is then answered as it
    would be without this check."""
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if source is None or not source.folders:
        return {}
    try:
        with composing_from(source):
            cfg = compose(config_name=source.name, overrides=job_overrides(argv))
        if cfg.trainer.get("fast_dev_run"):  # a few batches whatever the limits
            return {}
        factory = OmegaConf.select(cfg, "scheduler.factory", default=None)
        schedule = OmegaConf.to_container(factory, resolve=False) if isinstance(factory, DictConfig) else {}
        limits = {}
        for key in ("max_epochs", "max_steps"):
            limit = cfg.trainer.get(key)
            if is_integer(limit) and limit != -1:
                limits[key] = limit
                limits[f"schedule follows {key}"] = schedule.get("total_steps", 0) is None or any(
                    f"trainer.{key}" in str(value) for value in schedule.values()
                )
        if duration_seconds(cfg.trainer.get("max_time")) is not None:
            limits["max_time"] = duration_seconds(cfg.trainer.get("max_time"))
        limits.update(
            {key: cfg.trainer[key] for key in ("min_epochs", "min_steps") if is_integer(cfg.trainer.get(key))}
        )
        stopping = OmegaConf.select(cfg, "callbacks.early_stopping", default=None)
        if isinstance(stopping, DictConfig):
            limits["early_stopping"] = {key: stopping.get(key) for key in ("monitor", "mode", "patience")}
        return limits
    except (HydraException, OmegaConfBaseException):
        return {}
