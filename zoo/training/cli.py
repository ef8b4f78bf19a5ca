"""Checks on the command line made before Hydra runs, where Hydra itself would answer with a
multi-line report or write into a folder it should not touch."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import UserError, user_errors

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
# Groups a user picks by name on the command line, with the word used in the error line.
_NAMED_GROUPS = {
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


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def check_overrides(argv: list[str]) -> None:
    """Unknown group options and runs into a finished run directory fail here, in one line."""
    for token in argv:
        key, sep, value = token.partition("=")
        if not sep:
            continue
        key = key.lstrip("+~")
        if key in _NAMED_GROUPS and value not in ("null", ""):
            known = options(key)
            for choice in value.split(","):  # a -m sweep lists several
                if choice not in known:
                    raise UserError(f"unknown {_NAMED_GROUPS[key]} {choice!r}; known: {', '.join(known)}")
        if key == "hydra.run.dir" and (Path(value) / "metrics.json").exists():
            raise UserError(
                f"run directory {value} already holds a finished run (metrics.json); "
                "choose another hydra.run.dir or resume with ckpt_path=..."
            )


def precheck() -> None:
    with user_errors():
        check_overrides(sys.argv[1:])
