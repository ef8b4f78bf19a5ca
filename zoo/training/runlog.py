"""The run's log file (RUN/<script>.log, Hydra's job log) holds what the console showed.

The console is written by print and by Lightning's own stream handler, which does not pass records
on to the root logger; Hydra's job logging is set (configs: hydra.job_logging) to send the root
logger to the file only. So each line is printed for the console and logged for the file, and
Lightning's loggers get the file's handler for the length of a job."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

_LOG = logging.getLogger("zoo")
_LIBRARY_LOGGERS = ("pytorch_lightning", "lightning_fabric")


def say(line: str, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """A line for the person watching: on the console, and in the run's log file when there is one
    (before Hydra starts there is none, and logging's last-resort handler would print it again)."""
    print(line, file=stream or sys.stdout, flush=True)
    record(line, level)


def record(line: str, level: int = logging.INFO) -> None:
    """A line for the run's log file alone (what a terminal's progress bar shows and then redraws)."""
    if _LOG.hasHandlers():
        _LOG.log(level, line)


@contextlib.contextmanager
def library_logs_in_run_file() -> Iterator[None]:
    """Lightning's messages (devices, restored checkpoints) in the job's log file too; taken off
    again after the job, so a sweep's next job does not write into this one's file."""
    files = [handler for handler in logging.getLogger().handlers if isinstance(handler, logging.FileHandler)]
    loggers = [logging.getLogger(name) for name in _LIBRARY_LOGGERS]
    _on_the_console_as_lightning_sets_itself(loggers)
    for logger in loggers:
        for handler in files:
            logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            for handler in files:
                logger.removeHandler(handler)


def _on_the_console_as_lightning_sets_itself(loggers: list[logging.Logger]) -> None:
    """Lightning gives its loggers a console handler of their own only when it is imported before any
    logging is set up. The entry points import it inside the Hydra job, where the root logger already
    has the job's file handler: it would add none, so its lines (devices, restored checkpoints, a
    graceful stop on Ctrl-C) would leave the console and reach the file twice, once through the root
    logger and once through the handler library_logs_in_run_file adds."""
    if not logging.getLogger().hasHandlers():
        return  # Lightning, imported now, adds its own handler
    for logger in loggers:
        if any(type(handler) is logging.StreamHandler for handler in logger.handlers):
            continue  # imported before the job (resume= reads the checkpoint first), or an earlier job
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.StreamHandler())
        logger.propagate = False
