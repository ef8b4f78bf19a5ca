"""Overrides written for the user: rewritten into the command line for Hydra, or printed as the
command to go on with. A path with a comma, a space or a quote in it is quoted so that Hydra, and
the shell for a printed one, read it as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

# What Hydra's grammar reads unquoted in a value (a comma would make a list, é stops it).
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_/.\-+%*@?:| ]+")


def unquoted(value: str) -> str:
    """A value as Hydra reads it: without the matching pair of quotes around it, if it has one."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def override(key: str, value: str | Path, quotes: str = "'\"") -> str:
    """key=value as one argument to Hydra, the value quoted where Hydra would not read it as written:
    in the first of the two `quotes` it does not hold (in the second, escaped, if it holds both)."""
    value = str(value)
    if _PLAIN_VALUE.fullmatch(value) and value == value.strip():
        return f"{key}={value}"
    quote = quotes[0] if quotes[0] not in value else quotes[1]
    # Inside quotes Hydra reads \' (or \") as the quote, and \\ as one backslash only before a quote
    # or the end; elsewhere a backslash is itself.
    escaped = re.sub(rf"(\\*)({quote}|$)", lambda m: m[1] * 2 + ("\\" if m[2] else "") + m[2], value)
    return f"{key}={quote}{escaped}{quote}"


def typed_override(key: str, value: str | Path) -> str:
    """key=value as typed at a shell prompt, for a command a message suggests."""
    # Hydra's double quotes first: inside the shell's single ones they read as written, where its
    # single quotes would each be closed, escaped and reopened ('ckpt_path='"'"'a,b'"'"'').
    return shlex.quote(override(key, value, quotes="\"'"))


def train_on_command(checkpoint: str | Path, data: list[str] | tuple[str, ...] | None = None) -> str:
    """The command that trains on from a checkpoint's weights in a run of its own, with a fresh
    optimizer and schedule: its trained head kept (finetune.head=replace would start it afresh), on
    the run's `data` overrides as Hydra takes them (without them finetune.py trains on its default
    data set), after the Hydra flags among them that name its config folders
    (overrides.train_on_overrides); None: those of the Hydra job under way."""
    from .overrides import hydra_flags, the_jobs_train_on_overrides, without_flags

    if data is None:
        data = the_jobs_train_on_overrides()
    flags = hydra_flags(list(data))
    overrides = without_flags(data, flags)
    source = typed_override("ckpt_path", checkpoint)
    words = ["python finetune.py", *map(shlex.quote, flags), source, *map(shlex.quote, overrides)]
    return " ".join([*words, "finetune.head=extend"])
