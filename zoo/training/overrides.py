"""The command line's overrides, checked before Hydra runs: where Hydra would answer a typo or a
missing option with a multi-line report, or write into a folder it should not touch."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError, in_one_line
from .quoting import typed_override, unquoted
from .run_dirs import (
    check_weights_path,
    entry_point,
    refuse_reused_run_dir,
    refuse_reused_sweep_dir,
    refuse_unwritable_dir,
)


def _checkout() -> Path:
    """The folder of the entry points, whose configs/ they compose from (Hydra's config_path is
    relative to the script). In a checkout or an editable install, the package's parent; a wheel
    installs the package alone, so for a checkout's script run on it (python -P train.py puts it
    first on sys.path), the folder of the script Python runs."""
    package_parent = Path(__file__).resolve().parents[2]
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if (package_parent / "configs").is_dir() or script is None:
        return package_parent
    return Path(script).resolve().parent


ROOT = _checkout()
CONFIG_DIR = ROOT / "configs"
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


@dataclass(frozen=True)
class ConfigSource:
    """Where Hydra composes an entry point's config from: the config folder (--config-path) and a
    folder searched after it (--config-dir), and the config's name (--config-name)."""

    folders: tuple[Path, ...]
    name: str


def hydra_arguments(argv: list[str]) -> argparse.Namespace | None:
    """The command line as Hydra's own parser reads it (its flags, --config-dir DIR among them, and
    the overrides); None for a command of overrides alone (read without importing Hydra) or one
    Hydra's parser refuses (Hydra then says why)."""
    if not any(token.startswith("-") for token in argv) or "--version" in argv:
        return None
    from hydra._internal.utils import get_args_parser

    def refuse(message: str) -> None:
        raise ValueError(message)

    parser = get_args_parser()
    parser.error = refuse  # its own prints the usage and exits
    try:
        return parser.parse_args(argv)
    except ValueError:
        return None


def config_source(argv: list[str], config_name: str) -> ConfigSource:
    """The folders and config a command composes from: a group option of a --config-dir folder (model=mine)
    was refused as unknown, and a sweep's points were composed from the project's configs."""
    args = hydra_arguments(argv)
    if args is None:
        return ConfigSource((CONFIG_DIR,), config_name)
    if args.config_path is not None and args.config_path.startswith("pkg://"):
        return ConfigSource((), args.config_name or config_name)  # a package's folder: left to Hydra
    # As Hydra takes --config-path: relative to the file that declares @hydra.main (the checkout).
    folders = [CONFIG_DIR if args.config_path is None else ROOT / args.config_path]
    if args.config_dir is not None:
        folders.append(Path(args.config_dir).absolute())
    return ConfigSource(tuple(folders), args.config_name or config_name)


# Hydra's modes, of which it takes one per command (its parser's names for them).
_HYDRA_MODES = {"run": "--run", "multirun": "-m", "cfg": "--cfg", "info": "--info", "shell_completion": "-sc"}


def refuse_two_hydra_modes(argv: list[str]) -> None:
    """-m --cfg job ended in Hydra's traceback ("Only one of --run, --multirun, --cfg, ...")."""
    args = hydra_arguments(argv)
    given = [flag for name, flag in _HYDRA_MODES.items() if args is not None and getattr(args, name, None)]
    if len(given) > 1:
        raise UserError(
            f"{' and '.join(given)}: Hydra takes one of {', '.join(_HYDRA_MODES.values())} at a time; "
            "to print one point's config, drop -m and give one value for each swept key"
        )


def refuse_missing_config_folder(argv: list[str], config_name: str) -> None:
    """An entry point with no configs/ beside it (copied out of the checkout): Hydra's error came
    only after every group option was refused as unknown, with an empty list of known ones."""
    folder = next(iter(config_source(argv, config_name).folders), None)
    if folder is None or folder.is_dir():
        return
    if folder == CONFIG_DIR:
        raise UserError(
            f"no config folder {folder}: the entry points compose their config from the configs/ beside "
            "them; run train.py, evaluate.py and finetune.py where they lie in a cnn-zoo checkout"
        )
    raise UserError(f"--config-path: no folder {folder} (a relative one is taken from {ROOT})")


