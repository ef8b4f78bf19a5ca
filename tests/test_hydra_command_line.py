"""Hydra's own command-line flags (--config-dir, --config-name, --config-path, --cfg, -p) and
config groups (hydra/job_logging) work with the entry points' checks, as Hydra's docs describe them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from zoo.training.errors import UserError
from zoo.training.overrides import check_overrides, check_sweep_points, job_overrides

from .conftest import ROOT, run_script

QUICK = (
    "logger=none",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A user's own config folder: a model option, an experiment, and a copy of train.yaml."""
    folder = tmp_path / "myconf"
    (folder / "model").mkdir(parents=True)
    (folder / "experiment").mkdir()
    (folder / "model" / "wide_dropout.yaml").write_text(
        "name: resnet18\nnum_classes: null\nin_chans: null\nsmall_input: null\ndropout: 1.5\n"
    )
    (folder / "experiment" / "mine.yaml").write_text("# @package _global_\ntask_name: mine\n")
    train = (ROOT / "configs" / "train.yaml").read_text()
    (folder / "mytrain.yaml").write_text(train.replace("label_smoothing: 0.0", "label_smoothing: 2.0"))
    return folder


def test_group_options_of_a_config_dir_are_known(config_dir: Path) -> None:
    check_overrides(["--config-dir", str(config_dir), "model=wide_dropout", "experiment=mine"])
    check_overrides([f"--config-dir={config_dir}", "+experiment=mine"])
    with pytest.raises(UserError, match=r"unknown model 'nope'; known: .*wide_dropout"):
        check_overrides(["-cd", str(config_dir), "model=nope"])
    with pytest.raises(UserError, match="unknown model 'wide_dropout'"):
        check_overrides(["model=wide_dropout"])  # without the folder, as Hydra would say


def test_flags_and_their_values_are_not_overrides() -> None:
    argv = [
        "--config-dir",
        "myconf",
        "-cn",
        "mytrain",
        "-m",
        "seed=1,2",
        "hydra.verbose=true",
        "--cfg",
        "job",
    ]
    assert job_overrides(argv) == ["seed=1,2"]


def test_a_sweep_composes_its_points_from_the_folders_and_config_the_command_names(config_dir: Path) -> None:
    # The user's model file and config are read: their values out of range are named.
    with pytest.raises(UserError, match=r"sweep point #1 \(model=wide_dropout\) of 2: model.dropout must be"):
        check_sweep_points(["--config-dir", str(config_dir), "-m", "model=lenet5,wide_dropout"], "train")
    with pytest.raises(UserError, match=r"sweep point #0 \(seed=1\) of 2: label_smoothing must be"):
        check_sweep_points(["-cd", str(config_dir), "--config-name", "mytrain", "-m", "seed=1,2"], "train")
    # --config-path replaces the project's folder: a whole copy of it, with train.yaml changed.
    copy = shutil.copytree(ROOT / "configs", config_dir.parent / "copy")
    (copy / "train.yaml").write_text((config_dir / "mytrain.yaml").read_text())
    with pytest.raises(UserError, match=r"sweep point #0 \(seed=1\) of 2: label_smoothing must be"):
        check_sweep_points(["--config-path", str(copy), "-m", "seed=1,2"], "train")


def test_an_override_the_command_adds_goes_before_hydras_flags(tmp_path: Path) -> None:
    # paths.output_dir adds hydra.run.dir=...; after `-p KEY` Hydra's parser refused it.
    folder = tmp_path / "run"
    result = run_script(
        "train.py", f"paths.output_dir={folder}", "--cfg", "job", "-p", "paths.output_dir", cwd=tmp_path
    )
    assert result.stdout.strip() == str(folder)


def test_hydras_disabled_job_logging_runs_without_a_log_file(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    run_script("train.py", *QUICK, f"hydra.run.dir={folder}", "hydra/job_logging=disabled", cwd=tmp_path)
    assert (folder / "metrics.json").is_file()
    assert not (folder / "train.log").exists()
