"""Runs survive kills: resume continues exactly, checkpoints are never half-written."""

from __future__ import annotations

import csv
import functools
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from omegaconf import OmegaConf
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from zoo.data import DataSpec
from zoo.training import builders
from zoo.training.callbacks import RecordResolvedConfig
from zoo.training.checkpoint import check_resumable, epoch_progress, refuse_other_data
from zoo.training.checkpoint_io import SLOW_WRITE_ENV, TEMP_SUFFIX, save_atomically
from zoo.training.errors import UserError
from zoo.training.fit import _resumed_into_an_ended_epoch, start_run, stopped_by_a_signal
from zoo.training.module import (
    OPTIMIZER_KIND_KEY,
    SCHEDULER_KIND_KEY,
    TRAIN_TALLY_KEY,
    ImageClassifier,
    refuse_another_optimization,
    refuse_another_scheduler,
    scheduler_kind,
)
from zoo.training.overrides import check_overrides, data_overrides, run_dir_of_output_dir
from zoo.training.resume import find_interrupted_run, refuse_a_changed_continuation, resolve_resume
from zoo.training.run_dir_guard import LOCK_NAME, hold_run_dir
from zoo.training.state import RNGState

from .conftest import ROOT, checkpoint_weights, compose_config, run_script

# Deterministic CPU training with last.ckpt refreshed every 4 steps (20 steps per epoch).
EXACT = (
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "trainer.accelerator=cpu",
    "logger=none",
    "callbacks.last_checkpoint.every_n_train_steps=4",
)


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file a path names now: an atomic save replaces the file, so this changes with each save."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _start(run_dir: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    last = run_dir / "checkpoints" / "last.ckpt"
    args = (
        [*EXACT, *extra, f"ckpt_path={last}"]
        if last.exists()
        else [*EXACT, *extra, f"hydra.run.dir={run_dir}"]
    )
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        # A run that finished before its kill trains on from ckpt_path in a new folder under runs/ of
        # the working folder: the test's, not the checkout.
        cwd=run_dir.parent,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, process: subprocess.Popen, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError("timed out waiting for the training process")


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_identical_weights(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    run_script("train.py", *EXACT, f"hydra.run.dir={reference}")

    run_dir = tmp_path / "interrupted"
    checkpoints = run_dir / "checkpoints"
    rng = random.Random(1234)
    kills = 0
    # First kill while a checkpoint is being written, then at random moments.
    for attempt in range(3):
        during_save = attempt == 0
        env = {SLOW_WRITE_ENV: "1.0"} if during_save else {}
        process = _start(run_dir, env=env)
        if during_save:
            ready = _wait_for(lambda: any(checkpoints.glob(f".*{TEMP_SUFFIX}")), process)
        else:
            # Wait until this process has saved once (it is past start-up and training), then kill it
            # at a random moment among the next steps and saves.
            saved_before = _identity(checkpoints / "last.ckpt")
            ready = _wait_for(
                lambda old=saved_before: _identity(checkpoints / "last.ckpt") not in (None, old), process
            )
            time.sleep(rng.uniform(0.0, 0.5))
        if ready and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            if during_save:
                # The kill landed between writing and renaming: the old last.ckpt (if any) is whole.
                assert not (checkpoints / "last.ckpt").exists() or checkpoint_weights(
                    checkpoints / "last.ckpt"
                )
        else:
            process.wait()
    assert kills >= 3, "the run finished before it could be killed three times"

    # The last kill can land after the run wrote metrics.json, in its exit: then it has finished,
    # and a resume would be refused, with nothing left to train.
    if not (run_dir / "metrics.json").exists():
        final = _start(run_dir)
        _, stderr = final.communicate(timeout=600)
        assert final.returncode == 0, stderr[-3000:]
        # The resumed run's own checkpoints are why its folder holds files: no warning about them.
        assert "exists and is not empty" not in stderr

    expected, actual = (
        checkpoint_weights(reference / "checkpoints" / "last.ckpt"),
        checkpoint_weights(checkpoints / "last.ckpt"),
    )
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"{name} differs after resume"
    reference_metrics = json.loads((reference / "metrics.json").read_text())
    assert json.loads((run_dir / "metrics.json").read_text()) == reference_metrics
    assert not list(checkpoints.glob(f".*{TEMP_SUFFIX}"))


def test_same_seed_gives_the_same_metrics(tmp_path: Path) -> None:
    common = ("trainer.max_epochs=1", "trainer.deterministic=true", "logger=none", "seed=7")
    run_script("train.py", *common, f"hydra.run.dir={tmp_path / 'a'}")
    run_script("train.py", *common, f"hydra.run.dir={tmp_path / 'b'}")
    # The seed is the one given: another one, with the data's shuffling seed held at 7, initializes
    # the network otherwise (data.seed alone follows ${seed} and would differ whatever start_run seeds).
    run_script("train.py", *common, "seed=8", "data.seed=7", f"hydra.run.dir={tmp_path / 'c'}")
    first, second, other = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in "abc")
    assert first == second and first["test/acc"] > 0.1
    assert other["test/loss"] != first["test/loss"]


