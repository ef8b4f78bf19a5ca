"""What a download (a data set, torchvision's weights) may wait on a stalled connection."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

# Without a limit, a machine whose network drops packets instead of refusing them waits for the OS's
# TCP timeout, minutes on some networks. The limit is per socket operation (connect, one read), not
# per download: a slow download that keeps moving still finishes.
STALL_TIMEOUT_S = 20.0


@contextlib.contextmanager
def stall_timeout(seconds: float = STALL_TIMEOUT_S) -> Iterator[None]:
    """Give up on any socket that waits `seconds` for data (torchvision and torch.hub open theirs
    with the process-wide default)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
