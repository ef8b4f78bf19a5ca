"""User errors end a command with one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from .runlog import say

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with what the user asked for; the message names the problem and the fix."""


def _user_error_behind(error: BaseException) -> UserError | None:
    """The UserError an exception is, or the one Hydra's instantiate wrapped (a data module or
    callback refusing its arguments is the user's error, not Hydra's), or a ${...} in the config
    that does not resolve (optimizer.lr=${oops}, an unset ${oc.env:...})."""
    if isinstance(error, UserError):
        return error
    from hydra.errors import InstantiationException
    from omegaconf.errors import InterpolationResolutionError

    if isinstance(error, InstantiationException) and isinstance(error.__cause__, UserError):
        return error.__cause__
    if isinstance(error, InterpolationResolutionError):
        reason = str(error).strip().splitlines()[0]
        return UserError(f"cannot resolve {error.full_key}: {reason}; fix the ${{...}} it holds or names")
    return None


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