def recorded_config_source(hydra: Any) -> ConfigSource | None:
    """The folders and config a run was composed from, from Hydra's settings for it (its record
    .hydra/hydra.yaml, or the job's own): None when they are unknown or a package's (pkg://)."""
    try:
        sources, name = hydra["runtime"]["config_sources"], hydra["job"]["config_name"]
        # The config folder (--config-path, else configs/), then --config-dir's; a package's is "pkg".
        main, added = (
            [Path(s["path"]) for s in sources if s["provider"] == provider and s["schema"] == "file"]
            for provider in ("main", "command-line")
        )
    except (KeyError, TypeError):
        return None
    if len(main) != 1 or not name:
        return None
    return ConfigSource((*main, *added), str(name))


def same_config_source(first: ConfigSource, second: ConfigSource) -> bool:
    # Resolved: a --config-dir given relative to another working folder names the same one.
    return first.name == second.name and [f.resolve() for f in first.folders] == [
        f.resolve() for f in second.folders
    ]


def config_flags(source: ConfigSource, task: str) -> list[str]:
    """The Hydra flags that compose `source` for the entry point `task`: none for its own config."""
    primary, *added = source.folders
    flags = [] if primary.resolve() == CONFIG_DIR.resolve() else ["--config-path", str(primary)]
    for folder in added:
        flags += ["--config-dir", str(folder)]
    return flags if source.name == task else [*flags, "--config-name", source.name]


def hydra_flags(argv: list[str]) -> list[str]:
    """The tokens of `argv` that are Hydra's flags and their values (-m, --config-dir DIR, --cfg job)."""
    args = hydra_arguments(argv)
    if args is None:
        return [token for token in argv if token.startswith("-") and "=" not in token]
    flags = list(argv)
    for token in args.overrides:
        flags.remove(token)
    return flags


def without_flags(argv: list[str] | tuple[str, ...], flags: list[str]) -> list[str]:
    """`argv` less the tokens of `flags` (hydra_flags of it)."""
    rest = list(argv)
    for token in flags:
        rest.remove(token)
    return rest


def overrides_before_flags(argv: list[str], flags: list[str]) -> list[str]:
    """`argv` with its overrides first: Hydra reads them as one unbroken list, and an override added
    after a flag with a value (--cfg job, -cd DIR) was refused with its usage text."""
    return [*without_flags(argv, flags), *flags]


def options(group: str, source: ConfigSource | None = None) -> list[str]:
    folders = source.folders if source is not None else (CONFIG_DIR,)
    return sorted({path.stem for folder in folders for path in (folder / group).glob("*.yaml")})


# For a --help template that lists a group's options itself (evaluate.py's, whose Hydra listing of
# every group holds model and optimizer, which it refuses): ${zoo.options:data}.
HELP_OPTIONS_RESOLVER = "zoo.options"


def help_options(group: str, _root_: Any) -> str:
    """The options of `group` in the folders the command composes from, from Hydra's settings for it
    (--config-dir's data=mine among them), as a --help template lists them; the project's configs/
    when those settings are unknown."""
    from omegaconf import OmegaConf

    hydra = OmegaConf.to_container(_root_.hydra, resolve=False) if "hydra" in _root_ else None
    return ", ".join(options(group, recorded_config_source(hydra)))


def given_overrides(argv: list[str]) -> dict[str, str]:
    return {key: value for key, sep, value in (token.partition("=") for token in argv) if sep}


def is_multirun(argv: list[str]) -> bool:
    return any(token in ("-m", "--multirun", "hydra.mode=MULTIRUN") for token in argv)


def _group_defaults(source: ConfigSource) -> dict[str, Any]:
    """The option each config group of an entry point's config takes when the command line names none."""
    found = [
        folder / f"{source.name}.yaml"
        for folder in source.folders
        if (folder / f"{source.name}.yaml").is_file()
    ]
    tree = (yaml.safe_load(found[0].read_text()) or {}) if found else {}
    return {k: v for entry in tree.get("defaults", []) if isinstance(entry, dict) for k, v in entry.items()}


