"""ResumableCSVLogger's writer on hand-made metrics.csv files: which rows a resumed run keeps."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from zoo.training.loggers import ResumableCSVLogger


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _resume(folder: Path, purge_step: int | None, metrics: dict[str, float], step: int) -> Path:
    logger = ResumableCSVLogger(save_dir=str(folder), name="csv", version="", purge_step=purge_step)
    logger.log_metrics(metrics, step=step)
    logger.save()
    return Path(logger.log_dir) / "metrics.csv"


def test_rows_from_the_resumed_step_on_are_dropped_and_rows_without_a_step_kept(tmp_path: Path) -> None:
    _write(tmp_path / "csv" / "metrics.csv", "epoch,step,val/loss\n0,3,2.0\n1,7,1.5\n,,9.0\n2,11,1.0\n")
    path = _resume(tmp_path, 8, {"val/loss": 1.2}, step=11)
    assert [(r["step"], r["val/loss"]) for r in _rows(path)] == [
        ("3", "2.0"),
        ("7", "1.5"),
        ("", "9.0"),
        ("11", "1.2"),
    ]


def test_a_file_whose_columns_are_not_in_lightnings_order_keeps_each_value_under_its_column(
    tmp_path: Path,
) -> None:
    # Lightning appends its rows in its sorted column order: kept rows under a header in another
    # order (a file from an older Lightning, or edited by hand) put the new values under the wrong names.
    _write(tmp_path / "csv" / "metrics.csv", "val/loss,step,epoch,extra\n2.0,3,0,x\n")
    path = _resume(tmp_path, 4, {"val/loss": 1.5, "epoch": 1}, step=7)
    assert [(r["step"], r["epoch"], r["val/loss"], r["extra"]) for r in _rows(path)] == [
        ("3", "0", "2.0", "x"),
        ("7", "1", "1.5", ""),
    ]


def test_a_run_resumed_twice_keeps_each_runs_rows_before_the_next_resume(tmp_path: Path) -> None:
    _write(tmp_path / "csv" / "metrics.csv", "step,val/loss\n3,2.0\n7,1.5\n11,1.0\n")
    _resume(tmp_path, 8, {"val/loss": 1.4}, step=11)
    path = _resume(tmp_path, 12, {"train/loss": 0.9, "val/loss": 1.3}, step=15)
    assert [(r["step"], r["val/loss"], r["train/loss"]) for r in _rows(path)] == [
        ("3", "2.0", ""),
        ("7", "1.5", ""),
        ("11", "1.4", ""),
        ("15", "1.3", "0.9"),
    ]


def test_without_a_resumed_step_the_file_found_is_replaced(tmp_path: Path) -> None:
    _write(tmp_path / "csv" / "metrics.csv", "step,val/loss\n3,2.0\n")
    path = _resume(tmp_path, None, {"val/loss": 1.0}, step=0)
    assert [(r["step"], r["val/loss"]) for r in _rows(path)] == [("0", "1.0")]


def test_a_resume_that_logs_nothing_leaves_the_files_as_they_were(tmp_path: Path) -> None:
    # A resume refused inside fit (a changed schedule) has logged its settings by then: the
    # interrupted run's hparams.yaml stayed only until that save replaced it with the refused one's.
    path, hparams = tmp_path / "csv" / "metrics.csv", tmp_path / "csv" / "hparams.yaml"
    _write(path, "step,val/loss\n3,2.0\n7,1.5\n")
    hparams.write_text("lr: 0.5\n")
    logger = ResumableCSVLogger(save_dir=str(tmp_path), name="csv", version="", purge_step=4)
    logger.log_hyperparams({"lr": 0.1})
    logger.save()
    assert path.read_text() == "step,val/loss\n3,2.0\n7,1.5\n"
    assert hparams.read_text() == "lr: 0.5\n"
    # Once the resumed run logs, its settings are the folder's.
    logger.log_metrics({"val/loss": 1.2}, step=7)
    logger.save()
    assert hparams.read_text() == "lr: 0.1\n"


def test_a_row_with_more_cells_than_the_header_does_not_stop_the_resumed_run(tmp_path: Path) -> None:
    _write(tmp_path / "csv" / "metrics.csv", "step,val/loss\n3,2.0,stray\n9,1.0\n")
    path = _resume(tmp_path, 4, {"val/loss": 1.5}, step=7)
    assert [(r["step"], r["val/loss"]) for r in _rows(path)] == [("3", "2.0"), ("7", "1.5")]


def test_a_fine_tune_from_a_checkpoint_names_its_network_in_the_hparams_tab(tmp_path: Path) -> None:
    # finetune.py's config leaves model null for a run checkpoint's source, so the HPARAMS row of
    # such a fine-tune did not say which network was trained; it takes the one that was built.
    from types import SimpleNamespace

    from omegaconf import OmegaConf
    from pytorch_lightning.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from zoo.training.outputs import log_final_hparams

    logger = TensorBoardLogger(str(tmp_path), name="tensorboard", version="")
    trainer = SimpleNamespace(loggers=[logger], global_step=4)
    cfg = OmegaConf.create({"task_name": "finetune", "ckpt_path": "src.ckpt"})
    log_final_hparams(trainer, cfg, {"test/acc": 0.5}, model={"name": "lenet5", "num_classes": 10})
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    assert b"model.name" in start and b"lenet5" in start and b"src.ckpt" in start


def _experiment_the_hparams_tab_shows(logdir: Path):
    """The table TensorBoard's HPARAMS dashboard is served for `tensorboard --logdir logdir`."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    tensorboard = backend_context.Context(base_plugin.TBContext(logdir=str(logdir), data_provider=provider))
    request = api_pb2.GetExperimentRequest(experiment_name="", hparams_limit=1000)
    return get_experiment.Handler(context.RequestContext(), tensorboard, "", request).run()


