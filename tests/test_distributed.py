"""DDP through Hydra: two gloo processes on the CPU share one run directory and the work."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from .conftest import ROOT, run_script

TRAIN_SAMPLES = 1257  # the digits training split
EPOCHS = 2


# Two gloo processes over a small synthetic set: 4 steps of 8 images a process in an epoch.
SMALL_TWO_PROCESS_RUN = (
    "trainer=ddp_cpu",
    "trainer.devices=2",
    "data=synthetic",
    "data.num_samples=64",
    "data.batch_size=8",
)


def _global_step(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)[
        "global_step"
    ]


def _stray_runs() -> set[Path]:
    return set((ROOT / "runs").glob("*/*")) if (ROOT / "runs").exists() else set()


@pytest.mark.slow
def test_two_processes_share_one_run_directory_and_match_one_process(
    tmp_path: Path, trained_run: Path
) -> None:
    before = _stray_runs()
    common = (f"trainer.max_epochs={EPOCHS}", "trainer.deterministic=true")
    # Same global batch of 64: 2 processes x 32 against 1 process x 64.
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    run_script(
        "train.py",
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "data.batch_size=32",
        *common,
        f"hydra.run.dir={ddp_dir}",
    )
    run_script("train.py", "data.batch_size=64", "logger=none", *common, f"hydra.run.dir={single_dir}")

    assert sorted(p.name for p in (ddp_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list(ddp_dir.rglob("metrics.json"))) == 1
    assert len({p.parent for p in ddp_dir.rglob("events.out.tfevents.*")}) == 1
    # Each process saw half of the data: half the steps a single process with its batch would take.
    assert _global_step(ddp_dir) == EPOCHS * math.ceil(math.ceil(TRAIN_SAMPLES / 2) / 32)
    ddp_acc = json.loads((ddp_dir / "metrics.json").read_text())["test/acc"]
    single_acc = json.loads((single_dir / "metrics.json").read_text())["test/acc"]
    assert abs(ddp_acc - single_acc) < 0.1, (ddp_acc, single_acc)
    assert _stray_runs() == before

    # A DDP checkpoint is an ordinary checkpoint for evaluation and fine-tuning.
    best = ddp_dir / "checkpoints" / "best.ckpt"
    eval_dir, finetune_dir = tmp_path / "eval", tmp_path / "finetune"
    run_script("evaluate.py", f"ckpt_path={best}", f"hydra.run.dir={eval_dir}")
    assert abs(json.loads((eval_dir / "metrics.json").read_text())["test/acc"] - ddp_acc) < 0.02
    run_script(
        "finetune.py",
        f"ckpt_path={best}",
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.run.dir={finetune_dir}",
    )
    assert json.loads((finetune_dir / "metrics.json").read_text())["test/acc"] > 0.5


class _RankTally(pl.Callback):
    """Writes the training loss and accuracy of each process's own batches, worked out step by step
    apart from the module's tally, to rank<N>.json in `folder`."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.loss_sum, self.correct, self.seen = 0.0, 0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # The weights the step's forward sees: the optimizer steps after it.
        images, targets = batch
        with torch.no_grad():
            self.correct += int((pl_module(images).argmax(dim=1) == targets).sum())
        self.seen += len(targets)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.loss_sum += float(outputs["loss"]) * len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        figures = {"loss": self.loss_sum / self.seen, "acc": self.correct / self.seen}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(figures))


@pytest.mark.slow
def test_the_training_figures_are_the_mean_over_processes(tmp_path: Path) -> None:
    # The logged figures were rank 0's alone: without sync_dist, and with it too while DDP copied rank
    # 0's tally (a buffer then) into the other process at every forward.
    run_dir = tmp_path / "ddp"
    result = run_script(
        "train.py",
        *SMALL_TWO_PROCESS_RUN,
        "data.num_classes=4",
        "trainer.max_epochs=1",
        "test=false",
        "logger=csv",
        f"+callbacks.rank_tally._target_={__name__}._RankTally",
        f"+callbacks.rank_tally.folder={tmp_path}",
        f"hydra.run.dir={run_dir}",
    )
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(ranks[0][name] != ranks[1][name] for name in ("loss", "acc")), f"nothing to average: {ranks}"
    (logged,) = [row for row in csv.DictReader((run_dir / "csv" / "metrics.csv").open()) if row["train/loss"]]
    for name in ("loss", "acc"):
        expected = (ranks[0][name] + ranks[1][name]) / 2
        assert float(logged[f"train/{name}"]) == pytest.approx(expected, rel=1e-5), name
    # Each process's share of the tally is gathered into the checkpoint without Lightning's
    # all_gather, whose deprecated torch call printed a FutureWarning from every process.
    assert "is deprecated" not in result.stderr, result.stderr[-2000:]
    tally = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["train_epoch_tally"]
    assert tally["seen"] == [32, 32] and tally["sums"].shape == (2, 2)