def _no_option_named(group: str, value: str, source: ConfigSource) -> str:
    """`group=null` or `group=`: Hydra answers with a traceback (null) or a multi-line report (empty);
    say instead how to get what was most likely meant."""
    known = options(group, source)
    given = f"{group}={value}: a config group takes the name of one of its options"
    if "none" in known:
        return (
            f"{given}; {group}=none is the one without a {_NAMED_GROUPS[group]} (known: {', '.join(known)})"
        )
    if _group_defaults(source).get(group) is None:
        return f"{given}; null is its default already, so leave {group}= out (known: {', '.join(known)})"
    return f"{given} (known: {', '.join(known)})"


# Groups whose section the code reads only when present (cfg.get): removing them is allowed.
_REMOVABLE_GROUPS = ("logger",)


_NEEDS_FINETUNE_SECTION = (
    "{given}: finetune.py needs its finetune section; set its keys one by one instead "
    "(finetune.head=..., finetune.freeze_backbone=...; see configs/finetune.yaml)"
)


def _check_removable(group: str, source: ConfigSource) -> None:
    """`~group` deletes a config section; a section the entry point reads ended in OmegaConf's
    ConfigAttributeError traceback ('Key 'data' is not in struct')."""
    config_name = source.name
    if group == "finetune" and config_name == "finetune":
        raise UserError(_NEEDS_FINETUNE_SECTION.format(given="~finetune"))
    if group not in (*_NAMED_GROUPS, "paths") or group in _REMOVABLE_GROUPS:
        return
    if group in _NAMED_GROUPS and _group_defaults(source).get(group) is None:
        return  # off by default (experiment, debug, evaluate's data): removing it changes nothing
    known = options(group, source)
    instead = f"{group}=none turns it off" if "none" in known else f"choose another with {group}=NAME"
    raise UserError(
        f"~{group}: {config_name}.py needs its {group} section; {instead} (known: {', '.join(known)})"
    )


# Trainer arguments the entry points build from other settings, which replaced these silently.
_TRAINER_ARGUMENTS_SET_ELSEWHERE = {
    "default_root_dir": "a run writes everything into its run directory; name it with hydra.run.dir=DIR",
    "logger": "choose loggers with logger=NAME (tensorboard, csv, none; logger=[tensorboard,csv] for both)",
    "callbacks": "set callbacks in their own section (callbacks.NAME.KEY=..., callbacks.NAME=null drops one)",
}


# Relative paths on the command line (data.root, ckpt_path, resume) name folders beside where the
# command starts; from inside the run folder they named nothing, or another folder.
CHANGING_INTO_THE_RUN_FOLDER = (
    "hydra.job.chdir=true: cnn-zoo runs in the folder it is started from, reading relative paths "
    "from there and writing every file of a run into its run directory already; leave it out"
)


# The keys that name a checkpoint file on the command line (resume_ckpt is resume=, rewritten).
_CHECKPOINT_KEYS = ("ckpt_path", "resume_ckpt")


