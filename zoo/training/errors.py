"""User errors end a command with one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with what the user asked for; the message names the problem and the fix."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except UserError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
