from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from zoo.training.overrides import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each worker owns one core; a second thread per worker (or per process it starts) would only
    # contend with the other worker.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def event_files_numbered_as_in_a_fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorBoard names an event file by the second, the process id and a count of the files the
    process has opened, and reads a folder's files in name order: within one second a count of 10
    sorts before 9. A test worker that had opened many writers read a resumed run's files out of
    order (its validation loss at steps [7, 3]). Each test counts afresh, as train.py's process does."""
    from tensorboard.summary.writer import event_file_writer

    monkeypatch.setattr(event_file_writer, "_global_uid", event_file_writer.AtomicCounter(0))


def compose_config(*overrides: str, config_name: str = "train"):
    """The config an entry point (train.py by default) composes from these command-line overrides."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def run_script(
    script: str, *overrides: str, check: bool = True, timeout: int = 600, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    """Run an entry point as a user would, in a fresh process, and return its output. A run given no
    hydra.run.dir lands in runs/ below `cwd`: pass a temporary folder so it stays out of the checkout."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / script), *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(overrides)} exited {result.returncode}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


class Payload:
    """Unpickling this object would create the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# Small and quick, but still real training on the real digits.
QUICK = ("trainer.max_epochs=3", "logger=tensorboard")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One short default-config training run, shared by the tests that inspect what a run leaves."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    run_script("train.py", *QUICK, f"hydra.run.dir={run_dir}")
    return run_dir


def checkpoint_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The state dict of a Lightning checkpoint, loaded as train.py loads one (weights only)."""
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="session")
def torchvision_resnet18(tmp_path_factory) -> Path:
    """torchvision's resnet18 (random init, standing in for its published weights) as a state dict file."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path