class _NaNInTheSecondProcess(pl.Callback):
    """Puts a NaN in the second process's training tally only, as a loss that diverged there first."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == 1 and batch_idx == 0:
            pl_module.train_sums[0] = float("nan")


@pytest.mark.slow
def test_a_nonfinite_loss_in_one_process_stops_every_process(tmp_path: Path) -> None:
    # The guard stopped the process whose tally held the NaN alone; the other failed in its next
    # collective with gloo's "Connection closed by peer" traceback (NCCL waits there until its timeout).
    run_dir = tmp_path / "ddp"
    result = run_script(
        "train.py",
        *SMALL_TWO_PROCESS_RUN,
        "trainer.max_epochs=2",
        "test=false",
        "logger=none",
        f"+callbacks.nan_in_one._target_={__name__}._NaNInTheSecondProcess",
        f"hydra.run.dir={run_dir}",
        check=False,
        timeout=180,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "the training loss became NaN or infinite by step 4" in result.stderr
    assert "Traceback" not in result.stderr


class _UserErrorInOneProcess(pl.Callback):
    """A UserError in process `rank` alone, as an image in its share of the data that cannot be decoded."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and batch_idx == 1:
            from zoo.training.errors import UserError

            raise UserError(f"cannot read image in process {self.rank}")


class _KilledInOneProcess(pl.Callback):
    """Process 1 killed with SIGKILL, as the kernel's out-of-memory killer does: it says nothing."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == 1 and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
def test_a_process_killed_from_outside_is_named_by_the_one_that_started_it(tmp_path: Path) -> None:
    result = run_script(
        "train.py",
        *SMALL_TWO_PROCESS_RUN,
        "trainer.max_epochs=1",
        "logger=none",
        f"+callbacks.kill._target_={__name__}._KilledInOneProcess",
        f"hydra.run.dir={tmp_path / 'ddp'}",
        check=False,
        timeout=180,
    )
    assert result.returncode == 128 + signal.SIGKILL, result.stderr[-3000:]
    assert "error: a process of this run was killed by signal 9" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
def test_a_user_error_in_one_process_is_its_one_line(tmp_path: Path, rank: int) -> None:
    # The other process failed in its next collective with gloo's "Connection closed by peer", a
    # traceback of some 140 lines after the error's line; with the error in process 1, the command's
    # status was that traceback's 1.
    result = run_script(
        "train.py",
        *SMALL_TWO_PROCESS_RUN,
        "trainer.max_epochs=1",
        "logger=none",
        f"+callbacks.fail._target_={__name__}._UserErrorInOneProcess",
        f"+callbacks.fail.rank={rank}",
        f"hydra.run.dir={tmp_path / 'ddp'}",
        check=False,
        timeout=180,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"error: cannot read image in process {rank}" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


class _SigtermOnceTheOtherProcessWentOn(pl.Callback):
    """SIGTERM to process 0 at the end of step 2, a second after the step's collectives: by then
    process 1 has passed that step's end and waits at the next step's start."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == 0 and trainer.global_step == 2:
            time.sleep(1)
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_sigterm_stops_every_process_at_one_step_whenever_it_comes(tmp_path: Path) -> None:
    # The handler set Lightning's flag, which Lightning also reads in each process alone at a step's
    # end: process 0 stopped there to save last.ckpt while process 1 waited at the next step's start,
    # and the run hung (2 of 6 runs stopped by SIGTERM at a random moment; this timing, every run).
    run_dir = tmp_path / "ddp"
    result = run_script(
        "train.py",
        *SMALL_TWO_PROCESS_RUN,
        "trainer.max_epochs=1",
        "test=false",
        "logger=none",
        f"+callbacks.term._target_={__name__}._SigtermOnceTheOtherProcessWentOn",
        f"hydra.run.dir={run_dir}",
        check=False,
        timeout=90,
    )
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    assert "stopped by SIGTERM at step 2; resume with" in result.stderr
    assert _global_step(run_dir) == 2


