"""What every benchmark here shares: alternating contenders, device syncs, medians, quiet runs, tables.

Each comparison runs its contenders in the same process, in rounds whose order flips every round
(A B, B A, A B, ...): a machine that speeds up or slows down during the run (thermal limits, other
jobs) then weighs on both sides alike, and the median over rounds keeps one disturbed round from
deciding the result.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch

ROOT = Path(__file__).resolve().parents[1]
# The suite runs from a plain checkout too (a lent GPU machine), where the package is not installed.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

T = TypeVar("T")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a clock read after it includes that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(contenders: dict[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Run every contender once per round, reversing the order every other round."""
    results: dict[str, list[T]] = {name: [] for name in contenders}
    names = list(contenders)
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            results[name].append(contenders[name]())
    return results


def positive_int(text: str) -> int:
    """An argparse type: a count of rounds or epochs, which must be at least 1."""
    try:
        value = int(text)
    except ValueError:  # argparse's own message, "invalid positive_int value", names no rule
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer, 1 or more, got {text!r}")
    return value


class OneLineErrors(argparse.ArgumentParser):
    """A wrong command line is one `error:` line and exit status 2, as train.py's and `python -m zoo`'s
    are, not argparse's usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}; see {self.prog} --help\n")


def cannot_write(path: Path) -> str | None:
    """Why the figures could not be written to `path`, or None. Asked before the benchmarks run: the
    first write comes after minutes of them, and failed there with a traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with path.open("a"):
            pass
        if not existed:
            path.unlink()
    except FileExistsError as error:  # mkdir met a file where a folder of the path should be
        return f"cannot write {path} ({error.filename} is a file, not a folder)"
    except OSError as error:
        return f"cannot write {path} ({error.strerror or error})"
    return None


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median of the per-round ratios numerator / denominator. The two runs of a round are
    neighbours in time, so a slow spell of the machine weighs on both: steadier than the ratio of
    the two medians."""
    return median([a / b for a, b in zip(numerators, denominators, strict=True)])


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hide what Lightning and the callbacks print during a timed fit (banners, epoch lines, tips);
    the table is the benchmark's output. Printing costs the same as it would in a real run."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch", "lightning")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def without_lightning_env() -> Iterator[None]:
    """The process environment of a script that never imported Lightning. Importing it sets
    PYTORCH_NVML_BASED_CUDA_CHECK=1, which on a machine without a GPU makes every Adam step probe for
    the NVML library; a hand-written loop in its own process would not pay that."""
    saved = os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = saved


def machine() -> dict[str, Any]:
    """Where the figures come from, stored beside them in the JSON."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A plain-text table of `rows`; `columns` are (key, heading) pairs; floats get 3 significant figures."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"
        return str(value)

    grid = [[heading for _, heading in columns]] + [
        [cell(row.get(key)) for key, _ in columns] for row in rows
    ]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in grid
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
