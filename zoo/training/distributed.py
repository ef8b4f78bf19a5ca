"""Hydra and Lightning's DDP together, without the trap of one output folder per process.

Lightning starts ranks 1..N-1 by running the script again. Its Hydra support re-sends the parent's
whole command line and the run-directory *pattern*: under `-m` every child then starts a sweep of
its own, and each writes into a folder of its own. Here each child gets exactly the overrides of
the job it belongs to and that job's resolved output folder, so all ranks share one run directory
and a sweep of N points makes N run directories.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence


def _child_command(local_rank: int) -> tuple[Sequence[str], str]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hydra = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += list(hydra.overrides.task)
    command += [
        f'hydra.run.dir="{hydra.runtime.output_dir}"',
        f"hydra.job.name={hydra.job.name}_rank{local_rank}",
        # Only rank 0 records the composed config.
        "hydra.output_subdir=null",
    ]
    return command, get_original_cwd()


def use_job_scoped_child_commands() -> None:
    from pytorch_lightning.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = _child_command


@contextlib.contextmanager
def isolated_job() -> Iterator[None]:
    """Undo what one DDP job leaves in its launching process, so the next job of a `-m` sweep starts
    its own processes. Lightning's launcher sets LOCAL_RANK, WORLD_SIZE, MASTER_PORT, ... in the
    parent's environment; left there, the next job believes an outside launcher (torchrun) made its
    processes and waits on peers that have exited. Variables present before the job (set by torchrun
    or SLURM) are kept as they were."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        # Not imported for nothing: a job refused before it loaded torch made no process group.
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(saved)


def keep_collectives_out_of_the_sigterm_handler(trainer) -> None:
    """Lightning 2.6's SIGTERM handler broadcasts a tensor from inside the signal handler (Lightning
    issue #20806). Only the process that got the signal runs it, between or inside the collectives
    of a step, so the processes' collectives no longer pair up: they hang in a wait, or gloo fails on
    a size mismatch, instead of saving and exiting. The handler only notes the signal; under several
    processes they act on it together, at the start of a training step (_stop_together_on_sigterm)."""
    connector = trainer._signal_connector  # Lightning has no public hook for its SIGTERM handling
    noted = {"sigterm": False}

    def note_sigterm(signum, frame) -> None:
        if not connector.received_sigterm and not noted["sigterm"]:
            launcher = trainer.strategy.launcher
            if launcher is not None:
                launcher.kill(signum)  # the processes it started stop at the same step
        if trainer.world_size > 1:
            noted["sigterm"] = True
        else:
            connector.received_sigterm = True

    connector._sigterm_notifier_fn = note_sigterm
    trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor = lambda: _stop_together_on_sigterm(trainer, noted)


def _stop_together_on_sigterm(trainer, noted: dict[str, bool]) -> None:
    """At the start of every training step under several processes, in place of Lightning's
    broadcast of rank 0's flag: every process stops there when any of them got SIGTERM. Lightning
    also reads its flag in each process alone (at a step's end, an epoch's end, between validation
    batches), which the processes pass at different moments: set by the handler, the flag stopped
    one process to save its checkpoint, whose collectives met another's wait for the next step, and
    the run hung. So it is set here only, in every process at once."""
    import torch
    import torch.distributed as dist
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    flag = torch.tensor([int(noted["sigterm"])], device=trainer.strategy.root_device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item():
        trainer._signal_connector.received_sigterm = True
        raise SIGTERMException()


# What gloo raises in a process whose peer closed its connections in the middle of a collective
# (it stopped on an error), or vanished (killed).
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer")


@contextlib.contextmanager
def ended_by_a_failed_process(trainer) -> Iterator[None]:
    """A process that stops on an error of its own (a UserError's one line: an image in its share of
    the data that cannot be decoded) closes its connections, and the others failed in their next
    collective with gloo's 'Connection closed by peer', a traceback of some 140 lines after the line
    that said why; the command's status was that traceback's 1, whatever the error. The others end
    quietly instead: the failed process has said why. The one that started the others (Lightning's
    launcher, rank 0 of its machine) ends with the failed one's status."""
    try:
        yield
    except RuntimeError as error:
        if trainer.world_size <= 1 or not any(gone in str(error) for gone in _PEER_GONE):
            raise
        status = _status_of_a_failed_child(trainer)
        if status > 128:  # killed by a signal, it could say nothing itself
            print(
                f"error: a process of this run was killed by signal {status - 128} (the kernel's "
                "out-of-memory killer sends 9); the others stopped with it",
                file=sys.stderr,
            )
        sys.exit(status)


def _status_of_a_failed_child(trainer) -> int:
    for process in getattr(trainer.strategy.launcher, "procs", []):
        try:
            # The failed process is on its way out (its interpreter's shutdown may take seconds).
            status = process.wait(timeout=_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()  # left, it would outlive the command
            continue
        if status:
            return status if status > 0 else 128 - status  # killed by a signal: the shell's status
    return 1


_EXIT_WAIT_S = 30