def check_overrides(argv: list[str], resume_key: str | None = None, config_name: str = "train") -> None:
    """Unknown or missing group options, and a new run into a finished or unfinished run's directory
    (anything but resuming it, through `resume_key`), fail here in one line, before Hydra writes there."""
    overrides = given_overrides(argv)
    resuming = resume_key is not None and overrides.get(resume_key, "null") not in ("", "null")
    source = config_source(argv, config_name)
    for token in argv:
        if token.startswith("~") and source.folders:
            _check_removable(token[1:].partition("=")[0], source)
    if config_name == "finetune" and overrides.get("finetune", overrides.get("+finetune")) in ("null", ""):
        raise UserError(_NEEDS_FINETUNE_SECTION.format(given=f"finetune={overrides.get('finetune', '')}"))
    if overrides.get("hydra.job.chdir", "false").lower() == "true":
        raise UserError(CHANGING_INTO_THE_RUN_FOLDER)
    for key, value in overrides.items():
        key = key.lstrip("+~")
        if config_name == "evaluate" and key.split(".")[0] == "model":
            # Hydra would suggest +model=..., which evaluate.py would then ignore.
            raise UserError(
                f"{key}=: evaluate.py takes the model (its architecture and settings) from the checkpoint; "
                "drop it, or fine-tune the checkpoint into another model with finetune.py"
            )
        section, _, argument = key.partition(".")
        if section == "trainer" and argument in _TRAINER_ARGUMENTS_SET_ELSEWHERE:
            instead = _TRAINER_ARGUMENTS_SET_ELSEWHERE[argument]
            raise UserError(f"{key}: not a trainer setting here; {instead}")
        if key in _NAMED_GROUPS and source.folders:
            if "(" in value:  # a sweep function, choice(a,b) or glob(res*): Hydra expands and checks it
                continue
            known = options(key, source)
            # A -m sweep lists several (logger=csv,none); so does a list of options taken together
            # (logger=[tensorboard,csv]).
            listed = value[1:-1] if value.startswith("[") and value.endswith("]") else value
            for choice in (c.strip() for c in listed.split(",")):
                if choice in ("null", ""):
                    raise UserError(_no_option_named(key, choice, source))
                if choice not in known:
                    raise UserError(f"unknown {_NAMED_GROUPS[key]} {choice!r}; known: {', '.join(known)}")
        if key in _CHECKPOINT_KEYS and value not in ("", "null") and not any(c in value for c in ",($"):
            check_weights_path(unquoted(value))  # before Hydra makes a run folder for the refusal
        if key in _RUN_DIR_KEYS:
            folder = Path(unquoted(value))
            refuse_unwritable_dir(key, folder)
            if key == "hydra.sweep.dir":
                refuse_reused_sweep_dir(folder)
            else:
                refuse_reused_run_dir(folder, resuming, key=key, can_resume=resume_key is not None)


def run_dir_of_output_dir(argv: list[str]) -> list[str]:
    """paths.output_dir follows hydra.run.dir in the configs. Set alone on the command line, it took
    the checkpoints, while train.log and the .hydra record went to a new time-stamped folder: it now
    names the run's one folder."""
    given = given_overrides(argv)
    output_dir, run_dir = given.get("paths.output_dir"), given.get("hydra.run.dir")
    if output_dir is None or is_multirun(argv):
        return argv
    if run_dir is None:
        return [*argv, f"hydra.run.dir={output_dir}"]
    if run_dir != output_dir:
        raise UserError(
            f"hydra.run.dir={run_dir} and paths.output_dir={output_dir} name two folders for one run; "
            "give one of them"
        )
    return argv


def no_such_key(section: str, key: str, keys: list[str]) -> str:
    """A key `section` lacks, with the nearest of its `keys`, in describe_override_error's words."""
    near = [f"{section}.{name}" for name in difflib.get_close_matches(key, keys, n=2)]
    hint = f"did you mean {' or '.join(near)}?" if near else f"its keys: {', '.join(keys)}"
    return f"{section} has no key {key!r}; {hint}"


def data_module_arguments() -> list[str]:
    """Every argument a data module of configs/data/ takes: each config sets all of its class's
    (a test holds them to it), read without importing the classes (torch, seconds)."""
    names = set()
    for path in (CONFIG_DIR / "data").glob("*.yaml"):
        names |= set(yaml.safe_load(path.read_text()) or {}) - {"_target_"}
    return sorted(names)


def _refuse_unknown_data_keys(argv: list[str]) -> None:
    """evaluate.py without data=NAME lays data.KEY=... over the checkpoint's data, whose module is
    known only once torch has read the file; a key no data module takes is refused here at once
    (evaluation.data_config checks the rest against the checkpoint's module)."""
    known = data_module_arguments()
    for key in given_overrides(argv):
        section, _, name = key.lstrip("+~").partition(".")
        name = name.partition(".")[0]
        if section == "data" and name and name not in known:
            if difflib.get_close_matches(name, known, n=1):
                raise UserError(no_such_key("data", name, known))
            raise UserError(f"data has no key {name!r}; no data set takes it (configs/data/ has each one's)")


