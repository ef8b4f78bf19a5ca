"""What a finished run leaves behind besides checkpoints: metrics.json, the resolved config, hparams."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePath

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams


def write_json_atomically(path: Path, payload: Mapping) -> None:
    # A reader (or a resumed run) never sees half a file.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def recorded_settings(cfg: DictConfig, model: Mapping | None = None) -> dict:
    """The run's settings, resolved. `model` is the network's settings as built, for a config that
    leaves them to a checkpoint."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    # A fine-tune from a run checkpoint has no model in its config (the source's architecture is
    # taken): without the built one its record would not say which network was trained.
    if settings.get("model") is None and model is not None:
        settings["model"] = dict(model)
    return settings


def save_resolved_config(cfg: DictConfig, run_dir: Path, model: Mapping | None = None) -> None:
    # The first file of a run written outside Hydra's own folder (a paths.output_dir of its own, from
    # Python) or without a logger that would have made it. Hydra's .hydra/config.yaml stays the
    # config the command composed, beside the overrides a resume rebuilds the run from.
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(recorded_settings(cfg, model)))


def scalar_metrics(metrics: Mapping) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()}


def log_final_hparams(
    trainer: pl.Trainer, cfg: DictConfig, metrics: Mapping[str, float], model: Mapping | None = None
) -> None:
    """Put the run's settings in TensorBoard's HPARAMS tab beside the final metrics, so runs of a sweep
    can be compared in one table.

    The tab reads each metric's value from the run's scalars of that name, which the test loop has
    already written at the last step. Lightning's log_hyperparams would write them once more at step
    0, drawing every test curve back to the start, so the summaries are written here directly.

    No experiment summary is written beside the run's own two: TensorBoard took the table's columns
    from the first run it found with one, and a run cannot say which settings differ from the other
    runs', so the tab's five default columns were the alphabetically first settings (callbacks.*),
    never a sweep's optimizer.lr. Without one, TensorBoard builds the table from every run's settings,
    those that differ first, with metrics from the runs' scalars. `model`: the network as built."""
    settings = recorded_settings(cfg)
    if model is not None:
        # The network as built. A fine-tune from a run checkpoint has no model in its config; a train.py
        # config leaves its class and channel counts to the data (null), which the tab showed as None
        # beside a fine-tune's numbers, a difference that took columns of the table.
        settings["model"] = {**(settings.get("model") or {}), **model}
    run_dir = OmegaConf.select(cfg, "paths.output_dir")
    params = {
        name: value if isinstance(value, (bool, int, float, str)) else str(value)
        for name, value in _flatten(settings).items()
        # Those naming the run's own folder (its checkpoints', its loggers'), which differ in every run:
        # they took the table's first columns, and the row's run name already says the folder.
        if not (run_dir and _names_a_path_in(value, str(run_dir)))
    }
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment._get_file_writer()
            _, session_start, session_end = hparams(params, dict(metrics))
            for summary in (session_start, session_end):
                writer.add_summary(summary, trainer.global_step)
            logger.finalize("success")


def _names_a_path_in(value: object, folder: str) -> bool:
    return isinstance(value, str) and PurePath(value).is_relative_to(folder)


def _flatten(tree: Mapping, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = str(value)
        else:
            flat[name] = value
    return flat