class _CrashUnlessResumed(pl.Callback):
    """Fails every process at the end of training step `step`, in a run that did not resume."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and trainer.ckpt_path is None:
            raise RuntimeError("crash")


@pytest.mark.slow
def test_a_run_resumed_mid_epoch_logs_the_figures_of_an_unbroken_run(tmp_path: Path) -> None:
    # The checkpoint held rank 0's share of the epoch's tally, which every process took back: the
    # resumed epoch's train/acc was 0.2656 where the unbroken run's, on the same weights, was 0.25.
    common = (
        *SMALL_TWO_PROCESS_RUN,
        "data.num_classes=4",
        "trainer.max_epochs=1",
        "trainer.deterministic=true",
        "test=false",
        "logger=csv",
        "callbacks.last_checkpoint.every_n_train_steps=2",
        f"+callbacks.crash._target_={__name__}._CrashUnlessResumed",
    )
    reference, cut = tmp_path / "reference", tmp_path / "cut"
    run_script("train.py", *common, "+callbacks.crash.step=0", f"hydra.run.dir={reference}")
    crashed = run_script("train.py", *common, "+callbacks.crash.step=3", f"hydra.run.dir={cut}", check=False)
    assert crashed.returncode != 0 and _global_step(cut) == 2
    run_script("train.py", f"resume={cut}", cwd=tmp_path)

    def logged(run_dir: Path) -> dict[str, float]:
        rows = csv.DictReader((run_dir / "csv" / "metrics.csv").open())
        return {k: float(v) for row in rows for k, v in row.items() if k.startswith(("train/", "val/")) and v}

    expected, resumed = logged(reference), logged(cut)
    assert sorted(resumed) == ["train/acc", "train/loss", "val/acc", "val/loss"]
    for name, value in expected.items():
        assert resumed[name] == pytest.approx(value, rel=1e-6), name


@pytest.mark.slow
def test_processes_count_each_test_image_once(tmp_path: Path) -> None:
    # 5 test images over 2 processes: one process's share was padded with a repeated image, which the
    # metrics counted (test/acc 0.5 = 3/6 where evaluate.py, one process, says 0.6 = 3/5).
    run_dir, eval_dir = tmp_path / "ddp", tmp_path / "eval"
    run_script(
        "train.py",
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "data=synthetic",
        "data.num_samples=50",
        "data.num_classes=2",
        "data.batch_size=8",
        "trainer.max_epochs=2",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    run_script(
        "evaluate.py", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", f"hydra.run.dir={eval_dir}"
    )
    trained = json.loads((run_dir / "metrics.json").read_text())
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert trained["test/acc"] == pytest.approx(evaluated["test/acc"], abs=1e-6)
    assert trained["test/loss"] == pytest.approx(evaluated["test/loss"], rel=1e-5)
    assert round(trained["test/acc"] * 5, 6) == round(trained["test/acc"] * 5)  # a count out of 5


@pytest.mark.slow
def test_a_killed_ddp_run_resumes_bit_identical_with_augmentation(tmp_path: Path) -> None:
    # Each process augments with its own generator; only rank 0's position was saved, so after a
    # resume rank 1 augmented as rank 0 and the weights drifted from an unbroken run's (by up to 0.17).
    import os
    import signal
    import subprocess
    import sys
    import time

    common = (
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "data.batch_size=16",
        "trainer.max_epochs=2",
        "trainer.deterministic=true",
        "scheduler=none",
        "logger=none",
        "test=false",
        "callbacks.last_checkpoint.every_n_train_steps=10",
    )
    reference, cut = tmp_path / "reference", tmp_path / "cut"
    run_script("train.py", *common, f"hydra.run.dir={reference}")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *common, f"hydra.run.dir={cut}"],
        cwd=tmp_path,
        start_new_session=True,  # its own process group: both processes are killed at once
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = cut / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if last.exists() and _global_step(cut) >= 20:  # mid-way through the first of two 40-step epochs
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 20 <= _global_step(cut) < 80, "the run ended before it could be killed mid-way"
    run_script("train.py", f"resume={cut}", cwd=tmp_path)
    expected = torch.load(reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert resumed["global_step"] == expected["global_step"]
    for name, value in expected["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), name


@pytest.mark.slow
def test_multirun_with_ddp_makes_one_directory_per_point(tmp_path: Path) -> None:
    before = _stray_runs()
    sweep = tmp_path / "sweep"
    run_script(
        "train.py",
        "-m",
        "optimizer.lr=0.002,0.004",
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    )
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert runs == ["0", "1"]
    for run in runs:
        assert (sweep / run / "metrics.json").exists()
        assert sorted(p.name for p in (sweep / run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert _stray_runs() == before


def test_a_frozen_backbone_under_plain_ddp_is_one_line_before_the_processes_start(tmp_path: Path) -> None:
    # Plain DDP fails at the second step on parameters without a gradient: a traceback per process.
    from zoo.models import create_model
    from zoo.training.errors import EXIT_USER_ERROR

    source = tmp_path / "lenet5.pth"
    torch.save(create_model("lenet5", num_classes=10, in_chans=1).state_dict(), source)
    result = run_script(
        "finetune.py",
        f"ckpt_path={source}",
        "model=lenet5",
        "finetune.freeze_backbone=true",
        *SMALL_TWO_PROCESS_RUN,  # the failure came at the second step
        "trainer.max_epochs=1",
        "test=false",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
        timeout=120,
    )
    assert result.returncode == EXIT_USER_ERROR, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "set trainer.strategy=ddp_find_unused_parameters_true" in result.stderr


def test_processes_from_torchrun_or_slurm_must_share_a_named_run_directory() -> None:
    from zoo.training.cli import external_launch_overrides
    from zoo.training.errors import UserError

    assert external_launch_overrides(["model=resnet18"], {}) == ["model=resnet18"]
    with pytest.raises(UserError, match="hydra.run.dir"):
        external_launch_overrides(["model=resnet18"], {"WORLD_SIZE": "4", "RANK": "0", "LOCAL_RANK": "0"})
    shared = ["hydra.run.dir=runs/train/job7"]
    assert external_launch_overrides(shared, {"WORLD_SIZE": "4", "RANK": "0"}) == shared
    # Other ranks write no config copies of their own into the shared folder.
    assert "hydra.output_subdir=null" in external_launch_overrides(
        shared, {"SLURM_NTASKS": "8", "SLURM_PROCID": "3"}
    )
    # Each rank's log file is named after its command: a fine-tune's were train_rank*.log.
    tuned = external_launch_overrides(shared, {"WORLD_SIZE": "4", "RANK": "3"}, task="finetune")
    assert tuned[-1] == "hydra.job.name=finetune_rank3"
    # A child that Lightning launched gets its folder from the parent: nothing to add.
    child = ["hydra.run.dir=/x"]
    assert external_launch_overrides(child, {"WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == child


def test_the_sigterm_handler_runs_no_collective(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Lightning's handler broadcast from inside the signal handler, on the process that got the
    # signal only: under trainer=ddp_cpu, 2 of 6 runs stopped by SIGTERM hung in a collective or
    # failed in gloo. The processes agree on the signal at the start of each step instead.
    import signal

    import pytorch_lightning as pl
    import torch.distributed as dist

    from zoo.training import builders

    from .conftest import compose_config

    trainer = builders.build_trainer(compose_config(f"paths.output_dir={tmp_path}", "logger=none"))
    collectives = []
    monkeypatch.setattr(pl.Trainer, "world_size", property(lambda self: 2))
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    for collective in ("broadcast", "all_reduce", "barrier"):
        monkeypatch.setattr(dist, collective, lambda *args, **kwargs: collectives.append(args))
    trainer._signal_connector._sigterm_notifier_fn(signal.SIGTERM, None)
    assert collectives == []
    # Nor is Lightning's flag set, which each process reads alone (test_sigterm_stops_every_process_...).
    assert not trainer.received_sigterm
