"""The entry points' wrapping: checks and rewrites of the command line before Hydra runs, and
Hydra's run with its reports of a bad override in one line."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from .errors import EXIT_USER_ERROR, UserError, unresolvable, user_errors
from .overrides import (
    HELP_OPTIONS_RESOLVER,
    check_overrides,
    check_sweep_points,
    data_settings_over_the_checkpoints,
    describe_override_error,
    help_options,
    hydra_flags,
    is_multirun,
    overrides_before_flags,
    refuse_missing_config_folder,
    refuse_two_hydra_modes,
    run_dir_of_output_dir,
)
from .resume import refuse_a_changed_continuation, resolve_resume


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
    """Lines a user can do nothing about: Lightning 2.6's tip to install its cloud logger, the
    FutureWarning Lightning's own code triggers in torch 2.14 (its batch flattening still builds
    torch's deprecated LeafSpec), and two that debug=overfit (or any short epoch) set off: training
    figures are logged once per epoch, whatever log_every_n_steps, and the in-memory data turns its
    own shuffling off for overfit_batches (a validation split was never shuffled)."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_WithoutAdvertising())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval")
    warnings.filterwarnings("ignore", message=r"You requested to overfit but enabled")
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


@contextlib.contextmanager
def ctrl_c_ends_the_imports() -> Iterator[None]:
    """Ctrl-C while the job imports torch and Lightning (seconds) ends the process there. Raised as a
    KeyboardInterrupt, a library could catch it halfway through an import, and the half-imported
    module then failed with an unrelated traceback (numpy's RecursionError, about one try in four).
    Nothing of the run exists yet to be saved or closed."""

    def leave(signum, frame) -> None:
        print("interrupted", file=sys.stderr, flush=True)
        os._exit(128 + signal.SIGINT)

    previous = signal.signal(signal.SIGINT, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def precheck(config_name: str, resume_key: str | None = None) -> None:
    """Run before Hydra: fail fast on typos; with `resume_key`, rewrite resume requests in sys.argv."""
    _exit_quietly_on_ctrl_c()
    quiet_library_notices()
    OmegaConf.register_new_resolver(HELP_OPTIONS_RESOLVER, help_options, replace=True)
    with user_errors():
        refuse_missing_config_folder(sys.argv[1:], config_name)
        refuse_two_hydra_modes(sys.argv[1:])
        flags = hydra_flags(sys.argv[1:])
        if resume_key is not None:
            sys.argv[1:] = resolve_resume(sys.argv[1:], resume_key, task=config_name)
        sys.argv[1:] = data_settings_over_the_checkpoints(sys.argv[1:], config_name)
        check_overrides(sys.argv[1:], resume_key, config_name)
        sys.argv[1:] = run_dir_of_output_dir(sys.argv[1:])
        if is_multirun(sys.argv[1:]):
            check_sweep_points(sys.argv[1:], config_name)
        if resume_key is not None:
            refuse_a_changed_continuation(sys.argv[1:], resume_key, config_name)
        sys.argv[1:] = external_launch_overrides(sys.argv[1:], dict(os.environ), task=config_name)
        sys.argv[1:] = overrides_before_flags(sys.argv[1:], flags)


def run_hydra_main(main: Callable[[], Any]) -> None:
    """Run a @hydra.main entry point with Hydra's report of a bad override (a key the config lacks,
    an override it cannot parse) given as one error line. HYDRA_FULL_ERROR=1 makes Hydra raise
    instead of printing that report; a user who set it already gets the full traceback."""
    from hydra.errors import ConfigCompositionException, OverrideParseException
    from omegaconf.errors import InterpolationResolutionError

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
    except InterpolationResolutionError as error:
        # A ${...} in hydra.run.dir or hydra.sweep.dir that names no key fails as Hydra makes the
        # run's folder, outside the job and its user_errors. Printed here: Hydra's console logging is
        # set up by then, and would repeat a line logged through say().
        if user_wants_traceback:
            raise
        print(f"error: {unresolvable(error)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
