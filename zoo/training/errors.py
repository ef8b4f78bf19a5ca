"""User errors end a command with one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
from collections.abc import Iterator

from .runlog import say

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with what the user asked for; the message names the problem and the fix."""


def in_one_line(error: BaseException) -> str:
    """An exception's message for a one-line error: torch's, PIL's and Lightning's run over lines."""
    return " ".join(str(error).split()) or type(error).__name__


def _user_error_behind(error: BaseException) -> UserError | None:
    """The UserError an exception is, or the one Hydra's instantiate wrapped (a data module or
    callback refusing its arguments is the user's error, not Hydra's), or a ${...} in the config
    that does not resolve (optimizer.lr=${oops}, an unset ${oc.env:...})."""
    if isinstance(error, UserError):
        return _unwrapped(error)
    from hydra.errors import InstantiationException
    from omegaconf.errors import InterpolationResolutionError

    if isinstance(error, InstantiationException) and isinstance(error.__cause__, UserError):
        return error.__cause__
    if isinstance(error, InterpolationResolutionError):
        return unresolvable(error)
    if isinstance(error, OSError) and error.errno in _FILE_SYSTEM_REFUSALS:
        return _file_system_refusal(error)
    return None


def unresolvable(error: Exception) -> UserError:
    """A ${...} that does not resolve (OmegaConf's InterpolationResolutionError), in one line."""
    reason = str(error).strip().splitlines()[0]
    key = getattr(error, "full_key", None) or "a setting"
    return UserError(f"cannot resolve {key}: {reason}; fix the ${{...}} it holds or names")


def _unwrapped(error: UserError) -> UserError:
    """A UserError raised in a DataLoader worker reaches the main process with the worker's
    traceback in its message (torch's ExceptionWrapper); its last line is the user's."""
    message = str(error).rstrip()
    if "\nOriginal Traceback" not in message:
        return error
    last = message.splitlines()[-1]
    return UserError(last.split(f"{UserError.__name__}: ", 1)[-1])


# What the file system, not the program, refused: a folder the user cannot write (or read), a full
# disk, a read-only mount. The run's files are written through temporary names, so its earlier
# checkpoints are still whole.
_FILE_SYSTEM_REFUSALS = {
    errno.EACCES: "give this user access to it, or use another folder",
    errno.EPERM: "give this user access to it, or use another folder",
    errno.EROFS: "the file system is read-only; use another folder",
    errno.ENOSPC: "free some space, or use another folder",
    errno.EDQUOT: "free some space under your quota, or use another folder",
    # A file system's largest file (FAT32's 4 GiB), or the shell's limit (ulimit -f).
    errno.EFBIG: "raise the file size limit (ulimit -f), or use a folder on another file system",
}


def _file_system_refusal(error: OSError) -> UserError:
    where = f": {error.filename}" if error.filename else ""
    reason = error.strerror or errno.errorcode.get(error.errno or 0, "refused")
    folders = "(hydra.run.dir=DIR for the run, data.root=DIR for the data)"
    return UserError(f"{reason}{where}; {_FILE_SYSTEM_REFUSALS[error.errno]} {folders}")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        reason = _user_error_behind(error)
        if reason is None:
            raise
        say(f"error: {reason}", stream=sys.stderr, level=logging.ERROR)
        sys.exit(EXIT_USER_ERROR)
