"""Lightning Trainer options given as trainer.KEY=...: each does what Lightning's documentation says,
or is refused in one line where this project cannot honour it."""

from __future__ import annotations

import json
import signal
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from pytorch_lightning.callbacks import ModelCheckpoint, ModelSummary
from pytorch_lightning.utilities.exceptions import SIGTERMException

from zoo.training import builders
from zoo.training.errors import UserError
from zoo.training.fit import fit_test_and_record, start_run, stopped_by_a_signal
from zoo.training.overrides import check_overrides
from zoo.training.validation import validate_config

from .conftest import compose_config, run_script

TINY = ("trainer.accelerator=cpu", "trainer.limit_train_batches=2", "logger=none")


def test_an_epoch_without_validation_shows_no_validation_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Lightning keeps the last validation's figures: epoch 3's line showed epoch 2's as its own.
    cfg = compose_config(
        *TINY,
        "trainer.max_epochs=3",
        "trainer.check_val_every_n_epoch=2",
        "trainer.limit_val_batches=1",
        f"paths.output_dir={tmp_path}",
    )
    _, datamodule, trainer = start_run(cfg)
    trainer.fit(builders.build_module(cfg, datamodule.spec), datamodule=datamodule)
    lines = {
        line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")
    }
    assert sorted(lines) == ["1/3", "2/3", "3/3"]
    assert "train/loss=" in lines["1/3"] and "val/" not in lines["1/3"]
    assert "val/loss=" in lines["2/3"]
    assert "train/loss=" in lines["3/3"] and "val/" not in lines["3/3"]


@pytest.mark.parametrize(
    "overrides",
    [
        ("+trainer.enable_checkpointing=false",),
        ("callbacks.model_checkpoint=null", "callbacks.last_checkpoint=null"),
    ],
    ids=["enable_checkpointing=false", "no checkpoint callbacks"],
)
def test_checkpointing_turned_off_builds_a_trainer_that_keeps_no_checkpoint(
    tmp_path: Path, overrides: tuple[str, ...]
) -> None:
    # enable_checkpointing=false was refused by Lightning (it found the config's checkpoint
    # callbacks); without those callbacks Lightning added its own, which wrote epoch=E-step=S.ckpt.
    cfg = compose_config(*TINY, *overrides, f"paths.output_dir={tmp_path}")
    trainer = builders.build_trainer(cfg)
    assert not [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]


def test_a_run_that_never_validates_tests_its_final_weights_without_lightnings_monitor_advice(
    tmp_path: Path,
) -> None:
    cfg = compose_config(
        *TINY, "trainer.max_epochs=1", "trainer.limit_val_batches=0", f"paths.output_dir={tmp_path}"
    )
    run_dir, datamodule, trainer = start_run(cfg)
    module = builders.build_module(cfg, datamodule.spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_test_and_record(cfg, trainer, module, datamodule, run_dir, resume_from=None)
    assert not [w for w in caught if "could not find the monitored key" in str(w.message)]
    assert 0 <= json.loads((run_dir / "metrics.json").read_text())["test/acc"] <= 1


@pytest.mark.parametrize("tty", [False, True], ids=["file", "terminal"])
def test_the_display_switches_on_the_command_line_win_over_the_terminal_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tty: bool
) -> None:
    # They were replaced by whether stdout is a terminal, without a word.
    monkeypatch.setattr(sys.stdout, "isatty", lambda: tty)
    wanted = str(not tty).lower()
    cfg = compose_config(
        *TINY,
        f"+trainer.enable_progress_bar={wanted}",
        f"+trainer.enable_model_summary={wanted}",
        f"paths.output_dir={tmp_path}",
    )
    trainer = builders.build_trainer(cfg)
    assert (trainer.progress_bar_callback is not None) is (not tty)
    assert any(isinstance(c, ModelSummary) for c in trainer.callbacks) is (not tty)


@pytest.mark.parametrize("saved", [False, True], ids=["no checkpoint", "a checkpoint"])
def test_sigterm_offers_a_resume_only_where_a_checkpoint_was_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture, saved: bool
) -> None:
    if saved:
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    trainer = SimpleNamespace(is_global_zero=True, global_step=7)
    with pytest.raises(SystemExit) as stop, stopped_by_a_signal(compose_config(), trainer, tmp_path):
        raise SIGTERMException
    assert stop.value.code == 128 + signal.SIGTERM
    said = capsys.readouterr().err
    assert "stopped by SIGTERM at step 7" in said
    assert ("resume with: python train.py resume=" in said) is saved
    assert ("no checkpoint was saved" in said) is not saved


@pytest.mark.parametrize(
    ("override", "fix"),
    [
        ("+trainer.default_root_dir=elsewhere", "hydra.run.dir=DIR"),
        ("trainer.default_root_dir=elsewhere", "hydra.run.dir=DIR"),
        ("+trainer.logger=false", "logger=NAME"),
        ("+trainer.callbacks=[]", "callbacks.NAME=null"),
    ],
)
def test_trainer_arguments_the_entry_points_set_are_refused_with_the_setting_to_use(
    override: str, fix: str
) -> None:
    # They were replaced by the run directory, loggers and callbacks the config builds, silently.
    with pytest.raises(UserError, match=f"not a trainer setting here; .*{fix.replace('.', '[.]')}"):
        check_overrides([override])


def test_default_root_dir_is_refused_in_one_line_before_anything_is_written(tmp_path: Path) -> None:
    result = run_script("train.py", "+trainer.default_root_dir=elsewhere", check=False, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: trainer.default_root_dir: not a trainer setting here; a run writes everything into its "
        "run directory; name it with hydra.run.dir=DIR"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (("+trainer.barebones=true",), "trainer.barebones must be false"),
        (
            ("trainer.max_epochs=2", "trainer.min_epochs=3"),
            "trainer.min_epochs=3 is above trainer.max_epochs=2",
        ),
        (
            ("trainer.max_steps=5", "trainer.min_steps=10"),
            "trainer.min_steps=10 is above trainer.max_steps=5",
        ),
        (
            ("callbacks=early_stopping", "trainer.limit_val_batches=0"),
            "callbacks.early_stopping.monitor=val/acc is never computed",
        ),
        (
            ("callbacks=early_stopping", "trainer.limit_val_batches=0.0"),
            "callbacks.early_stopping.monitor=val/acc is never computed",
        ),
    ],
)
def test_trainer_settings_lightning_would_ignore_or_refuse_late_are_refused_at_once(
    overrides: tuple[str, ...], named: str
) -> None:
    with pytest.raises(UserError, match=named):
        validate_config(compose_config(*overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        ("+trainer.barebones=false",),
        ("trainer.max_epochs=3", "trainer.min_epochs=3"),
        ("trainer.max_epochs=-1", "trainer.max_steps=20", "trainer.min_epochs=3", "scheduler=none"),
        (
            "callbacks=early_stopping",
            "trainer.limit_val_batches=0",
            "callbacks.early_stopping.monitor=train/loss",
        ),
        ("callbacks=early_stopping", "trainer.limit_val_batches=0.5"),
    ],
)
def test_the_same_settings_within_bounds_are_taken(overrides: tuple[str, ...]) -> None:
    validate_config(compose_config(*overrides))