def test_atomic_save_keeps_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    save_atomically({"step": torch.tensor(1)}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_atomically({"step": Unpicklable()}, target)
    assert torch.load(target, weights_only=True)["step"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_write_the_file_system_refuses_midway_names_the_checkpoint(tmp_path: Path) -> None:
    # A full disk fails torch.save's writes part-way, and torch's zip writer reported it as a
    # RuntimeError ("unexpected pos ...") naming neither file nor reason: a traceback, not the
    # one-line refusal. A file size limit fails the same writes, and needs no full disk to test.
    target = tmp_path / "last.ckpt"
    save_atomically({"step": torch.tensor(1)}, target)
    script = (
        "import errno, resource, sys, torch\n"
        "from zoo.training.checkpoint_io import save_atomically\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    save_atomically({'weights': torch.zeros(1_000_000)}, sys.argv[1])\n"
        "except OSError as error:\n"
        "    print(errno.errorcode[error.errno], error.filename)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(target)], capture_output=True, text=True, cwd=ROOT
    )
    assert done.stdout.strip() == f"EFBIG {target}", done.stderr[-2000:]
    assert torch.load(target, weights_only=True)["step"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_an_atomic_save_is_on_disk_before_its_rename_and_the_rename_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A power cut can leave a renamed file whose bytes never reached the disk (an empty last.ckpt
    # under its final name), or the old name back: the file is synced first, the folder last.
    events = []
    fsync, replace = os.fsync, os.replace

    def noted_fsync(descriptor: int) -> None:
        events.append(os.readlink(f"/proc/self/fd/{descriptor}"))  # the file or folder synced
        fsync(descriptor)

    def noted_replace(source: Path, destination: Path) -> None:
        events.append((str(source), str(destination)))
        replace(source, destination)

    monkeypatch.setattr(os, "fsync", noted_fsync)
    monkeypatch.setattr(os, "replace", noted_replace)
    target = tmp_path.resolve() / "last.ckpt"  # as /proc names the files synced
    save_atomically({"step": torch.tensor(1)}, target)
    temporary = events[0]
    assert events == [temporary, (temporary, str(target)), str(target.parent)]
    assert Path(temporary).name.endswith(TEMP_SUFFIX)


def _fake_run(runs: Path, name: str, overrides: list[str], finished: bool = False) -> Path:
    run = runs / "train" / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if finished:
        (run / "metrics.json").write_text("{}")
    return run


def test_resume_auto_picks_the_newest_unfinished_run_of_the_same_config(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    older = _fake_run(runs, "1", ["model=resnet18"])
    _fake_run(runs, "2", ["model=lenet5"])
    _fake_run(runs, "3", ["model=resnet18"], finished=True)
    newer = _fake_run(runs, "4", ["model=resnet18", "ckpt_path=x"])
    os.utime(older / "checkpoints" / "last.ckpt", (1, 1))
    assert find_interrupted_run(["model=resnet18"], runs) == newer
    argv = resolve_resume(["model=resnet18", "resume=auto"], runs_dir=runs)
    assert argv == [
        "model=resnet18",
        f"ckpt_path={newer / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={newer}",
        "hydra.output_subdir=null",  # the run keeps the record it was started with
    ]
    with pytest.raises(UserError, match="no unfinished run"):
        find_interrupted_run(["model=vgg11"], runs)
    with pytest.raises(UserError, match="already finished"):
        resolve_resume([f"resume={runs / 'train' / '3'}"], runs_dir=runs)


def test_a_finished_run_is_never_picked_to_resume_even_when_newest(tmp_path: Path) -> None:
    # resume=auto must skip a finished run even when its last.ckpt is the newest of the config's.
    runs = tmp_path / "runs"
    unfinished = _fake_run(runs, "1", ["model=resnet18"])
    _fake_run(runs, "2", ["model=resnet18"], finished=True)
    os.utime(unfinished / "checkpoints" / "last.ckpt", (1, 1))
    assert find_interrupted_run(["model=resnet18"], runs) == unfinished


def test_ckpt_path_inside_an_unfinished_run_resumes_in_that_run_directory(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "runs", "1", [])
    last = run / "checkpoints" / "last.ckpt"
    assert resolve_resume([f"ckpt_path={last}"]) == [
        f"ckpt_path={last}",
        f"hydra.run.dir={run}",
        "hydra.output_subdir=null",
    ]


def test_a_resumed_run_takes_the_overrides_it_was_started_with(tmp_path: Path, capsys) -> None:
    # Without them, resume=RUN rebuilt the run from the defaults (30 epochs on a schedule of 4).
    run = _fake_run(tmp_path / "runs", "1", ["trainer.max_epochs=4", "optimizer.lr=0.1", "ckpt_path=old"])
    last = run / "checkpoints" / "last.ckpt"
    tail = [f"hydra.run.dir={run}", "hydra.output_subdir=null"]
    assert resolve_resume([f"resume={run}", "optimizer.lr=0.2"]) == [
        "trainer.max_epochs=4",  # recorded; the command's own optimizer.lr wins, ckpt_path is where to resume
        "optimizer.lr=0.2",
        f"ckpt_path={last}",
        *tail,
    ]
    assert "resuming " in capsys.readouterr().out
    assert resolve_resume([f"ckpt_path={last}"]) == [
        "trainer.max_epochs=4",
        "optimizer.lr=0.1",
        f"ckpt_path={last}",
        *tail,
    ]


def test_the_starting_command_repeated_with_resume_auto_adds_each_new_key_once(tmp_path: Path) -> None:
    # The README's +trainer.NAME=... adds a key; given again as the run's record gives it too, Hydra
    # refused to add it twice ("An item is already at 'trainer.detect_anomaly'").
    started = ["+trainer.detect_anomaly=true", "trainer.max_epochs=4"]
    run = _fake_run(tmp_path / "runs", "1", started)
    argv = resolve_resume([*started, "resume=auto"], runs_dir=tmp_path / "runs")
    assert argv[:2] == started and argv[-2:] == [f"hydra.run.dir={run}", "hydra.output_subdir=null"]
    cfg = compose_config(*(token for token in argv if not token.startswith("hydra.")))
    assert cfg.trainer.detect_anomaly is True and cfg.ckpt_path == str(run / "checkpoints" / "last.ckpt")


def test_ckpt_path_with_its_own_run_directory_named_resumes_as_ckpt_path_alone(tmp_path: Path) -> None:
    # Naming the folder beside the checkpoint dropped the recorded overrides, and Hydra then replaced
    # the run's record with this command's.
    run = _fake_run(tmp_path / "runs", "1", ["trainer.max_epochs=4", "scheduler=none"])
    last = run / "checkpoints" / "last.ckpt"
    given = [f"ckpt_path={last}", f"hydra.run.dir={run}"]
    assert resolve_resume(given) == [
        "trainer.max_epochs=4",
        "scheduler=none",
        *given,
        "hydra.output_subdir=null",
    ]
    # Asked again (a DDP child process gets the rewritten command): nothing is added twice.
    assert resolve_resume(resolve_resume(given)) == resolve_resume(given)
    # Another folder takes a new run that starts from the checkpoint; a finished run is left to be refused.
    elsewhere = [f"ckpt_path={last}", f"hydra.run.dir={tmp_path / 'other'}"]
    assert resolve_resume(elsewhere) == elsewhere
    (run / "metrics.json").write_text("{}")
    assert resolve_resume(given) == given
    # A finished run's last.ckpt trains on in a new folder, built as that run was.
    assert resolve_resume([f"ckpt_path={last}"]) == [
        "trainer.max_epochs=4",
        "scheduler=none",
        f"ckpt_path={last}",
    ]


def test_quoted_paths_resume_their_run_and_the_rewritten_overrides_stay_quoted(tmp_path: Path) -> None:
    # A path with a comma (or a bracket, or é) must be quoted for Hydra; the quotes were taken as part
    # of the path, so a finished run was "resumed" in its own folder (refused: it holds a finished run)
    # and an unfinished one lost its recorded overrides, and resume= handed Hydra an unquoted comma.
    from hydra.core.override_parser.overrides_parser import OverridesParser

    run = _fake_run(tmp_path / "a,b", "1", ["trainer.max_epochs=4"])
    last = run / "checkpoints" / "last.ckpt"
    tail = [f"hydra.run.dir='{run}'", "hydra.output_subdir=null"]
    assert resolve_resume([f"ckpt_path='{last}'"]) == ["trainer.max_epochs=4", f"ckpt_path='{last}'", *tail]
    assert resolve_resume([f"resume={run}"]) == ["trainer.max_epochs=4", f"ckpt_path='{last}'", *tail]
    assert resolve_resume([f'resume="{run}"']) == ["trainer.max_epochs=4", f"ckpt_path='{last}'", *tail]
    parsed = OverridesParser.create().parse_overrides(resolve_resume([f"resume={run}"]))
    assert {o.key_or_group: o.value() for o in parsed}["hydra.run.dir"] == str(run)
    (run / "metrics.json").write_text("{}")
    assert resolve_resume([f"ckpt_path='{last}'"]) == ["trainer.max_epochs=4", f"ckpt_path='{last}'"]


def test_the_sigterm_line_gives_a_resume_command_the_shell_takes_whole(tmp_path: Path, capsys) -> None:
    # "python train.py resume=/data/my run" ran train.py with resume=/data/my and a stray "run".
    run_dir = tmp_path / "my run"
    # SIGTERM saves last.ckpt at the step it stops on; the command resumes from it.
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").touch()
    trainer = SimpleNamespace(is_global_zero=True, global_step=3)
    with (
        pytest.raises(SystemExit),
        stopped_by_a_signal(OmegaConf.create({"task_name": "train"}), trainer, run_dir),
    ):
        raise SIGTERMException
    command = capsys.readouterr().err.partition("resume with: ")[2]
    assert shlex.split(command) == ["python", "train.py", f"resume={run_dir}"]


def test_a_run_directory_named_otherwise_than_its_checkpoint_is_still_that_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The checkpoint relative to the working folder, the folder absolute: one run, resumed as such.
    run = _fake_run(tmp_path / "runs", "1", ["trainer.max_epochs=4"])
    monkeypatch.chdir(tmp_path)
    given = ["ckpt_path=runs/train/1/checkpoints/last.ckpt", f"hydra.run.dir={run}"]
    assert resolve_resume(given) == ["trainer.max_epochs=4", *given, "hydra.output_subdir=null"]


def test_resume_values_that_name_no_run_are_refused(tmp_path: Path) -> None:
    # Both were "cannot resume <a parent folder>": resume= resolved to ".", a stray file to /tmp.
    with pytest.raises(UserError, match="resume= needs a value: auto, a run directory, or"):
        resolve_resume(["resume="], runs_dir=tmp_path)
    stray = tmp_path / "notes.txt"
    stray.write_text("")
    with pytest.raises(UserError, match=f"resume={stray} is a file outside a run's checkpoints folder"):
        resolve_resume([f"resume={stray}"], runs_dir=tmp_path)
    # null, as for any key, is not set: a new run.
    assert resolve_resume(["model=lenet5", "resume=null"], runs_dir=tmp_path) == ["model=lenet5"]
    # A folder that does not exist was "has no checkpoints/last.ckpt"; one whose last.ckpt is gone
    # names the checkpoint that can still resume it.
    with pytest.raises(
        UserError, match=re.escape(f"resume={tmp_path / 'gone'}: there is no such run directory")
    ):
        resolve_resume([f"resume={tmp_path / 'gone'}"], runs_dir=tmp_path)
    run = _fake_run(tmp_path / "runs", "1", [])
    (run / "checkpoints" / "last.ckpt").rename(run / "checkpoints" / "best.ckpt")
    message = (
        f"cannot resume {run}: it has no checkpoints/last.ckpt; its best checkpoint resumes with ckpt_path="
    )
    with pytest.raises(UserError, match=re.escape(message + str(run / "checkpoints" / "best.ckpt"))):
        resolve_resume([f"resume={run}"], runs_dir=tmp_path)
    # Without a best checkpoint either, none is offered.
    (run / "checkpoints" / "best.ckpt").unlink()
    with pytest.raises(UserError) as raised:
        resolve_resume([f"resume={run}"], runs_dir=tmp_path)
    assert str(raised.value) == f"cannot resume {run}: it has no checkpoints/last.ckpt"


# resume=RUN hydra.run.dir=OTHER went on in RUN without a word: the run's folder replaced the named one.
@pytest.mark.parametrize("key", ["hydra.run.dir", "paths.output_dir"])
def test_resume_with_another_run_folder_named_is_refused(tmp_path: Path, key: str) -> None:
    run = _fake_run(tmp_path / "runs", "1", ["trainer.max_epochs=4"])
    other = tmp_path / "other"
    with pytest.raises(UserError) as raised:
        resolve_resume([f"resume={run}", f"{key}={other}"], runs_dir=tmp_path)
    assert (
        str(raised.value)
        == f"resume={run} continues run {run} in its own folder, not in {key}={other}; drop {key}"
    )
    # Its own folder named again resumes it as resume= alone does.
    assert resolve_resume([f"resume={run}", f"hydra.run.dir={run}"], runs_dir=tmp_path)[-2:] == [
        f"hydra.run.dir={run}",
        "hydra.output_subdir=null",
    ]


def test_a_run_started_with_paths_output_dir_resumes_and_trains_on_from_anywhere(
    tmp_path: Path, monkeypatch
) -> None:
    # Its recorded paths.output_dir=od was re-applied: resumed from another working folder it named a
    # second folder (refused: "name two folders for one run"), and a finished run's last.ckpt, said to
    # train on in a new run directory, was sent back into the finished folder (refused).
    started_in, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    run = _fake_run(started_in / "runs", "1", ["trainer.max_epochs=4", "paths.output_dir=od"])
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    last = run / "checkpoints" / "last.ckpt"
    resumed = run_dir_of_output_dir(resolve_resume([f"resume={run}"]))
    assert resumed == [
        "trainer.max_epochs=4",
        f"ckpt_path={last}",
        f"hydra.run.dir={run}",
        "hydra.output_subdir=null",
    ]
    (run / "metrics.json").write_text("{}")
    assert resolve_resume([f"ckpt_path={last}"]) == ["trainer.max_epochs=4", f"ckpt_path={last}"]


def test_the_starting_commands_interpolated_run_folder_given_again_resumes_the_run(tmp_path: Path) -> None:
    # A hydra.run.dir with ${...} names no folder yet, so it cannot be another one: the command that
    # started the run, repeated with resume=auto, was refused as naming a folder other than its own.
    started = ["trainer.max_epochs=4", "hydra.run.dir=runs/${model.name}"]
    run = _fake_run(tmp_path / "runs", "1", started)
    argv = resolve_resume([*started, "resume=auto"], runs_dir=tmp_path / "runs")
    assert argv[-2:] == [f"hydra.run.dir={run}", "hydra.output_subdir=null"]


def test_a_diverging_run_stops_with_one_line_and_keeps_its_last_good_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py",
        "optimizer.lr=1e30",  # the first step sends the weights to inf; the second loss is NaN
        "trainer.max_epochs=2",
        "callbacks.last_checkpoint.every_n_train_steps=1",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "NaN or infinite" in errors[0] and "optimizer.lr" in errors[0]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # The guard runs before the checkpoint callbacks, so the bad step's weights were never saved.
    assert checkpoint["global_step"] == 1
    assert all(torch.isfinite(value).all() for value in checkpoint["state_dict"].values())


def test_a_nonfinite_loss_stays_visible_until_the_next_epoch_starts() -> None:
    spec = DataSpec(class_names=tuple("0123456789"), channels=1, image_size=32, mean=(0.5,), std=(0.25,))
    module = ImageClassifier(model={"name": "lenet5", "num_classes": 10, "in_chans": 1}, data=spec.to_dict())
    images, targets = torch.rand(4, 1, 32, 32), torch.arange(4)
    module.training_step((images, targets), 0)
    assert not module.nonfinite_loss_seen()
    module.training_step((images.fill_(float("nan")), targets), 1)
    module.training_step((torch.rand(4, 1, 32, 32), targets), 2)  # a later finite loss hides nothing
    assert module.nonfinite_loss_seen()
    module.on_train_epoch_start()
    assert not module.nonfinite_loss_seen()


def test_resuming_where_the_step_interval_meets_an_epoch_end_loses_no_epoch(tmp_path: Path) -> None:
    # Four batches per epoch and a save every four steps: every step save falls on an epoch's last
    # batch, the case Lightning resumes one epoch short; last.ckpt must come from the epoch-end save.
    # No schedule: a cosine one spans max_epochs, which differs between the runs compared here.
    short = (
        "trainer.limit_train_batches=4",
        "callbacks.last_checkpoint.every_n_train_steps=4",
        "scheduler=none",
    )
    reference = tmp_path / "reference"
    run_script("train.py", *EXACT, *short, "trainer.max_epochs=3", "test=false", f"hydra.run.dir={reference}")
    run_dir = tmp_path / "stopped"
    run_script("train.py", *EXACT, *short, "trainer.max_epochs=2", "test=false", f"hydra.run.dir={run_dir}")
    last = run_dir / "checkpoints" / "last.ckpt"
    # That run finished, so the longer one continues from its checkpoint in a new, time-stamped run
    # directory under runs/ of the working folder: tmp_path, not the checkout.
    result = run_script(
        "train.py", *EXACT, *short, "trainer.max_epochs=3", "test=false", f"ckpt_path={last}", cwd=tmp_path
    )
    assert f"run {run_dir} already finished: training on from {last} in a new run directory" in result.stdout
    continued = Path(result.stdout.strip().splitlines()[-1].split("run directory: ")[1].split()[0])
    assert continued != run_dir and continued.is_relative_to(tmp_path / "runs" / "train")
    resumed = torch.load(continued / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    expected = torch.load(reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == expected["global_step"] == 12
    for name, value in expected["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), f"{name} differs after resume"


class _Crash(RuntimeError):
    pass


class _DiesAtFirstValidation(pl.Callback):
    """A crash between an epoch's last training step and its end, where a kill can land."""

    def on_validation_start(self, trainer, pl_module) -> None:
        raise _Crash


def _fit_in_process(
    run_dir: Path, overrides: tuple[str, ...], resume: Path | None = None, dies: bool = False
):
    cfg = compose_config(*overrides, f"paths.output_dir={run_dir}")
    _, datamodule, trainer = start_run(cfg, resume_from=resume and str(resume))  # as train.py does
    if dies:
        trainer.callbacks.insert(0, _DiesAtFirstValidation())
    module = builders.build_module(cfg, datamodule.spec)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    return trainer, module


def test_a_crash_after_an_epochs_last_step_resumes_without_losing_the_epoch(tmp_path: Path) -> None:
    # Two steps between saves and four batches an epoch: the step interval meets the epoch's end.
    overrides = (
        *EXACT,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=4",
        "callbacks.last_checkpoint.every_n_train_steps=2",
    )
    _, reference = _fit_in_process(tmp_path / "reference", overrides)
    with pytest.raises(_Crash):
        _fit_in_process(tmp_path / "crashed", overrides, dies=True)
    last = tmp_path / "crashed" / "checkpoints" / "last.ckpt"
    # The save at the epoch's last step (4) is left to the epoch-end save, which the crash prevented.
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 2
    trainer, resumed = _fit_in_process(tmp_path / "crashed", overrides, resume=last)
    assert trainer.global_step == 8
    for name, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), f"{name} differs after resume"


class _DiesAtFirstEpochEnd(pl.Callback):
    """A crash at an epoch's end, before the checkpoint callbacks' epoch-end save."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        raise _Crash


def test_an_epochs_last_step_is_left_to_the_epoch_end_save_when_no_validation_follows(tmp_path: Path) -> None:
    # The step save at an epoch's last batch must wait for the epoch-end save in an epoch without
    # validation too: saved there, a resume counts the epoch again and ends one epoch short.
    overrides = (
        *EXACT,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=4",
        "trainer.check_val_every_n_epoch=2",
        "callbacks.last_checkpoint.every_n_train_steps=2",
    )
    cfg = compose_config(*overrides, f"paths.output_dir={tmp_path}")
    _, datamodule, trainer = start_run(cfg)
    trainer.callbacks.insert(0, _DiesAtFirstEpochEnd())
    with pytest.raises(_Crash):
        trainer.fit(builders.build_module(cfg, datamodule.spec), datamodule=datamodule)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2


class _ValidationSteps(pl.Callback):
    """The global steps at which validations ran; with `die_at`, a crash as the validation of that
    step starts, where a kill can land."""

    def __init__(self, die_at: int | None = None) -> None:
        self.steps: list[int] = []
        self.die_at = die_at

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        if trainer.global_step == self.die_at:
            raise _Crash
        self.steps.append(trainer.global_step)


def test_a_crash_in_a_mid_epoch_validation_resumes_with_that_validation_and_the_epochs_tally(
    tmp_path: Path,
) -> None:
    # Validation and a step save both every two steps: a last.ckpt saved before the validation of its
    # step would resume past that validation, which Lightning does not run again.
    overrides = (
        *EXACT,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=6",
        "trainer.val_check_interval=2",
        "callbacks.last_checkpoint.every_n_train_steps=2",
    )

    def fit(run_dir: Path, watcher: _ValidationSteps, resume: Path | None = None) -> pl.Trainer:
        cfg = compose_config(*overrides, f"paths.output_dir={run_dir}")
        _, datamodule, trainer = start_run(cfg, resume_from=resume and str(resume))
        trainer.callbacks.insert(0, watcher)
        trainer.fit(builders.build_module(cfg, datamodule.spec), datamodule=datamodule, ckpt_path=resume)
        return trainer

    reference = fit(tmp_path / "reference", watched := _ValidationSteps())
    assert watched.steps == [2, 4, 6]
    with pytest.raises(_Crash):
        fit(tmp_path / "crashed", _ValidationSteps(die_at=4))
    last = tmp_path / "crashed" / "checkpoints" / "last.ckpt"
    # Step 4's save waited for the step after its validation, which the crash prevented; step 2's
    # was made at step 3.
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 3
    resumed = fit(tmp_path / "crashed", watched := _ValidationSteps(), resume=last)
    assert watched.steps == [4, 6]
    assert resumed.checkpoint_callback.best_model_score == reference.checkpoint_callback.best_model_score
    # The epoch's training figures cover its six batches, three of them run before the crash.
    for name in ("train/loss", "train/acc"):
        assert torch.equal(resumed.callback_metrics[name], reference.callback_metrics[name]), name
    for name, value in reference.lightning_module.state_dict().items():
        assert torch.equal(resumed.lightning_module.state_dict()[name], value), f"{name} differs after resume"


def _stopped_and_resumed_as_unbroken(
    tmp_path: Path,
    overrides: tuple[str, ...],
    stop: pl.Callback,
    raised: type[BaseException],
    saved_step: int,
    final_step: int,
) -> None:
    """Trains `overrides` unbroken, and again stopped by `stop` (which raises `raised`); the stopped
    run's last.ckpt, saved at `saved_step`, must resume to the unbroken run's `final_step` and weights."""
    reference, reference_module = _fit_in_process(tmp_path / "reference", overrides)
    cfg = compose_config(*overrides, f"paths.output_dir={tmp_path / 'stopped'}")
    _, datamodule, trainer = start_run(cfg)
    trainer.callbacks.insert(0, stop)
    with pytest.raises(raised):
        trainer.fit(builders.build_module(cfg, datamodule.spec), datamodule=datamodule)
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == saved_step
    resumed, module = _fit_in_process(tmp_path / "stopped", overrides, resume=last)
    assert resumed.global_step == reference.global_step == final_step
    for name, value in reference_module.state_dict().items():
        assert torch.equal(module.state_dict()[name], value), f"{name} differs after resume"


def test_a_step_save_waits_for_the_batch_that_steps_its_accumulated_gradients(tmp_path: Path) -> None:
    # Two batches a step, a validation every four batches (after steps 2 and 4): step 2's save moved
    # to the next batch, which only accumulated; the checkpoint lacked that batch's gradients, and
    # the resumed run stepped without them.
    overrides = (
        *EXACT,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=8",
        "trainer.accumulate_grad_batches=2",
        "trainer.val_check_interval=4",
        "callbacks.last_checkpoint.every_n_train_steps=2",
    )
    _stopped_and_resumed_as_unbroken(
        tmp_path, overrides, _ValidationSteps(die_at=4), _Crash, saved_step=3, final_step=4
    )


class _DiesAtStep(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise _Crash


def test_a_one_cycle_run_resumed_mid_epoch_trains_on_that_epochs_remaining_batches(tmp_path: Path) -> None:
    # OneCycle's step count set up the training loader before the checkpoint was restored, and
    # Lightning never gave that loader its place in the epoch: the resumed run trained on the
    # epoch's first batches again, and never on its last ones.
    overrides = (*EXACT, "scheduler=onecycle", "trainer.max_epochs=2", "trainer.limit_train_batches=6")
    _stopped_and_resumed_as_unbroken(tmp_path, overrides, _DiesAtStep(5), _Crash, saved_step=4, final_step=12)


class _BestAtStart(pl.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        callback = trainer.checkpoint_callback
        self.best = (callback.best_model_path, callback.best_model_score)


def test_a_moved_run_folder_resumes_with_its_best_checkpoint_and_score(tmp_path: Path) -> None:
    # Lightning forgot the best score of a moved run (a worse epoch then replaced best.ckpt) and kept
    # the old folder's best.ckpt path, which the final test failed to find.
    overrides = (*EXACT, "trainer.max_epochs=2", "trainer.limit_train_batches=4")
    cfg = compose_config(*overrides, f"paths.output_dir={tmp_path / 'before'}")
    _, datamodule, trainer = start_run(cfg)
    trainer.callbacks.insert(0, _DiesAtSecondValidation())
    with pytest.raises(_Crash):
        trainer.fit(builders.build_module(cfg, datamodule.spec), datamodule=datamodule)
    score = trainer.checkpoint_callback.best_model_score
    (tmp_path / "before").rename(tmp_path / "after")
    last = tmp_path / "after" / "checkpoints" / "last.ckpt"
    cfg = compose_config(*overrides, f"paths.output_dir={tmp_path / 'after'}")
    _, datamodule, trainer = start_run(cfg, resume_from=str(last))
    trainer.callbacks.insert(0, watcher := _BestAtStart())
    module = builders.build_module(cfg, datamodule.spec)
    trainer.fit(module, datamodule=datamodule, ckpt_path=last, weights_only=True)
    assert watcher.best == (str(tmp_path / "after" / "checkpoints" / "best.ckpt"), score)
    trainer.test(module, datamodule=datamodule, ckpt_path=trainer.checkpoint_callback.best_model_path)


def test_a_copied_checkpoint_continued_without_validating_tests_its_own_weights(tmp_path: Path) -> None:
    # Lightning kept the source run's best.ckpt path: the test read another run's file, and with that
    # run's folder gone (a last.ckpt copied elsewhere) it ended in FileNotFoundError's traceback.
    overrides = ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1")
    run_script("train.py", *overrides, "logger=none", f"hydra.run.dir={tmp_path / 'source'}")
    copied = tmp_path / "copied.ckpt"
    (tmp_path / "source" / "checkpoints" / "last.ckpt").rename(copied)
    (tmp_path / "source" / "checkpoints" / "best.ckpt").unlink()
    result = run_script("train.py", *overrides, f"ckpt_path={copied}", f"hydra.run.dir={tmp_path / 'new'}")
    assert "testing the final weights" in result.stdout
    assert (tmp_path / "new" / "metrics.json").exists()


class _SigtermAt(pl.Callback):
    """What Lightning's SIGTERM handler does, at a chosen step: the loop stops once that step ends."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            trainer._signal_connector.received_sigterm = True


def test_a_run_stopped_by_sigterm_saves_its_step_and_resumes_from_it(tmp_path: Path) -> None:
    # Dropout draws from the global torch generator: without it, a resume that did not restore that
    # generator (zoo.training.state.RNGState) still matched the unbroken run.
    overrides = (*EXACT, "trainer.max_epochs=2", "trainer.limit_train_batches=6", "model.dropout=0.5")
    # every_n_train_steps=4: without the save on SIGTERM, last.ckpt would not exist yet.
    _stopped_and_resumed_as_unbroken(
        tmp_path, overrides, _SigtermAt(step=3), SIGTERMException, saved_step=3, final_step=12
    )


class _SigtermAfterBatch(pl.Callback):
    """_SigtermAt, after the training batch of this index in the epoch."""

    def __init__(self, batch_idx: int) -> None:
        self.batch_idx = batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.batch_idx:
            trainer._signal_connector.received_sigterm = True


def test_a_sigterm_amid_gradient_accumulation_keeps_the_checkpoint_before_it(tmp_path: Path) -> None:
    # Saved after a batch whose gradients waited for the next one, the resumed run lost them.
    overrides = (
        *EXACT,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=12",
        "trainer.accumulate_grad_batches=2",
        "callbacks.last_checkpoint.every_n_train_steps=3",
    )
    # SIGTERM after batch 8: after step 4, before step 5, with step 3's last.ckpt the one to keep.
    _stopped_and_resumed_as_unbroken(
        tmp_path, overrides, _SigtermAfterBatch(batch_idx=8), SIGTERMException, saved_step=3, final_step=6
    )


def test_the_rng_state_callback_restores_the_torch_python_and_numpy_generators() -> None:
    # Each of the three global generators must come back as saved, or a resumed run draws anew.
    callback = RNGState()
    saved = callback.state_dict()
    first = (torch.rand(3), random.random(), np.random.rand())
    callback.load_state_dict(saved)
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


# Lightning ends a run on SIGTERM with no exit code (a success to a shell), and on Ctrl-C with exit(1)
# (a failure); neither said which checkpoint to go on from.
@pytest.mark.parametrize(
    ("stop", "said", "way_on"),
    [
        (signal.SIGTERM, "stopped by SIGTERM at step ", "resume with: "),
        (signal.SIGINT, "interrupted at step ", "resume from its last checkpoint with: "),
    ],
)
def test_a_signal_ends_train_py_with_the_shells_status_and_a_line_on_resuming(
    tmp_path: Path, stop: signal.Signals, said: str, way_on: str
) -> None:
    run_dir = tmp_path / "run"
    process = _start(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert _wait_for(last.exists, process), "the run ended before its first checkpoint"
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + stop, stderr[-2000:]
    assert f"{way_on}python train.py resume={run_dir}" in stderr
    assert said in stderr and "Traceback" not in stderr
    assert not (run_dir / "metrics.json").exists()
    assert checkpoint_weights(last)


def test_ctrl_c_before_any_checkpoint_says_there_is_none(capsys) -> None:
    trainer = SimpleNamespace(is_global_zero=True, global_step=3)
    cfg = OmegaConf.create({"task_name": "train"})
    for testing, said in (
        (False, "interrupted at step 3; no checkpoint was saved yet\n"),
        (True, "interrupted at step 3 while testing\n"),
    ):
        with (
            pytest.raises(SystemExit) as stop,
            stopped_by_a_signal(cfg, trainer, Path("/nonexistent"), testing=testing),
        ):
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                sys.exit(1)  # as Lightning's graceful shutdown ends
        assert stop.value.code == 128 + signal.SIGINT
        assert capsys.readouterr().err == said
    # Another exit(1), not Lightning's answer to a Ctrl-C, is left as it is.
    with pytest.raises(SystemExit) as stop, stopped_by_a_signal(cfg, trainer, Path("/nonexistent")):
        sys.exit(1)
    assert stop.value.code == 1


def test_ctrl_c_while_testing_a_run_with_checkpoints_says_how_to_finish_it(tmp_path: Path, capsys) -> None:
    # Stopped in its test the run has no metrics.json, and resume=RUN tests it; Ctrl-C said only
    # "while testing", where SIGTERM there gave the command.
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    trainer = SimpleNamespace(is_global_zero=True, global_step=3)
    cfg = OmegaConf.create({"task_name": "train"})
    with (
        pytest.raises(SystemExit) as stop,
        stopped_by_a_signal(cfg, trainer, tmp_path, testing=True),
    ):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)  # as Lightning's graceful shutdown ends
    assert stop.value.code == 128 + signal.SIGINT
    assert capsys.readouterr().err == (
        f"interrupted at step 3 while testing; resume from its last checkpoint with: "
        f"python train.py resume={tmp_path}\n"
    )


def test_a_run_whose_experiment_sets_task_name_is_still_resumed_by_train_py(tmp_path: Path) -> None:
    # An experiment file's task_name names its runs' folder; it was taken for the script's name, so
    # SIGTERM advised `python resnet18_digits.py` and resume= refused the run as another script's.
    run_dir = tmp_path / "run"
    process = _start(run_dir, "task_name=my_experiment")
    assert _wait_for((run_dir / "checkpoints" / "last.ckpt").exists, process), "ended before its checkpoint"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert f"resume with: python train.py resume={run_dir}" in stderr, stderr[-2000:]
    assert resolve_resume([f"resume={run_dir}"], task="train")[-2:] == [
        f"hydra.run.dir={run_dir}",
        "hydra.output_subdir=null",
    ]
    assert find_interrupted_run([*EXACT, "task_name=my_experiment"], tmp_path, task="train") == run_dir
    with pytest.raises(UserError, match="is a run of train.py, not finetune.py"):
        resolve_resume([f"resume={run_dir}"], "resume_ckpt", task="finetune")


class _DiesAtSecondValidation(pl.Callback):
    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            raise _Crash


def _crashed_at_second_validation(run_dir: Path, overrides: tuple[str, ...]) -> Path:
    """A run trained as train.py would, crashed as its second validation starts; its last.ckpt."""
    cfg = compose_config(*overrides, f"paths.output_dir={run_dir}")
    _, datamodule, trainer = start_run(cfg)
    trainer.callbacks.insert(0, _DiesAtSecondValidation())
    with pytest.raises(_Crash):
        trainer.fit(builders.build_module(cfg, datamodule.spec), datamodule=datamodule)
    return run_dir / "checkpoints" / "last.ckpt"


def test_a_resumed_run_logs_on_in_its_tensorboard_run_without_repeating_a_step(tmp_path: Path) -> None:
    # The crashed run logged epoch 2's learning rate (step 4) after its last checkpoint (step 4); the
    # resumed run logs it again, and TensorBoard keeps one of the two (purge_step).
    overrides = (
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "trainer.limit_train_batches=4",
        "callbacks.last_checkpoint.every_n_train_steps=100",
    )
    run_dir = tmp_path / "run"
    last = _crashed_at_second_validation(run_dir, overrides)
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 4
    _fit_in_process(run_dir, overrides, resume=last)

    (event_dir,) = {p.parent for p in run_dir.rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(event_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    # Lightning logs "epoch" twice at an epoch's end step, with the training and the validation figures.
    for tag in set(events.Tags()["scalars"]) - {"epoch"}:
        steps = [event.step for event in events.Scalars(tag)]
        assert steps == sorted(set(steps)), f"{tag} logged at steps {steps}"
    assert [event.step for event in events.Scalars("lr-Adam")] == [0, 4]
    assert [event.step for event in events.Scalars("val/loss")] == [3, 7]
    # Each confusion matrix beside the validation it belongs to; one input grid, from the first run.
    assert [event.step for event in events.Images("val/confusion_matrix")] == [3, 7]
    assert [event.step for event in events.Images("train/inputs")] == [0]


def test_a_run_continued_in_a_new_folder_shows_its_inputs_in_its_tensorboard_run(tmp_path: Path) -> None:
    # A finished run's last.ckpt trains on in a new folder: a TensorBoard run of its own, which had
    # no grid of inputs (it began past step 0, as a run resumed in place does).
    overrides = ("trainer.accelerator=cpu", "trainer.limit_train_batches=4", "scheduler=none")
    _fit_in_process(tmp_path / "first", (*overrides, "trainer.max_epochs=1"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    _fit_in_process(tmp_path / "next", (*overrides, "trainer.max_epochs=2"), resume=last)

    events = EventAccumulator(str(tmp_path / "next" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert [event.step for event in events.Images("train/inputs")] == [4]


def _csv_steps(metrics_csv: Path, column: str) -> list[int]:
    with metrics_csv.open(newline="") as file:
        return [int(row["step"]) for row in csv.DictReader(file) if row.get(column)]


def test_a_resumed_run_keeps_its_csv_history_and_logs_on_without_repeating_a_step(tmp_path: Path) -> None:
    # Lightning's CSV writer deleted the metrics.csv it found: a resumed run lost every row its
    # interrupted run had written. Kept up to the checkpoint's step (4), as TensorBoard's purge_step.
    overrides = (
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "trainer.limit_train_batches=4",
        "callbacks.last_checkpoint.every_n_train_steps=100",
        "logger=csv",
        "+logger.csv.flush_logs_every_n_steps=1",
    )
    run_dir = tmp_path / "run"
    last = _crashed_at_second_validation(run_dir, overrides)
    metrics_csv = run_dir / "csv" / "metrics.csv"
    assert _csv_steps(metrics_csv, "val/loss") == [3] and _csv_steps(metrics_csv, "lr-Adam") == [0, 4]
    before = metrics_csv.read_bytes()
    # Refused inside fit (a longer one-cycle horizon would be, as a longer cosine is here), the resume
    # leaves the file as it was.
    with pytest.raises(UserError, match="T_max"):
        _fit_in_process(run_dir, (*overrides[1:], "trainer.max_epochs=3"), resume=last)
    assert metrics_csv.read_bytes() == before
    _fit_in_process(run_dir, overrides, resume=last)
    assert _csv_steps(metrics_csv, "val/loss") == [3, 7]
    assert _csv_steps(metrics_csv, "lr-Adam") == [0, 4]


def test_only_a_tensorboard_logger_is_opened_with_the_resumed_step_as_its_purge_step(tmp_path: Path) -> None:
    cfg = compose_config(f"paths.output_dir={tmp_path}", "logger=[tensorboard,csv]")
    tensorboard, csv = builders.build_loggers(cfg, resumed_step=12)
    assert isinstance(tensorboard, TensorBoardLogger) and isinstance(csv, CSVLogger)
    # The writer forgets purge_step once its file is open; the logger keeps what it handed over.
    assert tensorboard._kwargs.get("purge_step") == 12 and csv.purge_step == 12
    # A new run where one was killed before its first checkpoint: that run's points are dropped.
    killed = tmp_path / "killed"
    builders.build_loggers(compose_config(f"paths.output_dir={killed}"))[0].experiment.flush()
    restarted = builders.build_loggers(compose_config(f"paths.output_dir={killed}"))[0]
    assert restarted._kwargs.get("purge_step") == 0
    fresh, _ = builders.build_loggers(
        compose_config(f"paths.output_dir={tmp_path / 'new'}", "logger=[tensorboard,csv]")
    )
    assert "purge_step" not in fresh._kwargs


def test_resuming_with_a_longer_schedule_than_the_checkpoints_is_refused(tmp_path: Path) -> None:
    # A resumed cosine schedule keeps the checkpoint's T_max: past it the learning rate would climb again.
    overrides = (*EXACT, "trainer.limit_train_batches=2", "callbacks.last_checkpoint.every_n_train_steps=100")
    _fit_in_process(tmp_path / "run", (*overrides, "trainer.max_epochs=1"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    message = (
        f"{last} continues a CosineAnnealingLR schedule with T_max=1, but this run's settings give T_max=3 "
        "(did trainer.max_epochs or trainer.max_steps change?); a resumed run keeps its checkpoint's "
        "schedule. Resume with the settings the run began with, or train on from its weights with a fresh "
        f"schedule: python finetune.py ckpt_path={last} finetune.head=extend"
    )
    with pytest.raises(UserError, match=re.escape(message)):
        _fit_in_process(tmp_path / "run", (*overrides, "trainer.max_epochs=3"), resume=last)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("optimizer=sgd", "holds the state of optimizer Adam, and this run builds SGD"),
        ("optimizer=adamw", "holds the state of optimizer Adam, and this run builds AdamW"),
        (
            "optimizer.lr=0.2",
            "continues its Adam optimizer with lr=0.003, but this run's settings give lr=0.2",
        ),
    ],
)
def test_resuming_with_another_optimizer_or_its_values_is_refused(
    tmp_path: Path, change: str, message: str
) -> None:
    # SGD failed at its first step with a KeyError (no momentum in Adam's groups); a new lr was
    # silently replaced by the checkpoint's.
    overrides = (*EXACT, "trainer.limit_train_batches=2", "scheduler=none")
    _fit_in_process(tmp_path / "run", (*overrides, "trainer.max_epochs=1"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError, match=re.escape(f"{last} {message}")):
        _fit_in_process(tmp_path / "run", (*overrides, "trainer.max_epochs=2", change), resume=last)
    # The same settings resume.
    trainer, _ = _fit_in_process(tmp_path / "run", (*overrides, "trainer.max_epochs=2"), resume=last)
    assert trainer.global_step == 4


def _saved_with(scheduler: str, recorded: bool = True) -> dict:
    """A checkpoint's optimizer and schedule entries as a run with `scheduler` saves them; without
    the scheduler's class when not `recorded`, as before it was saved."""
    optimizer_factory, scheduler_factory = builders.build_optimization(
        compose_config(f"scheduler={scheduler}")
    )
    optimizer = optimizer_factory(params=[torch.nn.Parameter(torch.zeros(1))])
    built = scheduler_factory(optimizer=optimizer) if scheduler_factory else None
    saved = {
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [built.state_dict()] if built else [],
        OPTIMIZER_KIND_KEY: type(optimizer).__name__,
    }
    if recorded:
        saved[SCHEDULER_KIND_KEY] = type(built).__name__ if built else None
    return saved


def test_resuming_with_another_kind_of_scheduler_is_refused() -> None:
    # Lightning loaded a cosine's state into a StepLR (T_max and the cosine's last rate kept: neither
    # schedule), started a fresh StepLR from a checkpoint without one, and dropped a saved schedule
    # for scheduler=none; each trained on, exit 0.
    def resume(saved: dict, scheduler: str) -> None:
        optimizer, scheduler_factory = builders.build_optimization(compose_config(f"scheduler={scheduler}"))
        refuse_another_optimization("last.ckpt", saved, optimizer, scheduler_factory, [{}])

    way_on = (
        "; resume with the schedule the run began with, or train on from its weights with a fresh schedule: "
        "python finetune.py ckpt_path=last.ckpt finetune.head=extend"
    )
    for before, after, held, built in (
        ("none", "step", "no scheduler's state (scheduler=none)", "StepLR"),
        ("cosine", "step", "the state of scheduler CosineAnnealingLR", "StepLR"),
        ("step", "none", "the state of scheduler StepLR", "no scheduler (scheduler=none)"),
    ):
        with pytest.raises(UserError) as refused:
            resume(_saved_with(before), after)
        assert str(refused.value) == f"last.ckpt holds {held}, and this run builds {built}{way_on}"
    for kind in ("none", "step", "cosine"):
        resume(_saved_with(kind), kind)
    # A checkpoint from before the class was saved: one without a schedule held none, and one with a
    # schedule is left to resume as before.
    with pytest.raises(UserError, match=re.escape("holds no scheduler's state (scheduler=none), and")):
        resume(_saved_with("none", recorded=False), "step")
    resume(_saved_with("cosine", recorded=False), "step")


def test_a_refused_resume_leaves_the_run_folder_as_it_was(tmp_path: Path) -> None:
    # The refusal came once Lightning had opened the run's TensorBoard writer (a new event file with
    # a purge mark at the checkpoint's step) and config.yaml had been rewritten with the refused values.
    run = tmp_path / "run"
    short = ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false")
    run_script("train.py", *EXACT, *short, "logger=tensorboard", f"hydra.run.dir={run}")
    (run / "metrics.json").unlink()  # as if killed after its last checkpoint

    def contents(run: Path = run) -> dict[str, bytes]:
        files = (path for path in sorted(run.rglob("*")) if path.is_file() and path.name != "train.log")
        return {str(path.relative_to(run)): path.read_bytes() for path in files}

    before = contents()
    assert any(name.startswith("tensorboard/events.out.tfevents") for name in before)
    for change in ("optimizer.lr=0.2", "trainer.max_epochs=3"):
        result = run_script("train.py", f"resume={run}", change, check=False)
        assert result.returncode == 2, result.stderr
        assert "a resumed run keeps its checkpoint's" in result.stderr.splitlines()[-1]
        assert contents() == before
    # A setting a resume may change is recorded, even when no training is left to do.
    run_script("train.py", f"resume={run}", "data.eval_batch_size=100")
    assert "eval_batch_size: 100" in (run / "config.yaml").read_text()
    # A one-cycle horizon comes from the data and is checked only inside fit; config.yaml was
    # rewritten with the refused settings by then, and Lightning had opened a new TensorBoard event
    # file (its purge mark hid what the run logged after its checkpoint).
    cycled = tmp_path / "cycled"
    run_script(
        "train.py", *EXACT, *short, "scheduler=onecycle", "logger=tensorboard", f"hydra.run.dir={cycled}"
    )
    (cycled / "metrics.json").unlink()
    before = contents(cycled)
    assert any(name.startswith("tensorboard/events.out.tfevents") for name in before)
    result = run_script("train.py", f"resume={cycled}", "trainer.max_epochs=3", check=False)
    assert result.returncode == 2 and "total_steps=" in result.stderr.splitlines()[-1], result.stderr
    assert contents(cycled) == before
    # Accepted, the resume logs in new event files beside the run's.
    run_script("train.py", f"resume={cycled}", "trainer.max_epochs=1")
    assert any(
        name.startswith("tensorboard/events.out.tfevents") for name in set(contents(cycled)) - set(before)
    )


def test_resuming_with_other_batches_or_images_is_refused(tmp_path: Path) -> None:
    # A mid-epoch checkpoint resumed at another batch size ran an epoch of no batches; another data set
    # was trained on silently.
    overrides = (*EXACT, "trainer.limit_train_batches=2", "trainer.max_epochs=1")
    _fit_in_process(tmp_path / "run", overrides)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"

    def module(*changes: str):
        cfg = compose_config(*overrides, *changes, f"paths.output_dir={tmp_path / 'new'}")
        return builders.build_module(cfg, builders.build_datamodule(cfg).spec)

    message = f"{last} was trained with data.batch_size=64 (now 32); resume with the data settings the run"
    with pytest.raises(UserError, match=re.escape(message)):
        check_resumable(last, module("data.batch_size=32"))
    with pytest.raises(UserError, match=re.escape("data.augment='digits' (now 'none')")):
        check_resumable(last, module("data.augment=none"))
    # The data's shuffling seed sets the batches' order: another one must be refused too.
    with pytest.raises(UserError, match=re.escape(f"{last} was trained with data.seed=42 (now 8); resume")):
        check_resumable(last, module("data.seed=8"))
    free_changes = module("data.on_device=false", "data.eval_batch_size=100")
    with mock.patch("torch.load", wraps=torch.load) as load:
        check_resumable(last, free_changes)
    # The checkpoint's description is read with its tensors mapped: Lightning reads them itself.
    assert load.call_count == 1 and load.call_args.kwargs["mmap"] is True
    # Another model setting was refused with a message naming none: "holds a lenet5 with 10 classes
    # (1 channels), but this run builds a lenet5 with 10 classes (1 channels)".
    message = f"{last} was trained with model.dropout=0.0 (now 0.3); resume with the model settings"
    with pytest.raises(UserError, match=re.escape(message)):
        check_resumable(last, module("model.dropout=0.3"))
    with pytest.raises(
        UserError, match=re.escape(f"{last} holds a model=lenet5 with 10 classes (1 channels), but")
    ):
        check_resumable(last, module("model=resnet18"))
    # Images of another channel count are named as such, the two counts side by side.
    message = (
        f"{last} holds a model=lenet5 with 10 classes (1 channels), "
        "but this run builds a model=lenet5 with 10 "
    )
    with pytest.raises(UserError, match=re.escape(message + "classes (3 channels)")):
        check_resumable(last, module("data=synthetic", "data.channels=3"))


def test_a_continued_runs_changes_are_refused_before_a_run_folder_as_the_job_refuses_them(
    tmp_path: Path,
) -> None:
    # Refused only in the job, once Hydra had made its run folder; in a -m sweep from a checkpoint
    # (seed=1,2), after the points before it had run.
    overrides = (*EXACT, "trainer.limit_train_batches=2", "trainer.max_epochs=1")
    _fit_in_process(tmp_path / "run", overrides)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"

    def before_hydra(*given: str) -> None:
        refuse_a_changed_continuation([*overrides, f"ckpt_path={last}", *given], "ckpt_path", "train")

    def in_the_job(change: str) -> None:
        cfg = compose_config(*overrides, change, f"paths.output_dir={tmp_path / 'new'}")
        module = builders.build_module(cfg, builders.build_datamodule(cfg).spec)
        check_resumable(last, module, data_overrides([*overrides, change]))

    def in_fit(change: str) -> None:
        _fit_in_process(tmp_path / "run", (*overrides, change), resume=last)

    for change, job in (
        ("seed=1", in_the_job),
        ("data.batch_size=32", in_the_job),
        ("model.dropout=0.3", in_the_job),
        ("model=resnet18", in_the_job),
        ("optimizer=sgd", in_fit),
        ("optimizer.lr=0.2", in_fit),
        ("trainer.max_epochs=3", in_fit),  # the cosine's T_max
        ("scheduler=step", in_fit),
        ("scheduler=none", in_fit),
    ):
        with pytest.raises(UserError) as refused:
            job(change)
        with pytest.raises(UserError) as early:
            before_hydra(change)
        assert str(early.value) == str(refused.value), change
        if change == "data.batch_size=32":
            # The advised fine-tune trains on the data the command asked for, not finetune.py's default.
            advice = f"python finetune.py ckpt_path={last} {change} finetune.head=extend"
            assert str(early.value).endswith(advice)
    with pytest.raises(UserError) as early:
        refuse_a_changed_continuation(
            ["-m", *overrides, f"ckpt_path={last}", "seed=42,1"], "ckpt_path", "train"
        )
    assert str(early.value) == (
        f"sweep point #1 (seed=1) of 2: {last} was trained with data.seed=42 (now 1); resume with the data "
        f"settings the run began with, or train on from its weights with python finetune.py ckpt_path={last} "
        "finetune.head=extend"
    )
    # What a resume may change, and a rate scale_lr scales by the run's processes (known in the job).
    before_hydra("data.eval_batch_size=100", "data.on_device=false")
    before_hydra("scale_lr=true", "optimizer.lr=0.2")


def test_a_resume_compares_the_data_settings_both_sides_have_and_names_each_change(tmp_path: Path) -> None:
    last = tmp_path / "last.ckpt"
    saved = {"root": "/old/photos", "batch_size": 64, "augment": "standard", "image_size": 224}

    def now(**changes) -> SimpleNamespace:
        return SimpleNamespace(hparams={"data_config": {**saved, **changes}})

    # The images moved: the same set, read from another folder.
    refuse_other_data(last, {"data_config": saved}, now(root="/new/photos"))
    # A setting added since the run began is not a change; nor is anything, for a checkpoint that
    # predates the data section.
    refuse_other_data(last, {"data_config": saved}, now(cutmix_alpha=0.0))
    refuse_other_data(last, {}, now())
    # Every setting changed at once is named, so that one resume attempt finds them all.
    message = (
        f"{last} was trained with data.augment='standard' (now 'none'), data.batch_size=64 (now 32), "
        "data.image_size=224 (now 112); resume with the data settings the run began with"
    )
    with pytest.raises(UserError, match=re.escape(message)):
        refuse_other_data(last, {"data_config": saved}, now(augment="none", batch_size=32, image_size=112))


def test_a_data_refusal_in_the_job_advises_a_fine_tune_on_the_jobs_data(tmp_path: Path) -> None:
    # Refused in the job (a data section that resolves only there), without the job's data overrides
    # the advised fine-tune trained on finetune.py's default data set.
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from zoo.training.overrides import CONFIG_DIR

    last = tmp_path / "last.ckpt"
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        given = ["data=synthetic", "data.batch_size=32", "seed=1"]
        HydraConfig.instance().set_config(
            compose(config_name="train", overrides=given, return_hydra_config=True)
        )
    try:
        with pytest.raises(UserError) as refused:
            now = SimpleNamespace(hparams={"data_config": {"batch_size": 32}})
            refuse_other_data(last, {"data_config": {"batch_size": 64}}, now)
    finally:
        HydraConfig.instance().cfg = None
    advice = f"python finetune.py ckpt_path={last} data=synthetic data.batch_size=32 finetune.head=extend"
    assert str(refused.value).endswith(advice), str(refused.value)


def test_a_refused_optimizer_schedule_or_model_change_advises_a_fine_tune_on_the_runs_data(
    tmp_path: Path,
) -> None:
    # Their advice was "python finetune.py ckpt_path=... finetune.head=extend", which trained on
    # finetune.py's default data set (digits) instead of the images the run was trained on.
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from zoo.training.overrides import CONFIG_DIR

    overrides = (*EXACT, "trainer.limit_train_batches=2", "trainer.max_epochs=1", "data.batch_size=32")
    _fit_in_process(tmp_path / "run", overrides)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    advice = f"python finetune.py ckpt_path={last} data.batch_size=32 finetune.head=extend"
    for change in ("optimizer.lr=0.2", "trainer.max_epochs=3", "scheduler=step", "model.dropout=0.3"):
        with pytest.raises(UserError) as early:
            refuse_a_changed_continuation([*overrides, f"ckpt_path={last}", change], "ckpt_path", "train")
        assert str(early.value).endswith(advice), change
    # In the job, the data overrides are the Hydra job's own.
    given = [*overrides, "optimizer.lr=0.2"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        HydraConfig.instance().set_config(
            compose(config_name="train", overrides=given, return_hydra_config=True)
        )
    try:
        optimizer, scheduler = builders.build_optimization(compose_config(*given))
        saved = torch.load(last, map_location="cpu", weights_only=True)
        with pytest.raises(UserError) as refused:
            refuse_another_optimization(str(last), saved, optimizer, scheduler, [{}])
    finally:
        HydraConfig.instance().cfg = None
    assert str(refused.value).endswith(advice), str(refused.value)


def test_a_resumed_runs_settings_are_recorded_as_its_training_starts(tmp_path: Path) -> None:
    # Not only at the end of fit: a resumed run stopped part-way still names the settings it ran with.
    cfg = compose_config("logger=none", "data.eval_batch_size=100", f"paths.output_dir={tmp_path}")
    module = SimpleNamespace(hparams={"model": dict(cfg.model)})
    RecordResolvedConfig(cfg, tmp_path).on_train_start(SimpleNamespace(is_global_zero=False), module)
    assert not (tmp_path / "config.yaml").exists()  # rank 0's to write
    RecordResolvedConfig(cfg, tmp_path).on_train_start(SimpleNamespace(is_global_zero=True), module)
    assert "eval_batch_size: 100" in (tmp_path / "config.yaml").read_text()


def test_a_resumed_fine_tunes_record_names_the_network_of_its_checkpoint(tmp_path: Path) -> None:
    # Its config, rebuilt from the recorded overrides, leaves model to the checkpoint: config.yaml,
    # rewritten as the resume trains, named no network.
    cfg = compose_config(
        "logger=none", "resume_ckpt=last.ckpt", f"paths.output_dir={tmp_path}", config_name="finetune"
    )
    model = {"name": "lenet5", "num_classes": 3, "in_chans": 1, "small_input": True, "dropout": 0.0}
    trainer, module = SimpleNamespace(is_global_zero=True), SimpleNamespace(hparams={"model": model})
    RecordResolvedConfig(cfg, tmp_path).on_train_start(trainer, module)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["model"] == model


def _lock_held_by_another_process(lock: Path, pid_written: bool) -> subprocess.Popen:
    """A process holding `lock` as a run does, until its stdin closes; with `pid_written` false, one
    that has just taken it and not yet written its pid (the file is empty)."""
    write = "os.write(fd, str(os.getpid()).encode()); " if pid_written else ""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import fcntl, os, sys; fd = os.open({str(lock)!r}, os.O_CREAT | os.O_RDWR); "
            f"fcntl.flock(fd, fcntl.LOCK_EX); {write}print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize("pid_written", [True, False])
def test_a_run_folder_in_use_by_a_live_process_is_refused(tmp_path: Path, pid_written: bool) -> None:
    # Two commands started at once into one folder both found it free, and wrote one run over the
    # other; the one that read the other's lock file before its pid was in it took it over.
    lock = tmp_path / "run" / LOCK_NAME
    lock.parent.mkdir()
    holder = _lock_held_by_another_process(lock, pid_written)
    try:
        shown = str(holder.pid) if pid_written else "unknown"
        with pytest.raises(
            UserError,
            match=re.escape(f"run directory {tmp_path / 'run'} is in use by another process (pid {shown})"),
        ):
            hold_run_dir(tmp_path / "run")
    finally:
        holder.communicate("")


@pytest.mark.parametrize("left", ["killed", "reused", "empty", "garbage"])
def test_a_killed_runs_lock_is_taken_over(tmp_path: Path, left: str) -> None:
    # A pid is no proof of a holder: after a reboot or a container's restart a killed run's pid names
    # another live process, and its folder was refused for good.
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    content = {"killed": ended.stdout.strip(), "reused": str(os.getppid()), "empty": "", "garbage": "x"}
    lock = tmp_path / "run" / LOCK_NAME
    lock.parent.mkdir()
    lock.write_text(content[left])
    hold_run_dir(tmp_path / "run")
    assert lock.read_text() == str(os.getpid())
    hold_run_dir(tmp_path / "run")  # this process's own run folder, held already


def test_train_py_takes_over_a_killed_runs_folder_and_leaves_no_lock_behind(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_NAME).write_text("999999999")  # no such process
    # and a checkpoint it was writing as it died, its first: the new run starts in a clean folder
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / f".last.ckpt.123{TEMP_SUFFIX}").write_bytes(b"half")
    run_script(
        "train.py",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    assert (run_dir / "metrics.json").exists() and not (run_dir / LOCK_NAME).exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_a_new_run_into_an_unfinished_runs_folder_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for name in ("best.ckpt", "last.ckpt"):
        (checkpoints / name).write_bytes(name.encode())
    cfg = compose_config(f"paths.output_dir={tmp_path}", "logger=none")
    with pytest.raises(
        UserError,
        match=f"{tmp_path} holds the checkpoints of an unfinished run; choose another .*, or resume it",
    ):
        start_run(cfg)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["best.ckpt", "checkpoints", "last.ckpt"]
    assert (checkpoints / "best.ckpt").read_bytes() == b"best.ckpt"
    # On the command line it is refused before Hydra writes its .hydra/ record there; resuming is not.
    into_it, from_last = f"hydra.run.dir={tmp_path}", f"ckpt_path={checkpoints / 'last.ckpt'}"
    with pytest.raises(UserError, match="holds the checkpoints of an unfinished run"):
        check_overrides([into_it], resume_key="ckpt_path")
    check_overrides([into_it, from_last], resume_key="ckpt_path")  # train.py resuming it
    with pytest.raises(UserError, match="holds the checkpoints of an unfinished run"):
        check_overrides([into_it, from_last], resume_key="resume_ckpt")  # finetune.py: a source, not a resume


def test_a_run_is_resumed_only_by_the_entry_point_that_made_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    trained = _fake_run(runs, "t", ["trainer.max_epochs=5"])
    (trained / "config.yaml").write_text("task_name: train\n")
    # finetune.py resuming a train.py run ended in a traceback, after rewriting that run's records.
    with pytest.raises(UserError, match=f"{trained} is a run of train.py, not finetune.py; resume it with"):
        resolve_resume([f"resume={trained}"], "resume_ckpt", runs_dir=runs, task="finetune")
    with pytest.raises(UserError, match="is a run of train.py, not finetune.py"):
        resolve_resume([f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}"], runs_dir=runs, task="finetune")
    assert resolve_resume([f"resume={trained}"], runs_dir=runs, task="train")[-2:] == [
        f"hydra.run.dir={trained}",
        "hydra.output_subdir=null",
    ]
    # Hydra's own record names the entry point too, where the run's config.yaml is gone.
    tuned = _fake_run(runs, "f", [])
    (tuned / ".hydra" / "config.yaml").write_text("task_name: finetune\n")
    with pytest.raises(UserError, match=f"{tuned} is a run of finetune.py, not train.py"):
        resolve_resume([f"resume={tuned}"], runs_dir=runs, task="train")


def test_a_run_whose_records_name_no_entry_point_is_resumed(tmp_path: Path) -> None:
    # Records that do not say which entry point made a run (from before task_name was kept) are no
    # reason to refuse it: resume=RUN continues it, and resume=auto finds it.
    runs = tmp_path / "runs"
    run = _fake_run(runs, "old", ["trainer.max_epochs=5"])
    assert resolve_resume([f"resume={run}"], runs_dir=runs, task="train")[-2:] == [
        f"hydra.run.dir={run}",
        "hydra.output_subdir=null",
    ]
    assert find_interrupted_run(["trainer.max_epochs=5"], runs, task="train") == run


def test_train_py_refuses_to_train_on_from_a_finished_fine_tune(tmp_path: Path) -> None:
    # Rebuilt from the fine-tune's overrides with train.py's config, it ended in Lightning's traceback
    # (the fine-tune's optimizer has two parameter groups) or in an unknown key (finetune.head).
    tuned = _fake_run(
        tmp_path / "runs", "f", ["ckpt_path=/a/best.ckpt", "finetune.head=extend"], finished=True
    )
    (tuned / "config.yaml").write_text("task_name: finetune\n")
    last = tuned / "checkpoints" / "last.ckpt"
    with pytest.raises(
        UserError,
        match=f"{tuned} is a finished run of finetune.py, not train.py; .*"
        f"python finetune.py ckpt_path={last} finetune.head=extend",
    ):
        resolve_resume([f"ckpt_path={last}"], task="train")


def test_resume_auto_matches_a_fine_tune_on_its_source(tmp_path: Path) -> None:
    # finetune.py's ckpt_path is what it trains: a fine-tune of another source is another run.
    runs = tmp_path / "runs"
    tuned = _fake_run(runs, "f", ["ckpt_path=/a/best.ckpt", "data=imagefolder"])
    (tuned / "config.yaml").write_text("task_name: finetune\n")
    mine = ["ckpt_path=/a/best.ckpt", "data=imagefolder"]
    assert find_interrupted_run(mine, runs, resume_key="resume_ckpt", task="finetune") == tuned
    with pytest.raises(UserError, match="no unfinished run"):
        find_interrupted_run(["ckpt_path=/b/best.ckpt", "data=imagefolder"], runs, "resume_ckpt", "finetune")
    # Nor does train.py's resume=auto pick a fine-tune.
    with pytest.raises(UserError, match="no unfinished run"):
        find_interrupted_run(["data=imagefolder"], runs, task="train")


# Lightning 2.6 restarts a step-based run (trainer.max_steps) from a checkpoint written in an epoch's
# end hooks by ending that epoch again, which shifts the data order of every later epoch: the README's
# bit-identical resume does not hold there, and the run says so.
def test_a_step_based_run_resumed_from_an_epochs_end_says_it_will_not_match(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    common = ("trainer.limit_train_batches=4", "trainer.limit_val_batches=1", "logger=none", "test=false")
    run_script("train.py", *common, "trainer.max_steps=4", f"hydra.run.dir={first}")
    last = first / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    assert _resumed_into_an_ended_epoch(SimpleNamespace(max_steps=8), saved)
    assert not _resumed_into_an_ended_epoch(SimpleNamespace(max_steps=-1), saved)
    resumed = run_script(
        "train.py", *common, "trainer.max_steps=8", f"ckpt_path={last}", f"hydra.run.dir={second}"
    )
    assert "note: Lightning 2.6 resumes a run with trainer.max_steps" in resumed.stdout


def _with_progress(run: Path, epochs: int, step: int) -> Path:
    """`run`'s last.ckpt, made to say how far training got as Lightning's does: an epoch-end save of
    epoch N counts N epochs processed and N - 1 completed."""
    last = run / "checkpoints" / "last.ckpt"
    progress = {"processed": epochs, "completed": epochs - 1}
    torch.save({"global_step": step, "loops": {"fit_loop": {"epoch_progress": {"total": progress}}}}, last)
    return last


def test_a_run_continued_with_another_kind_of_scheduler_is_refused_before_a_run_folder(
    tmp_path: Path,
) -> None:
    # A fresh StepLR was started from a run trained without a schedule, and trained on with exit 0.
    run = tmp_path / "a"
    short = ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1")
    run_script("train.py", *EXACT, *short, "test=false", "scheduler=none", f"hydra.run.dir={run}")
    last = run / "checkpoints" / "last.ckpt"
    work = tmp_path / "work"
    work.mkdir()
    result = run_script(
        "train.py", f"ckpt_path={last}", "scheduler=step", "trainer.max_epochs=2", check=False, cwd=work
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: {last} holds no scheduler's state (scheduler=none), and this run builds StepLR; resume "
        "with the schedule the run began with, or train on from its weights with a fresh schedule: "
        f"python finetune.py ckpt_path={last} finetune.head=extend"
    )
    assert list(work.iterdir()) == []


def test_a_finished_runs_checkpoint_with_nothing_left_to_train_is_refused_before_a_run_folder(
    tmp_path: Path,
) -> None:
    # It made a new time-stamped folder, trained nothing (max_epochs already reached) and tested again.
    run = tmp_path / "a"
    short = ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1")
    run_script("train.py", *EXACT, *short, "test=false", f"hydra.run.dir={run}")
    last = run / "checkpoints" / "last.ckpt"
    work = tmp_path / "work"
    work.mkdir()
    result = run_script("train.py", f"ckpt_path={last}", check=False, cwd=work)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: run {run} already finished, and {last} has trained 1 epoch of this command's "
        "trainer.max_epochs=1: nothing is left to train; train on from its weights with a fresh schedule: "
        f"python finetune.py ckpt_path={last} finetune.head=extend, or test it: "
        f"python evaluate.py ckpt_path={run / 'checkpoints' / 'best.ckpt'}"  # the weights its test used
    )
    assert list(work.iterdir()) == []
    # The run's cosine, its length kept: scheduler=none trained on at the rate the cosine had reached (0).
    more = ("trainer.max_epochs=2", "scheduler.factory.T_max=1")
    # So is such a point of a sweep, before any point runs: it made a folder that only tested again
    # (and before that, the run's recorded overrides put ahead of -m ended in Hydra's usage text).
    result = run_script(
        "train.py",
        "-m",
        f"ckpt_path={last}",
        "trainer.max_epochs=2,1",
        "scheduler=none",
        check=False,
        cwd=work,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"error: sweep point #1 (trainer.max_epochs=1) of 2: run {run} already finished, and {last} has "
        "trained 1 epoch of this command's trainer.max_epochs=1: nothing is left to train; "
    )
    assert list(work.iterdir()) == []
    # A point that changes what the checkpoint continues, refused in its job once Hydra had made its
    # folder, after the points before it had run.
    result = run_script("train.py", "-m", f"ckpt_path={last}", "seed=1,2", *more, check=False, cwd=work)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"error: sweep point #0 (seed=1) of 2: {last} was trained with data.seed=42 (now 1); resume with "
    )
    assert list(work.iterdir()) == []
    # A higher limit trains on from it, in a new folder, as before.
    result = run_script("train.py", f"ckpt_path={last}", *more, cwd=work)
    assert "already finished: training on from" in result.stdout
    assert [p.name for p in work.iterdir()] == ["runs"]


def test_a_finished_run_is_measured_against_the_limits_its_resume_composes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # An experiment file's max_epochs (8), under a one-cycle schedule that a higher limit would change.
    run = _fake_run(runs, "x", ["experiment=resnet18_digits"], finished=True)
    last = _with_progress(run, epochs=8, step=160)
    with pytest.raises(UserError, match=re.escape("trained 8 epochs of this command's trainer.max_epochs=8")):
        resolve_resume([f"ckpt_path={last}"], task="train")
    # A higher limit would lengthen that schedule, which fit refuses once a new run folder exists.
    more = [f"ckpt_path={last}", "trainer.max_epochs=9"]
    with pytest.raises(UserError, match=re.escape("follows trainer.max_epochs (8 in run")):
        resolve_resume(more, task="train")
    # Stopped early (3 of its 8 epochs), it trains on under its own schedule.
    _with_progress(run, epochs=3, step=60)
    assert resolve_resume([f"ckpt_path={last}"], task="train") == [
        "experiment=resnet18_digits",
        f"ckpt_path={last}",
    ]
    # The run's recorded limit, and a schedule that does not follow it: the command again, with more.
    run = _fake_run(runs, "y", ["trainer.max_epochs=3", "scheduler=step"], finished=True)
    last = _with_progress(run, epochs=3, step=60)
    again = f"python train.py seed=1 ckpt_path={last} trainer.max_epochs=4, or test it"
    with pytest.raises(UserError, match=re.escape(f"train on with a higher limit: {again}")):
        resolve_resume(["seed=1", f"ckpt_path={last}"], task="train")
    more = [f"ckpt_path={last}", "trainer.max_epochs=4"]
    assert resolve_resume(more, task="train") == ["scheduler=step", *more]
    # A step limit, reached in the middle of an epoch.
    _with_progress(run, epochs=2, step=50)
    with pytest.raises(UserError, match=re.escape("trained 50 steps of this command's trainer.max_steps=50")):
        resolve_resume([f"ckpt_path={last}", "trainer.max_steps=50"], task="train")
    more = [f"ckpt_path={last}", "trainer.max_steps=51"]
    assert resolve_resume(more, task="train") == ["trainer.max_epochs=3", "scheduler=step", *more]
    # Both limits reached: both raised, or the suggested command would be refused for the other.
    _with_progress(run, epochs=3, step=60)
    again = f"python train.py ckpt_path={last} trainer.max_epochs=4 trainer.max_steps=120, or test it"
    with pytest.raises(UserError, match=re.escape(again)) as refused:
        resolve_resume([f"ckpt_path={last}", "trainer.max_steps=60"], task="train")
    assert "trained 3 epochs of this command's trainer.max_epochs=3" in str(refused.value)
    # Both reached where the schedule follows one of them (the default cosine, max_epochs): raising
    # that one would be refused too, so the suggestion is a fresh schedule.
    cosine = _with_progress(_fake_run(runs, "z", ["trainer.max_epochs=3"], finished=True), epochs=3, step=60)
    with pytest.raises(UserError, match="with a fresh schedule: python finetune.py"):
        resolve_resume([f"ckpt_path={cosine}", "trainer.max_steps=60"], task="train")
    # A checkpoint that does not say how far it got trains on, as does a fast_dev_run.
    recorded = ["trainer.max_epochs=3", "scheduler=step"]
    for given, saved in (
        ([f"ckpt_path={last}"], {"global_step": 60}),
        ([f"ckpt_path={last}", "trainer.fast_dev_run=true"], None),
    ):
        if saved is None:
            _with_progress(run, epochs=3, step=60)
        else:
            torch.save(saved, last)
        assert resolve_resume(given, task="train") == [*recorded, *given]


def _with_time_trained(last: Path, seconds: float) -> Path:
    """`last`, made to hold Lightning's Timer state after `seconds` of training, as a run with
    trainer.max_time saves it."""
    saved = torch.load(last, weights_only=True)
    saved["callbacks"] = {"Timer": {"time_elapsed": {"train": seconds, "validate": 0.5, "test": 0}}}
    torch.save(saved, last)
    return last


def _assert_refused_for_its_spent_time(last: Path, spent: str, higher: str) -> None:
    """Resuming `last` with its recorded trainer.max_time=`spent` is refused, advising `higher`."""
    again = f"python train.py ckpt_path={last} trainer.max_time={higher}, or test it"
    with pytest.raises(UserError, match=re.escape(f"train on with a higher limit: {again}")) as refused:
        resolve_resume([f"ckpt_path={last}"], task="train")
    assert f"has trained for {spent} of this command's trainer.max_time={spent}" in str(refused.value)


def test_a_finished_run_whose_time_limit_is_spent_is_refused_before_a_run_folder(tmp_path: Path) -> None:
    # Lightning's Timer restores the time trained from the checkpoint and stops a resumed run at once
    # when none is left: a new folder that trained nothing and only tested again.
    recorded = ["trainer.max_time=00:00:01:00", "trainer.max_epochs=100", "scheduler=step"]
    run = _fake_run(tmp_path / "runs", "t", recorded, finished=True)
    last = _with_time_trained(_with_progress(run, epochs=5, step=100), 60.4)
    _assert_refused_for_its_spent_time(last, spent="00:00:01:00", higher="00:00:02:00")
    # Time left, a higher limit, no limit, or more epochs that min_epochs holds it to: it trains on.
    for given in (["trainer.max_time=00:00:02:00"], ["trainer.max_time=null"], ["trainer.min_epochs=6"]):
        assert resolve_resume([f"ckpt_path={last}", *given], task="train")[-len(given) :] == given
    _with_time_trained(last, 59.9)
    assert resolve_resume([f"ckpt_path={last}"], task="train") == [*recorded, f"ckpt_path={last}"]
    # A run without a time limit saved no Timer state: one given now starts from nothing.
    run = _fake_run(tmp_path / "runs", "u", ["trainer.max_epochs=100", "scheduler=step"], finished=True)
    last = _with_progress(run, epochs=5, step=100)
    given = [f"ckpt_path={last}", "trainer.max_time=00:00:00:01"]
    assert resolve_resume(given, task="train") == ["trainer.max_epochs=100", "scheduler=step", *given]


def test_a_spent_time_limit_counts_days_and_holds_only_until_min_epochs_or_min_steps(tmp_path: Path) -> None:
    # A day is 24 hours, in the limit read and in the advice printed; and a minimum that the
    # checkpoint has reached no longer holds the run, which Lightning would stop at once.
    recorded = ["trainer.max_time=01:00:00:00", "trainer.max_epochs=100", "scheduler=step"]
    run = _fake_run(tmp_path / "runs", "t", recorded, finished=True)
    last = _with_time_trained(_with_progress(run, epochs=5, step=100), 86400.5)
    _assert_refused_for_its_spent_time(last, spent="01:00:00:00", higher="02:00:00:00")
    for reached in ("trainer.min_epochs=5", "trainer.min_steps=100"):
        with pytest.raises(UserError, match="nothing is left to train"):
            resolve_resume([f"ckpt_path={last}", reached], task="train")
    assert (
        resolve_resume([f"ckpt_path={last}", "trainer.min_steps=101"], task="train")[-1]
        == "trainer.min_steps=101"
    )


def test_a_tally_saved_by_another_number_of_processes_resumes_with_the_mean_share() -> None:
    # Each process takes the mean row, so that the epoch's figures are those of all its batches:
    # with one row alone, they were that process's figures.
    cfg = compose_config(*EXACT)
    module = builders.build_module(cfg, builders.build_datamodule(cfg).spec)
    module.on_load_checkpoint(
        {TRAIN_TALLY_KEY: {"sums": torch.tensor([[4.0, 1.0], [8.0, 3.0]]), "seen": [10, 20]}}
    )
    assert module.train_sums.tolist() == [6.0, 2.0] and module.train_seen == 15
    # A checkpoint from before the rows: one process's tally, as it was.
    module.on_load_checkpoint({TRAIN_TALLY_KEY: {"sums": torch.tensor([5.0, 2.0]), "seen": 7}})
    assert module.train_sums.tolist() == [5.0, 2.0] and module.train_seen == 7


def test_a_schedule_built_by_a_function_is_compared_by_its_kind_only_once_built() -> None:
    # Its class is known only once it has built one (on_fit_start compares it then); taken for
    # another kind before, every resume with such a schedule was refused.
    def cosine(optimizer, T_max):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max)

    refuse_another_scheduler(
        "last.ckpt", "CosineAnnealingLR", scheduler_kind(functools.partial(cosine, T_max=3))
    )
    step = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1)
    with pytest.raises(
        UserError, match="holds the state of scheduler CosineAnnealingLR, and this run builds StepLR"
    ):
        refuse_another_scheduler("last.ckpt", "CosineAnnealingLR", scheduler_kind(step))


def test_train_py_refuses_a_finished_runs_checkpoint_with_its_time_spent_and_trains_on_as_advised(
    tmp_path: Path,
) -> None:
    # Against Lightning's own Timer and checkpoint, which the test above stands in for.
    run = tmp_path / "a"
    timed = ("trainer.max_time=00:00:00:01", "trainer.max_epochs=1000", "scheduler=step")
    run_script(
        "train.py", "trainer.accelerator=cpu", "logger=none", *timed, "test=false", f"hydra.run.dir={run}"
    )
    last = run / "checkpoints" / "last.ckpt"
    first_steps = torch.load(last, weights_only=True)["global_step"]
    work = tmp_path / "work"
    work.mkdir()
    result = run_script("train.py", f"ckpt_path={last}", check=False, cwd=work)
    assert result.returncode == 2, result.stderr
    line = result.stderr.splitlines()[-1]
    assert re.fullmatch(
        re.escape(f"error: run {run} already finished, and {last} has trained for ")
        + r"00:00:00:\d\d"
        + re.escape(
            " of this command's trainer.max_time=00:00:00:01: nothing is left to train; train on with "
        )
        + re.escape(f"a higher limit: python train.py ckpt_path={last} trainer.max_time=")
        + r"00:00:00:\d\d, or test it: python evaluate.py ckpt_path=\S+",
        line,
    ), line
    assert list(work.iterdir()) == []
    advised = shlex.split(line.partition("a higher limit: ")[2].partition(", or test it")[0])
    result = run_script("train.py", *advised[2:], "test=false", cwd=work)
    (new_run,) = (work / "runs" / "train").iterdir()
    assert torch.load(new_run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] > first_steps


def test_a_sweep_from_a_finished_run_is_refused_before_any_point_when_one_would_be(tmp_path: Path) -> None:
    # Every point went to its job: one with nothing left to train made a folder that only tested
    # again, one that lengthens the schedule was refused there, after the points before it had run.
    run = _fake_run(tmp_path / "runs", "s", ["trainer.max_epochs=3", "scheduler=step"], finished=True)
    last = _with_progress(run, epochs=3, step=60)
    again = f"python train.py seed=1 ckpt_path={last} trainer.max_epochs=4, or test it"
    with pytest.raises(UserError, match=re.escape(f"train on with a higher limit: {again}")) as refused:
        resolve_resume(["-m", "seed=1", f"ckpt_path={last}", "trainer.max_epochs=4,3"], task="train")
    assert str(refused.value).startswith(f"sweep point #1 (trainer.max_epochs=3) of 2: run {run} already")
    # Nothing swept, -m runs the command once, and is refused as the command alone is.
    with pytest.raises(UserError, match=r"^run .* nothing is left to train; .* python train.py -m ckpt_path"):
        resolve_resume(["-m", f"ckpt_path={last}"], task="train")
    # The run's recorded overrides go after -m, where Hydra's command line takes them.
    given = [f"ckpt_path={last}", "trainer.max_epochs=4,5"]
    assert resolve_resume(["-m", *given], task="train") == ["-m", "scheduler=step", *given]
    # As do leading flags written with their value: an override before one broke Hydra's list too.
    flag = f"--config-dir={tmp_path}"
    assert resolve_resume([flag, "-m", *given], task="train") == [flag, "-m", "scheduler=step", *given]
    cosine = _fake_run(tmp_path / "runs", "c", ["trainer.max_epochs=3"], finished=True)
    last = _with_progress(cosine, epochs=2, step=40)
    with pytest.raises(UserError, match=re.escape("sweep point #1 (trainer.max_epochs=4) of 2: ")) as refused:
        resolve_resume(["-m", f"ckpt_path={last}", "trainer.max_epochs=3,4"], task="train")
    assert "follows trainer.max_epochs (3 in run" in str(refused.value)


# Lightning's key for EarlyStopping's state on val/acc (configs/callbacks/early_stopping.yaml).
_EARLY_STOPPING_KEY = "EarlyStopping{'monitor': 'val/acc', 'mode': 'max'}"


def _stopped_early(run: Path, epochs: int, wait_count: int, patience: int) -> Path:
    """`run`'s last.ckpt, made to say early stopping ended it after `epochs` epochs, with `wait_count`
    validations without improvement at `patience`, as Lightning's EarlyStopping saves its state."""
    last = _with_progress(run, epochs=epochs, step=20 * epochs)
    saved = torch.load(last, weights_only=True)
    state = {"wait_count": wait_count, "stopped_epoch": epochs - 1, "best_score": torch.tensor(0.9)}
    saved["callbacks"] = {_EARLY_STOPPING_KEY: {**state, "patience": patience}}
    torch.save(saved, last)
    return last


def test_a_finished_run_that_early_stopping_ended_is_refused_before_a_run_folder_unless_it_goes_on(
    tmp_path: Path,
) -> None:
    # Lightning restores the count of validations without improvement: trained on, the run stopped
    # again at its first validation that did not improve, in a new folder, with exit 0.
    recorded = ["callbacks=early_stopping", "callbacks.early_stopping.patience=2", "trainer.max_epochs=10"]
    run = _fake_run(tmp_path / "runs", "e", recorded, finished=True)
    last = _stopped_early(run, epochs=4, wait_count=2, patience=2)
    with pytest.raises(UserError) as refused:
        resolve_resume([f"ckpt_path={last}"], task="train")
    assert str(refused.value) == (
        f"run {run} stopped early at epoch 4: val/acc had not improved for 2 validations "
        f"(callbacks.early_stopping.patience=2), and {last} carries that count, so training on would "
        "stop again at its first validation without improvement; train on with a patience above 2: "
        f"python train.py ckpt_path={last} callbacks.early_stopping.patience=4, or without early "
        f"stopping: python train.py ckpt_path={last} callbacks.early_stopping=null, or test it: "
        f"python evaluate.py ckpt_path={last}"
    )
    # Each point of a sweep, before the first one runs.
    point = re.escape("sweep point #1 (callbacks.early_stopping.patience=2) of 2: run ")
    with pytest.raises(UserError, match=f"^{point}"):
        resolve_resume(["-m", f"ckpt_path={last}", "callbacks.early_stopping.patience=3,2"], task="train")
    # A patience above the count, no early stopping, another monitor (whose count starts afresh), or
    # a minimum the run has not reached, which Lightning holds it to: it trains on.
    for given in (
        ["callbacks.early_stopping.patience=3"],
        ["callbacks.early_stopping=null"],
        ["callbacks.early_stopping.monitor=val/loss", "callbacks.early_stopping.mode=min"],
        ["trainer.min_epochs=5"],
    ):
        assert resolve_resume([f"ckpt_path={last}", *given], task="train")[-len(given) :] == given
    # A fine-tune from it starts with fresh callbacks, and a count of its own.
    fine_tune = [f"ckpt_path={last}"]
    assert resolve_resume(fine_tune, resume_key="resume_ckpt", task="finetune") == fine_tune


def test_a_run_early_stopping_ended_at_its_minimum_epochs_or_steps_is_refused(tmp_path: Path) -> None:
    # Lightning stops a run once it has trained min_epochs epochs and min_steps steps, not after them:
    # trained on from there, the run stopped again at its first validation without improvement.
    recorded = ["callbacks=early_stopping", "callbacks.early_stopping.patience=2", "trainer.max_epochs=10"]
    run = _fake_run(tmp_path / "runs", "e", recorded, finished=True)
    last = _stopped_early(run, epochs=4, wait_count=2, patience=2)
    for minimum in ("trainer.min_epochs=4", "trainer.min_steps=80"):
        with pytest.raises(UserError, match=f"^run {re.escape(str(run))} stopped early at epoch 4: "):
            resolve_resume([f"ckpt_path={last}", minimum], task="train")


# Early stopping that no validation after the first can satisfy: each run stops at a known epoch.
_NEVER_IMPROVES = (
    "callbacks=early_stopping",
    "+callbacks.early_stopping.min_delta=1.0",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "scheduler=none",
)


def test_train_py_refuses_a_run_early_stopping_ended_and_trains_on_with_the_patience_given(
    tmp_path: Path,
) -> None:
    run = tmp_path / "a"
    stopping = (*_NEVER_IMPROVES, "callbacks.early_stopping.patience=1", "trainer.max_epochs=6")
    run_script("train.py", *EXACT, *stopping, "test=false", f"hydra.run.dir={run}")
    last = run / "checkpoints" / "last.ckpt"
    assert epoch_progress(torch.load(last, weights_only=True))["processed"] == 2
    work = tmp_path / "work"
    work.mkdir()
    result = run_script("train.py", f"ckpt_path={last}", check=False, cwd=work)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: run {run} stopped early at epoch 2: val/acc had not improved for 1 validation "
        f"(callbacks.early_stopping.patience=1), and {last} carries that count, so training on would "
        "stop again at its first validation without improvement; train on with a patience above 1: "
        f"python train.py ckpt_path={last} callbacks.early_stopping.patience=2, or without early "
        f"stopping: python train.py ckpt_path={last} callbacks.early_stopping=null, or test it: "
        f"python evaluate.py ckpt_path={run / 'checkpoints' / 'best.ckpt'}"
    ]
    assert list(work.iterdir()) == []
    # Lightning restored the checkpoint's patience (1) over the one given: the run stopped after one
    # more epoch, where a patience of 3 allows two more validations without improvement.
    more_patience = (*EXACT, *stopping, "callbacks.early_stopping.patience=3")
    trained_on, _ = _fit_in_process(work / "on", more_patience, resume=last)
    assert trained_on.current_epoch == 4


def test_a_run_early_stopping_ended_resumed_before_its_test_trains_no_more(tmp_path: Path) -> None:
    # Killed while testing, it resumed with one more epoch (the Trainer saves no word of the stop),
    # and its test read that epoch's best.ckpt, not the one the unbroken run tested.
    overrides = (*EXACT, *_NEVER_IMPROVES, "callbacks.early_stopping.patience=1", "trainer.max_epochs=6")
    stopped, _ = _fit_in_process(tmp_path, overrides)
    assert stopped.global_step == 4
    best = tmp_path / "checkpoints" / "best.ckpt"
    tested = _identity(best)
    resumed, _ = _fit_in_process(tmp_path, overrides, resume=tmp_path / "checkpoints" / "last.ckpt")
    assert resumed.global_step == 4
    assert _identity(best) == tested


def test_a_run_stopped_before_early_stopping_ended_it_resumes_to_the_unbroken_runs_end(
    tmp_path: Path,
) -> None:
    # Stopped in epoch 3 with one validation without improvement counted: restored, the count ends the
    # resumed run after that epoch, as it ends the unbroken one; afresh, it went on to epoch 4.
    overrides = (*EXACT, *_NEVER_IMPROVES, "callbacks.early_stopping.patience=2", "trainer.max_epochs=6")
    _stopped_and_resumed_as_unbroken(
        tmp_path, overrides, _SigtermAt(step=5), SIGTERMException, saved_step=5, final_step=6
    )


def _run_started_in(started: Path, runs: Path, overrides: list[str]) -> tuple[Path, Path, list[str]]:
    """A run recorded as started in the working folder `started`: its folder, its last.ckpt, and the
    overrides a resume of it from elsewhere ends with."""
    run = _fake_run(runs, "1", overrides)
    (run / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    cwd: {started}\n")
    last = run / "checkpoints" / "last.ckpt"
    return run, last, [f"ckpt_path={last}", f"hydra.run.dir={run}", "hydra.output_subdir=null"]


def test_a_recorded_relative_data_root_is_the_folder_the_run_read(tmp_path: Path, monkeypatch) -> None:
    started, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (started / "images").mkdir(parents=True)
    elsewhere.mkdir()
    run, last, tail = _run_started_in(
        started, tmp_path / "runs", ["data=imagefolder", "data.root=images", "paths.data_dir=gone"]
    )
    monkeypatch.chdir(elsewhere)
    # A folder the run's starting folder no longer holds is left as written, for the data to report.
    assert resolve_resume([f"ckpt_path={last}"]) == [
        "data=imagefolder",
        f"data.root={started / 'images'}",
        "paths.data_dir=gone",
        *tail,
    ]
    # Given again on the command line, it is the command's, as any other key.
    assert resolve_resume([f"ckpt_path={last}", "data.root=mine"])[:3] == [
        "data=imagefolder",
        "paths.data_dir=gone",
        f"ckpt_path={last}",
    ]
    # Resumed from where it started, or with no record of where that was, the record is re-applied as is.
    monkeypatch.chdir(started)
    assert resolve_resume([f"ckpt_path={last}"])[1] == "data.root=images"
    (run / ".hydra" / "hydra.yaml").unlink()
    monkeypatch.chdir(elsewhere)
    assert resolve_resume([f"ckpt_path={last}"])[1] == "data.root=images"


def test_a_finished_runs_checkpoint_trained_on_into_a_named_folder_is_built_and_refused_as_without_it(
    tmp_path: Path,
) -> None:
    # hydra.run.dir=NEW skipped the finished run's recorded overrides (it trained 30 epochs of the
    # default cosine, not its own settings) and the refusals: a folder was made that trained nothing.
    run = _fake_run(tmp_path / "runs", "x", ["trainer.max_epochs=3", "scheduler=step"], finished=True)
    last = _with_progress(run, epochs=3, step=60)
    new = f"hydra.run.dir={tmp_path / 'new'}"
    again = f"python train.py {new} ckpt_path={last} trainer.max_epochs=4, or test it"
    with pytest.raises(UserError, match=re.escape(f"train on with a higher limit: {again}")):
        resolve_resume([new, f"ckpt_path={last}"], task="train")
    more = [new, f"ckpt_path={last}", "trainer.max_epochs=4"]
    assert resolve_resume(more, task="train") == ["scheduler=step", *more]


def test_a_step_limits_advice_is_a_command_that_runs_as_printed(tmp_path: Path) -> None:
    # It was "trainer.max_steps=N (N > 60)": pasted, the shell stopped at the parenthesis.
    run = _fake_run(tmp_path / "runs", "x", ["trainer.max_steps=60", "scheduler=step"], finished=True)
    last = _with_progress(run, epochs=3, step=60)
    with pytest.raises(
        UserError, match=re.escape(f"python train.py ckpt_path={last} trainer.max_steps=120, or")
    ):
        resolve_resume([f"ckpt_path={last}"], task="train")


def test_a_finished_run_without_its_record_of_overrides_is_not_measured_against_the_defaults(
    tmp_path: Path,
) -> None:
    # With no .hydra/overrides.yaml its limits were taken for the config's defaults: "follows
    # trainer.max_epochs (30 in run ...)" for a run that had trained 1 epoch of 1.
    run = _fake_run(tmp_path / "runs", "x", [], finished=True)
    (run / ".hydra" / "overrides.yaml").unlink()
    last = _with_progress(run, epochs=1, step=20)
    given = [f"ckpt_path={last}", "trainer.max_epochs=2"]
    assert resolve_resume(given, task="train") == given


def test_the_configs_own_relative_data_dir_is_the_folder_the_run_read(tmp_path: Path, monkeypatch) -> None:
    # data=imagefolder alone reads ${paths.data_dir}/images, data/images of the working folder: in no
    # record of overrides, so resumed from another folder the run read that folder's images.
    started, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (started / "data" / "images").mkdir(parents=True)
    (elsewhere / "data" / "images").mkdir(parents=True)
    run, last, tail = _run_started_in(started, tmp_path / "runs", ["data=imagefolder"])
    config = "paths:\n  data_dir: data\ndata:\n  root: ${paths.data_dir}/images\n"
    (run / ".hydra" / "config.yaml").write_text(config)
    monkeypatch.chdir(elsewhere)
    assert resolve_resume([f"ckpt_path={last}"]) == [
        "data=imagefolder",
        f"paths.data_dir={started / 'data'}",
        *tail,
    ]
    # Either key given (or recorded) is the command's; from where it started nothing is added; nor
    # for data whose root does not follow paths.data_dir (digits are built in).
    assert resolve_resume([f"ckpt_path={last}", "data.root=mine"])[0:2] == [
        "data=imagefolder",
        f"ckpt_path={last}",
    ]
    monkeypatch.chdir(started)
    assert resolve_resume([f"ckpt_path={last}"]) == ["data=imagefolder", *tail]
    monkeypatch.chdir(elsewhere)
    (run / ".hydra" / "config.yaml").write_text("paths:\n  data_dir: data\ndata:\n  name: digits\n")
    assert resolve_resume([f"ckpt_path={last}"]) == ["data=imagefolder", *tail]


def test_the_fine_tune_a_refusal_suggests_trains_on_the_runs_own_data(tmp_path: Path) -> None:
    # It was "python finetune.py ckpt_path=... finetune.head=extend": finetune.py's own default data
    # (digits), not the images the run was trained on.
    recorded = ["data=imagefolder", "data.root='i m,g'", "trainer.max_epochs=1"]
    run = _fake_run(tmp_path / "runs", "x", recorded, finished=True)
    last = _with_progress(run, epochs=1, step=20)
    with pytest.raises(UserError, match="with a fresh schedule: python finetune.py") as raised:
        resolve_resume([f"ckpt_path={last}", "data.image_size=32"], task="train")
    command = str(raised.value).partition("fresh schedule: ")[2].partition(", or test it")[0]
    assert shlex.split(command) == [
        "python",
        "finetune.py",
        f"ckpt_path={last}",
        "data=imagefolder",
        "data.root='i m,g'",
        "data.image_size=32",
        "finetune.head=extend",
    ]


def test_a_limit_given_again_is_replaced_in_the_command_to_train_on_not_repeated(tmp_path: Path) -> None:
    # The advice is copied as printed: the reached limit left in beside the higher one reads as two
    # values for one key, and only Hydra's last-one-wins rule made the command mean the higher one.
    run = _fake_run(tmp_path / "runs", "y", ["trainer.max_epochs=3", "scheduler=step"], finished=True)
    last = _with_progress(run, epochs=3, step=60)
    with pytest.raises(UserError) as raised:
        resolve_resume(["trainer.max_epochs=3", f"ckpt_path={last}"], task="train")
    assert f"python train.py ckpt_path={last} trainer.max_epochs=4, or test it" in str(raised.value)


def test_a_one_cycle_run_trained_on_under_another_step_limit_is_refused_before_a_run_folder(
    tmp_path: Path,
) -> None:
    # OneCycle's total_steps follows the step limit as much as the epoch one: a new max_steps was
    # refused only inside fit, after Hydra had made a run folder for it.
    run = _fake_run(tmp_path / "runs", "c", ["scheduler=onecycle", "trainer.max_steps=100"], finished=True)
    last = _with_progress(run, epochs=1, step=50)
    with pytest.raises(UserError, match=re.escape("follows trainer.max_steps (100 in run")):
        resolve_resume([f"ckpt_path={last}", "trainer.max_steps=200"], task="train")


def test_a_finished_run_whose_record_no_longer_composes_is_left_to_train_on(tmp_path: Path) -> None:
    # Its own limits unknown (model=gone is no model now), there is no schedule length to compare
    # with: the command is left to compose, or be refused, as it would be without the check.
    run = _fake_run(tmp_path / "runs", "g", ["model=gone"], finished=True)
    last = _with_progress(run, epochs=3, step=60)
    given = [f"ckpt_path={last}", "model=lenet5"]
    assert resolve_resume(given, task="train") == given


def test_a_recorded_data_path_that_needs_quoting_names_the_folder_the_run_read(
    tmp_path: Path, monkeypatch
) -> None:
    # Recorded quoted (a comma is a list to Hydra), the value was compared with its quotes and left
    # to name a folder of the resuming command's; rewritten unquoted, it would be a sweep there. A key
    # given with Hydra's ++ is the same key.
    from hydra.core.override_parser.overrides_parser import OverridesParser

    started, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (started / "im,ages").mkdir(parents=True)
    (started / "data").mkdir()
    elsewhere.mkdir()
    recorded = ["data=imagefolder", "data.root='./im,ages'", "++paths.data_dir=data"]  # ++: set or add
    run = _fake_run(tmp_path / "runs", "1", recorded)
    (run / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    cwd: {started}\n")
    last = run / "checkpoints" / "last.ckpt"
    monkeypatch.chdir(elsewhere)
    parsed = OverridesParser.create().parse_overrides(resolve_resume([f"ckpt_path={last}"])[:3])
    assert {o.key_or_group: o.value() for o in parsed} == {
        "data": "imagefolder",
        "data.root": str(started / "im,ages"),
        "paths.data_dir": str(started / "data"),
    }
    # A record of Hydra's that does not say where the run started leaves the overrides as written.
    (run / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    config_name: train\n")
    assert resolve_resume([f"ckpt_path={last}"])[1] == "data.root='./im,ages'"


def test_a_resume_refused_inside_fit_takes_away_only_the_event_files_its_writer_began(tmp_path: Path) -> None:
    # Each new event file holds a purge mark at the checkpoint's step, which hid what the run had
    # logged after it; a folder the writer made for it alone goes too. An accepted resume's files,
    # and a fresh run's (nothing recorded to wait for), stay, and the error is the fit's own.
    from zoo.training.fit import no_event_file_left_by_a_refused_resume

    def fit(folder: Path, record) -> set[str]:
        logger = TensorBoardLogger(str(folder), name="tensorboard", version="")
        trainer = SimpleNamespace(loggers=[logger], is_global_zero=True)
        with (
            pytest.raises(UserError, match="refused"),
            no_event_file_left_by_a_refused_resume(record, trainer),
        ):
            Path(logger.log_dir).mkdir(parents=True, exist_ok=True)
            (Path(logger.log_dir) / "events.out.tfevents.new").write_bytes(b"")
            raise UserError("refused")
        return {str(p.relative_to(folder)) for p in folder.rglob("*")}

    refused, accepted = SimpleNamespace(saved=False), SimpleNamespace(saved=True)
    kept = tmp_path / "kept" / "tensorboard"
    kept.mkdir(parents=True)
    (kept / "events.out.tfevents.old").write_bytes(b"")
    assert fit(tmp_path / "kept", refused) == {"tensorboard", "tensorboard/events.out.tfevents.old"}
    assert fit(tmp_path / "made", refused) == set()
    for name, record in (("accepted", accepted), ("fresh", None)):
        assert fit(tmp_path / name, record) == {"tensorboard", "tensorboard/events.out.tfevents.new"}


def test_a_recorded_data_root_through_a_link_and_up_names_the_folder_the_link_led_to(
    tmp_path: Path, monkeypatch
) -> None:
    # The run read link/../images from where the link points, as the system walks a path; the ..
    # taken off as text named the images beside the link instead, a folder the run never read.
    started, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (started / "images").mkdir(parents=True)
    (tmp_path / "shared" / "deep").mkdir(parents=True)
    (tmp_path / "shared" / "images").mkdir()
    (started / "link").symlink_to(tmp_path / "shared" / "deep")
    elsewhere.mkdir()
    run = _fake_run(tmp_path / "runs", "1", ["data.root=link/../images"])
    (run / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    cwd: {started}\n")
    monkeypatch.chdir(elsewhere)
    (root,) = resolve_resume([f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])[:1]
    key, _, value = root.partition("=")
    assert key == "data.root" and Path(value).resolve() == (tmp_path / "shared" / "images").resolve()


def test_train_py_suggests_training_on_from_a_finished_fine_tune_with_its_own_data(tmp_path: Path) -> None:
    # Without the run's recorded data overrides (its images, where they live) the suggested
    # finetune.py trained on its default data set.
    recorded = ["ckpt_path=/a/best.ckpt", "data=imagefolder", "paths.data_dir=/d"]
    tuned = _fake_run(tmp_path / "runs", "f", recorded, finished=True)
    (tuned / "config.yaml").write_text("task_name: finetune\n")
    last = tuned / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError, match="is a finished run of finetune.py") as raised:
        resolve_resume([f"ckpt_path={last}", "data.image_size=32"], task="train")
    assert shlex.split(str(raised.value).partition("weights with ")[2]) == [
        "python",
        "finetune.py",
        f"ckpt_path={last}",
        "data=imagefolder",
        "paths.data_dir=/d",
        "data.image_size=32",
        "finetune.head=extend",
    ]


def test_resume_auto_matches_a_command_that_also_sets_hydra_settings(tmp_path: Path) -> None:
    # Hydra records the job's overrides only: hydra.* and hydra/... ones are never in the record.
    runs = tmp_path / "runs"
    run = _fake_run(runs, "1", ["model=resnet18"])
    given = ["model=resnet18", "hydra.job.chdir=true", "hydra/job_logging=disabled", "hydra.verbose=true"]
    assert find_interrupted_run(given, runs) == run