def data_settings_over_the_checkpoints(argv: list[str], config_name: str) -> list[str]:
    """evaluate.py without data=NAME reads the checkpoint's data, so its config has no data section
    for data.root=DIR (the fix the data modules' messages give) to set a key of: Hydra refused it and
    asked for +data.root=DIR. Such a key is added, and laid over the checkpoint's data."""
    if config_name != "evaluate" or "data" in {key.lstrip("+~") for key in given_overrides(argv)}:
        return argv
    _refuse_unknown_data_keys(argv)
    return [f"++{token}" if token.startswith("data.") and "=" in token else token for token in argv]


def job_overrides(argv: list[str]) -> list[str]:
    """The overrides that compose the job's config: Hydra's own settings (run and sweep folders,
    launcher) and flags (-m) are not part of it."""
    args = hydra_arguments(argv)
    overrides = argv if args is None else args.overrides
    return [
        t for t in overrides if not t.startswith("-") and not t.lstrip("+~").startswith(("hydra.", "hydra/"))
    ]


def data_overrides(argv: list[str]) -> list[str]:
    """The overrides among `argv` that choose or place a run's data (the last of each key), for a
    command that trains on from its weights."""
    latest: dict[str, str] = {}
    for token in argv:
        key = token.partition("=")[0].lstrip("+~")
        if key == "data" or key.startswith("data.") or key == "paths.data_dir":
            latest.pop(key, None)
            latest[key] = token
    return list(latest.values())


def train_on_overrides(argv: list[str], source: ConfigSource | None, task: str) -> list[str]:
    """What a fine-tune that trains on from the weights of a `task` run needs of its command `argv`:
    the flags of the folders its config came from (`source`), where data=mine of a --config-dir folder
    is found, and its data_overrides. A fine-tune's own config comes too (a copy of train.yaml is not
    one)."""
    if source is None or not source.folders:
        return data_overrides(argv)
    name = source.name if task == "finetune" else "finetune"
    return [*config_flags(ConfigSource(source.folders, name), "finetune"), *data_overrides(argv)]


