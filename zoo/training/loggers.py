"""Loggers that keep a resumed run's history in its folder, as TensorBoard's purge_step does."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger, resumable. Lightning's writer deletes the metrics.csv it finds, so a
    resumed run (logging in its own folder again) lost every row its interrupted run had written.
    With `purge_step`, the rows before that step stay, as TensorBoard keeps the events before its
    purge_step, and the resumed run's rows follow them; without it, the file is dropped as before
    (a new run in the folder of one killed before its first checkpoint)."""

    def __init__(self, *args, purge_step: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.purge_step = purge_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HistoryKeepingWriter(self.log_dir, self.purge_step)
        return self._experiment


class _HistoryKeepingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, purge_step: int | None) -> None:
        self.purge_step = purge_step
        self._purge_pending = False
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if self.purge_step is None or not os.path.isfile(self.metrics_file_path):
            super()._check_log_dir_exists()
            return
        # The file's columns, so that rows appended later line up with its header.
        with open(self.metrics_file_path, newline="") as file:
            self.metrics_keys = sorted(csv.DictReader(file).fieldnames or [])
        # Dropped only once the run logs: a resume refused before its first metrics (a changed
        # schedule is found only inside fit) leaves the file as it was.
        self._purge_pending = True

    def log_hparams(self, params: dict[str, Any]) -> None:
        if self._purge_pending:
            # Held back with the rows: written now, a resume refused before its first figures would
            # leave the interrupted run's folder with the refused command's settings.
            self.hparams.update(params)
            return
        super().log_hparams(params)

    def save(self) -> None:
        if self._purge_pending and self.metrics:
            self._purge_pending = False
            self._keep_rows_before(self.purge_step)
            if self.hparams:
                super().log_hparams({})  # the settings held back, written
        super().save()

    def _keep_rows_before(self, step: int) -> None:
        """The rows the resumed run will not log again, written whole before the old file goes."""
        path = Path(self.metrics_file_path)
        with path.open(newline="") as file:
            kept = [row for row in csv.DictReader(file) if not _logged_from(row, step)]
        partial = path.with_name(f".{path.name}.partial")
        with partial.open("w", newline="") as file:
            # In the order Lightning appends its rows in (its sorted keys): a header in another order
            # (an older Lightning's, or a file edited by hand) put the new values under other columns.
            # A row with more cells than the header has no name for the extra ones: they go.
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
        partial.replace(path)


def _logged_from(row: dict[str, str], step: int) -> bool:
    try:
        return float(row.get("step") or "") >= step
    except ValueError:
        return False  # no step to judge it by: kept
