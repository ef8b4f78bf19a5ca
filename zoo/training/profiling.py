"""The profiler a run gets when it asks for none."""

from __future__ import annotations

import contextlib

from pytorch_lightning.profilers import PassThroughProfiler


class NoProfiler(PassThroughProfiler):
    """Lightning's pass-through profiler without its per-call cost.

    Lightning wraps every hook call, some fifty a training step, in `profiler.profile(name)`. The
    default profiler builds a generator-based context manager each time to do nothing, about 3 us
    of Python per call on a slow CPU; here every call shares one nullcontext. `trainer.profiler=simple`
    (or advanced, pytorch) still selects Lightning's real profilers."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return self._nothing