def test_the_hparams_tab_shows_first_what_differs_between_the_runs_it_compares(tmp_path: Path) -> None:
    # Two points of an optimizer.lr sweep and a fine-tune, as `tensorboard --logdir runs` reads them.
    # Each run wrote an experiment summary of its own settings, none of them marked as differing,
    # and TensorBoard took the first it found: the dashboard's five default columns were callbacks.*.
    from types import SimpleNamespace

    from pytorch_lightning.loggers import TensorBoardLogger

    from zoo.training.outputs import log_final_hparams

    from .conftest import compose_config

    built = {"name": "lenet5", "num_classes": 10, "in_chans": 1, "small_input": True, "dropout": 0.0}
    runs = {
        "train/multirun/0": ("train", "optimizer.lr=0.01"),
        "train/multirun/1": ("train", "optimizer.lr=0.02"),
        "finetune/0": ("finetune", f"ckpt_path={tmp_path}/train/multirun/0/checkpoints/best.ckpt"),
    }
    for folder, (script, override) in runs.items():
        run_dir = tmp_path / folder
        # The same length for both scripts (finetune.yaml trains 10 epochs by default, train.yaml 3).
        overrides = (override, "trainer.max_epochs=2", f"paths.output_dir={run_dir}")
        cfg = compose_config(*overrides, config_name=script)
        logger = TensorBoardLogger(str(run_dir), name="tensorboard", version="")
        logger.log_metrics({"test/acc": 0.5}, step=20)
        log_final_hparams(SimpleNamespace(loggers=[logger], global_step=20), cfg, {"test/acc": 0.5}, built)

    experiment = _experiment_the_hparams_tab_shows(tmp_path)
    differing = [info.name for info in experiment.hparam_infos if info.differs]
    # The folders each run names (its checkpoints', its logger's) differ in every run, and a train.py
    # config's null class count differed from a fine-tune's built one: neither takes a column.
    assert sorted(differing) == ["ckpt_path", "optimizer.lr", "task_name"]
    # The dashboard shows the first five columns, those that differ come first.
    assert {info.name for info in experiment.hparam_infos[:5]} >= set(differing)
    assert "finetune.head" in {info.name for info in experiment.hparam_infos}  # every run's settings
    assert "test/acc" in {info.name.tag for info in experiment.metric_infos}


@pytest.mark.parametrize("end", ["", "/"], ids=["folder", "folder-with-slash"])
def test_the_hparams_tab_leaves_out_only_the_settings_in_its_runs_folder(tmp_path: Path, end: str) -> None:
    # A fine-tune in runs/ft of the network trained in runs/ft_base: its source begins with the name
    # of its own folder, and is still the setting that tells fine-tunes apart.
    from types import SimpleNamespace

    from omegaconf import OmegaConf
    from pytorch_lightning.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from zoo.training.outputs import log_final_hparams

    run_dir = tmp_path / "runs" / "ft"
    cfg = OmegaConf.create(
        {
            "paths": {"output_dir": f"{run_dir}{end}"},
            "callbacks": {"model_checkpoint": {"dirpath": f"{run_dir}/checkpoints"}},
            "ckpt_path": f"{run_dir}_base/checkpoints/best.ckpt",
        }
    )
    logger = TensorBoardLogger(str(run_dir), name="tensorboard", version="")
    log_final_hparams(SimpleNamespace(loggers=[logger], global_step=4), cfg, {"test/acc": 0.5})
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    shown = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert set(shown) == {"ckpt_path"}