def the_jobs_hydra_settings() -> dict | None:
    """Hydra's settings of the job under way, as its record keeps them; None outside one."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    return OmegaConf.to_container(HydraConfig.get(), resolve=False) if HydraConfig.initialized() else None


def the_jobs_train_on_overrides() -> list[str]:
    """train_on_overrides of the Hydra job under way; none outside one."""
    hydra = the_jobs_hydra_settings()
    if hydra is None:
        return []
    task = entry_point(hydra) or "train"
    return train_on_overrides(list(hydra["overrides"]["task"]), recorded_config_source(hydra), task)


def sweep_points(argv: list[str]) -> tuple[list[list[str]], set[str]] | None:
    """The job overrides of each point of a -m sweep (one point when nothing is swept) and the keys
    it sweeps; None for a sweep Hydra expands only once it runs (glob() of a group's options)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # Hydra's default sweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(job_overrides(argv))
        swept = {override.get_key_element() for override in parsed if override.is_sweep_override()}
        batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    except OverrideParseException as error:
        raise UserError(describe_override_error(error)) from None
    except HydraException:
        sampled = [o.input_line for o in parsed if o.is_sweep_override() and o.is_interval_sweep()]
        if sampled:  # Hydra's basic sweeper raises it as a traceback once the sweep starts
            raise UserError(
                f"{sampled[0]}: Hydra's basic sweeper takes lists, range() and choice(), not interval(), "
                "which needs a sampling sweeper (e.g. hydra-optuna-sweeper); list the values instead"
            ) from None
        return None
    return [list(point) for batch in batches for point in batch], swept


def runs_of(argv: list[str]) -> tuple[list[list[str]], set[str]]:
    """The runs a command makes and the keys it sweeps: each point of a -m sweep, or the command
    itself when nothing is swept; none for a sweep Hydra expands only as it runs (left to the jobs)."""
    expanded = sweep_points(argv) if is_multirun(argv) else ([argv], set())
    return expanded or ([], set())


@contextlib.contextmanager
def naming_the_sweep_point(number: int, points: list[list[str]], swept: set[str]) -> Iterator[None]:
    """A refusal of one point of a sweep, named by its number and its values of the swept keys; a
    command that sweeps nothing is refused as it is."""
    try:
        yield
    except UserError as error:
        if not swept:
            raise
        shown = " ".join(o for o in points[number] if o.partition("=")[0] in swept)
        raise UserError(f"sweep point #{number} ({shown}) of {len(points)}: {error}") from None


@contextlib.contextmanager
def composing_from(source: ConfigSource) -> Iterator[None]:
    """Hydra's compose API set up as the command sets Hydra up: its config folder, then the folder
    --config-dir adds, where Hydra puts it (before the structured configs)."""
    from hydra import initialize_config_dir
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra

    primary, *added = source.folders
    with initialize_config_dir(config_dir=str(primary), version_base="1.3"):
        if added:
            search_path = create_config_search_path(str(primary))
            for folder in added:
                search_path.prepend("command-line", f"file://{folder}", SearchPathQuery(provider="schema"))
            GlobalHydra.instance().clear()
            Hydra.create_main_hydra2(task_name="app", config_search_path=search_path)
        yield


def check_sweep_points(argv: list[str], config_name: str) -> None:
    """Every point of a -m sweep, composed and checked against the config rules before the first
    one trains: a bad value in the last point was found only once the points before it had run."""
    from hydra import compose
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from .validation import validate_config

    expanded = sweep_points(argv)
    if expanded is None or not expanded[1]:
        return
    points, swept = expanded
    subdir = given_overrides(argv).get("hydra.sweep.subdir")
    if subdir is not None and "${" not in subdir and len(points) > 1:
        raise UserError(
            f"hydra.sweep.subdir={subdir} puts all {len(points)} points of the sweep in one folder; "
            "name each its own, e.g. hydra.sweep.subdir=${hydra.job.num} (the default)"
        )
    output_dir = given_overrides(argv).get("paths.output_dir")
    if output_dir is not None and len(points) > 1:
        # It follows each point's folder in the configs; set, it took every point's checkpoints.
        raise UserError(
            f"paths.output_dir={output_dir} puts the checkpoints of all {len(points)} points of the "
            f"sweep in one folder; name the sweep's folder instead, "
            f"{typed_override('hydra.sweep.dir', unquoted(output_dir))} "
            "(each point gets a folder in it)"
        )
    checks = [validate_config]
    if config_name == "finetune":
        # Its options and source, which the job checks only once its turn comes (model=a,b from
        # one checkpoint: the point whose model is not the checkpoint's).
        from .finetune_request import check_finetune_request

        checks.append(check_finetune_request)
    source = config_source(argv, config_name)
    if not source.folders:
        return  # composed by Hydra alone, from a package's folder
    with composing_from(source):
        for number, point in enumerate(points):
            try:
                cfg = compose(config_name=source.name, overrides=point)
            except (ConfigCompositionException, OverrideParseException) as error:
                raise UserError(describe_override_error(error)) from None
            with naming_the_sweep_point(number, points, swept):
                for check in checks:
                    check(cfg)


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
    several = re.match(r"Ambiguous value for argument '([^=']+)=([^']*)'", str(error))
    if several:  # Hydra's own report spans four lines, its quotes escaped with backslashes
        key, values = several.groups()
        return (
            f"{key}={values} gives several values: add -m to sweep over them, write {key}=[{values}] "
            f"for a list, or \"{key}='{values}'\" for one string"
        )
    taken = re.match(
        r"Multiple values for ([\w/.]+)\. To override a value use 'override \1: (.*)'$", str(error)
    )
    if taken:  # Hydra's advice is the syntax of a defaults list, not of a command line
        group, option = taken.groups()
        return (
            f"+{group}={option} adds the group {group}, which the config already has: write {group}={option}"
        )
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
    added = f"{addition} adds it as a new key"
    return f"{where} no key {key!r}; {hint}({added})" if hint else f"{where} no key {key!r}; {added}"
