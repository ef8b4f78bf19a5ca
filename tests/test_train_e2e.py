"""train.py and evaluate.py end to end on the real embedded digits, as a user runs them."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_lightning.callbacks import RichProgressBar
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchmetrics.functional.classification import multiclass_confusion_matrix

from zoo.data import DataSpec
from zoo.training import builders, evaluation
from zoo.training.callbacks import BestCheckpoint, confusion_rates
from zoo.training.fit import start_run
from zoo.training.module import ImageClassifier

from .conftest import QUICK, compose_config, run_script
from .test_loggers import _experiment_the_hparams_tab_shows
from .test_resume import _fit_in_process


def test_run_directory_holds_checkpoints_events_config_and_metrics(trained_run: Path) -> None:
    checkpoints = sorted(p.name for p in (trained_run / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints
    assert "best.ckpt" in checkpoints
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    assert (trained_run / "config.yaml").read_text().count("lenet5") >= 1
    # The log file holds what the console showed: Lightning's lines and the run's own.
    log = (trained_run / "train.log").read_text()
    assert "GPU available" in log and "epoch 1/" in log and f"run directory: {trained_run}" in log
    assert log.count("GPU available") == 1, log  # the file's handler, not the root logger's as well
    # An epoch's line shows its validation figures beside the training ones.
    epoch_line = next(line for line in log.splitlines() if "epoch 1/3" in line)
    assert "train/loss=" in epoch_line and "val/loss=" in epoch_line and "val/acc=" in epoch_line
    metrics = json.loads((trained_run / "metrics.json").read_text())
    # The test figures alone: none of the last epoch's train/ or val/ figures beside them.
    assert set(metrics) == {"test/acc", "test/loss", "test/acc_top5"}
    # Three epochs on digits already learn most of the task; chance is 0.1.
    assert metrics["test/acc"] > 0.6
    # Top-5 counts every top-1 hit and more: strictly more while top-1 misses some.
    assert metrics["test/acc"] <= metrics["test/acc_top5"] <= 1
    if metrics["test/acc"] < 1:
        assert metrics["test/acc_top5"] > metrics["test/acc"]


# train.py imports Lightning inside the Hydra job, once the root logger has the run's file handler;
# Lightning then adds no console handler of its own, and its lines had left the console.
def test_lightning_lines_are_on_the_console_once_and_in_the_log_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    tiny = ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1")
    result = run_script("train.py", *tiny, "trainer.limit_test_batches=1", f"hydra.run.dir={run_dir}")
    console = result.stdout + result.stderr
    log = (run_dir / "train.log").read_text()
    for line in ("GPU available", "Restoring states from the checkpoint path"):
        assert console.count(line) == 1, console
        assert log.count(line) == 1, log


def test_tensorboard_holds_the_scalars_images_and_hparams(trained_run: Path) -> None:
    (event_dir,) = {p.parent for p in (trained_run / "tensorboard").rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(event_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    for scalar in ("train/loss", "train/acc", "val/loss", "val/acc", "test/acc"):
        assert scalar in tags["scalars"], f"{scalar} missing from {tags['scalars']}"
    assert any(tag.startswith("lr-") for tag in tags["scalars"])
    assert len(events.Scalars("val/acc")) == 3  # one point per epoch
    # Digits are grey: the grid is stored with one channel, not made RGB.
    (grid,) = events.Images("train/inputs")
    assert Image.open(io.BytesIO(grid.encoded_image_string)).mode == "L"
    # Each confusion matrix at the step of the validation figures it belongs to.
    val_steps = [event.step for event in events.Scalars("val/acc")]
    assert [event.step for event in events.Images("val/confusion_matrix")] == val_steps
    # One training loss per epoch, at the step of that epoch's validation figures.
    assert [event.step for event in events.Scalars("train/loss")] == val_steps
    # The test metrics once, after the last step: the HPARAMS summary reads them, not writes them again.
    assert [event.step for event in events.Scalars("test/acc")] == [val_steps[-1] + 1]
    # The HPARAMS tab reads these plugin summaries: the run's settings beside its final metrics.
    hparams = events.PluginTagToContent("hparams")
    assert b"model.name" in hparams["_hparams_/session_start_info"]
    assert b"lenet5" in hparams["_hparams_/session_start_info"]
    # Nested settings too, under their dotted names.
    assert b"callbacks.model_checkpoint.monitor" in hparams["_hparams_/session_start_info"]
    # The run's final metrics beside them, as TensorBoard's dashboard is served the table.
    table = _experiment_the_hparams_tab_shows(trained_run)
    assert {"test/acc", "test/loss"} <= {info.name.tag for info in table.metric_infos}


def test_the_sanity_check_logs_no_confusion_matrix(tmp_path: Path) -> None:
    # The sanity check's few batches must not log a confusion matrix: the first one is the first epoch's.
    overrides = (
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.limit_train_batches=4",
        "trainer.num_sanity_val_steps=1",
    )
    _fit_in_process(tmp_path / "run", overrides)
    (event_dir,) = {p.parent for p in (tmp_path / "run").rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(event_dir), size_guidance={"images": 0})
    events.Reload()
    assert [event.step for event in events.Images("val/confusion_matrix")] == [3]


def test_confusion_rates_divide_each_row_by_its_true_class_count() -> None:
    # Rows are true classes: each row is divided by its own count, not a column's or the total.
    rates = confusion_rates(torch.tensor([[3, 1], [0, 2]]))
    assert torch.allclose(rates, torch.tensor([[0.75, 0.25], [0.0, 1.0]]))


def test_tensorboard_confusion_matrix_names_its_classes(tmp_path: Path) -> None:
    # A bare heat map did not say which class a row is, nor which axis is the true class: the image
    # each validation logs is the labelled picture evaluate.py saves.
    from types import SimpleNamespace

    import numpy
    from pytorch_lightning.loggers import TensorBoardLogger

    from zoo.training.callbacks import TensorBoardImages
    from zoo.training.evaluation import labelled_confusion_image

    matrix, names = torch.tensor([[3, 1, 0], [0, 2, 0], [1, 0, 4]]), ["cat", "dog", "truck"]
    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer = SimpleNamespace(
        loggers=[logger],
        sanity_checking=False,
        is_global_zero=True,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=7)),
    )
    module = SimpleNamespace(val_confusion=SimpleNamespace(compute=lambda: matrix), class_names=names)
    TensorBoardImages().on_validation_epoch_end(trainer, module)
    logger.experiment.flush()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    (logged,) = events.Images("val/confusion_matrix")
    shown = numpy.asarray(Image.open(io.BytesIO(logged.encoded_image_string)).convert("RGB"))
    assert logged.step == 7
    assert numpy.array_equal(shown, numpy.asarray(labelled_confusion_image(matrix, names)))


# The data the checkpoint records, or the same data named on the command line (which once failed
# to compose: the data configs read ${seed}, which evaluate.yaml lacked).
@pytest.mark.parametrize("data", [(), ("data=digits",)], ids=["from-checkpoint", "named"])
def test_evaluate_reproduces_the_test_accuracy(
    trained_run: Path, tmp_path: Path, data: tuple[str, ...]
) -> None:
    trained = json.loads((trained_run / "metrics.json").read_text())
    best = trained_run / "checkpoints" / "best.ckpt"
    result = run_script("evaluate.py", f"ckpt_path={best}", *data, f"hydra.run.dir={tmp_path}")
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert abs(report["test/acc"] - trained["test/acc"]) < 1e-6
    assert abs(report["test/loss"] - trained["test/loss"]) < 1e-4
    assert report["samples"] == 360
    assert sum(map(sum, report["confusion_matrix"])) == 360
    assert set(report["per_class"]) == {str(d) for d in range(10)}
    # Rows are true classes, columns predictions: row i sums to class i's support, precision j is the
    # diagonal over column j, recall i the diagonal over row i.
    matrix = torch.tensor(report["confusion_matrix"])
    rows = [report["per_class"][str(d)] for d in range(10)]
    assert matrix.sum(dim=1).tolist() == [row["support"] for row in rows]
    diagonal = matrix.diagonal().double()
    assert [row["precision"] for row in rows] == pytest.approx(
        (diagonal / matrix.sum(dim=0).clamp_min(1)).tolist(), abs=1e-6
    )
    assert [row["recall"] for row in rows] == pytest.approx((diagonal / matrix.sum(dim=1)).tolist(), abs=1e-6)
    # Top-5 is the training run's top-5 (the same best checkpoint), not top-1 again.
    assert report["test/acc"] <= report["test/acc_top5"]
    assert abs(report["test/acc_top5"] - trained["test/acc_top5"]) < 1e-6
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "precision" in result.stdout and "run directory:" in result.stdout.strip().splitlines()[-1]
    # The same report in TensorBoard, beside the training runs.
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert abs(events.Scalars("test/acc")[0].value - report["test/acc"]) < 1e-6
    assert {"test/acc_top5", "test/loss"} <= set(events.Tags()["scalars"])
    assert [event.step for event in events.Images("test/confusion_matrix")] == [0]  # beside its scalars
    # Which checkpoint, at which step, and which data: nothing in the TensorBoard run said so, and
    # last.ckpt's path alone names a file that training saves again.
    assert report["ckpt_step"] == torch.load(best, weights_only=True)["global_step"]
    assert report["data"]["_target_"] == "zoo.data.DigitsDataModule"
    (text,) = events.Tensors("test/per_class/text_summary")
    shown = text.tensor_proto.string_val[0].decode()
    step = report["ckpt_step"]
    assert f"checkpoint {best} (step {step}), test split of DigitsDataModule: 360 images" in shown
    assert evaluation.describe(report) in result.stdout


def test_last_line_names_run_dir_and_accuracy(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # ckpt_path= (empty) is not set, as null: it reached Lightning's fit as a path '' and a traceback.
    result = run_script(
        "train.py", "debug=fast_dev_run", "logger=none", "ckpt_path=", f"hydra.run.dir={run_dir}"
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"run directory: {run_dir}") and "test/acc=" in last
    # A smoke test saves no checkpoint, as Lightning's fast_dev_run banner says.
    assert not list(run_dir.glob("checkpoints/*.ckpt"))
    # Library notices a user can do nothing about stay out of the output (cli.quiet_library_notices).
    assert "litlogger" not in result.stderr and "LeafSpec" not in result.stderr


def test_multirun_sweeps_two_points(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run_script(
        "train.py",
        "-m",
        "optimizer.lr=0.001,0.01",
        "trainer.max_epochs=1",
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
    )
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in runs] == ["0", "1"]
    for run, lr in zip(runs, ("0.001", "0.01"), strict=True):
        assert json.loads((run / "metrics.json").read_text())["test/acc"] > 0
        assert f"lr: {lr}" in (run / "config.yaml").read_text()


def test_a_finished_run_directory_is_never_overwritten(trained_run: Path) -> None:
    before = (trained_run / "metrics.json").read_bytes()
    result = run_script("train.py", *QUICK, f"hydra.run.dir={trained_run}", check=False)
    assert result.returncode == 2
    assert "already holds a finished run" in result.stderr
    assert (trained_run / "metrics.json").read_bytes() == before


# A step limit reached mid-epoch, before the first validation: no best checkpoint exists, so the run
# tests its final weights (Lightning's ckpt_path="best" once raised here), and the partial epoch's
# training figures are still logged.
def test_a_run_that_never_validated_tests_its_final_weights(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_script("train.py", "trainer.max_steps=5", "logger=csv", f"hydra.run.dir={run_dir}")
    assert "no best checkpoint (no validation ran, or none kept): testing the final weights" in result.stdout
    assert "epoch 1/30  train/acc=" in result.stdout
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]
    assert 0 <= json.loads((run_dir / "metrics.json").read_text())["test/acc"] <= 1
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 5


# Under label smoothing train.py's test/loss was the smoothed one and evaluate.py's the plain one:
# two figures under one name for the same checkpoint and data.
def test_validation_and_test_losses_are_plain_cross_entropy_under_label_smoothing() -> None:
    import torch.nn.functional as F

    from zoo.data import DataSpec
    from zoo.training.module import ImageClassifier

    spec = DataSpec(class_names=tuple("0123456789"), channels=1, image_size=32, mean=(0.5,), std=(0.25,))
    model = {"name": "lenet5", "num_classes": 10, "in_chans": 1, "small_input": True}
    module = ImageClassifier(model=model, data=spec.to_dict(), label_smoothing=0.1).eval()
    logged = {}
    module.log = lambda name, value, **options: logged.setdefault(name, value)
    images = torch.randint(
        0, 256, (8, 1, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    targets = torch.arange(8)
    with torch.no_grad():
        module.validation_step((images, targets), 0)
        module.test_step((images, targets), 0)
        logits = module(images)
    plain, smoothed = F.cross_entropy(logits, targets), module.loss(logits, targets)
    assert not torch.allclose(plain, smoothed)
    # Logged as torchmetrics means (each image weighted once, across processes too).
    assert torch.allclose(logged["val/loss"].compute(), plain)
    assert torch.allclose(logged["test/loss"].compute(), plain)
    # A NaN loss stays NaN: torchmetrics' default would drop it and show the other batches' mean.
    nan_logits = logits.clone()
    nan_logits[0, 0] = float("nan")
    module._update_mean_loss(module.val_loss, nan_logits, targets)
    assert torch.isnan(module.val_loss.compute())


def test_each_validations_confusion_matrix_counts_that_validation_alone() -> None:
    # The matrix must start afresh at each validation and count each image's prediction once: two
    # validations of the same batch give the matrix of one.
    spec = DataSpec(class_names=tuple("0123456789"), channels=1, image_size=32, mean=(0.5,), std=(0.25,))
    module = ImageClassifier(model={"name": "lenet5", "num_classes": 10, "in_chans": 1}, data=spec.to_dict())
    module.eval()
    module.log = lambda *args, **kwargs: None
    images = torch.randint(
        0, 256, (8, 1, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    targets = torch.arange(8)
    with torch.no_grad():
        expected = multiclass_confusion_matrix(module(images), targets, num_classes=10)
        for _ in range(2):
            module.on_validation_epoch_start()
            module.validation_step((images, targets), 0)
    assert torch.equal(module.val_confusion.compute(), expected)


# Guards the training tally: each batch's loss weighed by its size, soft (mixed) targets counted by
# their largest share, and a fresh tally each epoch.
def test_the_training_tally_weighs_batches_by_size_and_starts_afresh_each_epoch() -> None:
    spec = DataSpec(class_names=tuple("abc"), channels=1, image_size=32, mean=(0.5,), std=(0.25,))
    torch.manual_seed(0)
    model = {"name": "lenet5", "num_classes": 3, "in_chans": 1, "small_input": True}
    module = ImageClassifier(model=model, data=spec.to_dict())
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 3, (8,), generator=generator)
    soft = F.one_hot(labels[2:], 3).float() * 0.7 + 0.1  # rows sum to 1, the label the largest share
    losses = [module.training_step((images[:2], labels[:2]), 0), module.training_step((images[2:], soft), 1)]
    with torch.no_grad():
        correct = int((module(images).argmax(dim=1) == labels).sum())
    assert module.train_seen == 8
    assert torch.allclose(module.train_sums[0], 2 * losses[0].detach() + 6 * losses[1].detach())
    assert int(module.train_sums[1]) == correct
    module.on_train_epoch_start()
    assert module.train_seen == 0 and not module.train_sums.any()


# Guards the training loss of a network with auxiliary heads: each joins at its aux_loss_weight.
def test_auxiliary_losses_join_the_training_loss_at_their_weight() -> None:
    spec = DataSpec(class_names=tuple("0123456789"), channels=1, image_size=32, mean=(0.5,), std=(0.25,))
    torch.manual_seed(0)
    model = {
        "name": "googlenet",
        "num_classes": 10,
        "in_chans": 1,
        "small_input": True,
        "dropout": 0.0,
        "aux_dropout": 0.0,
    }
    module = ImageClassifier(model=model, data=spec.to_dict())
    images = torch.randint(
        0, 256, (4, 1, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    labels = torch.arange(4)
    loss = module.training_step((images, labels), 0)
    logits, aux = module.net.forward_train(module.normalize(images))  # batch statistics: the same logits
    expected = F.cross_entropy(logits, labels) + 0.3 * sum(F.cross_entropy(a, labels) for a in aux)
    assert len(aux) == 2 and torch.allclose(loss, expected)


# Guards evaluate.py's split=val: it evaluates the validation images, not the test images again.
def test_evaluate_on_the_validation_split(trained_run: Path, tmp_path: Path) -> None:
    run_script(
        "evaluate.py",
        "ckpt_path=checkpoints/best.ckpt",
        "split=val",
        "tensorboard=false",
        f"hydra.run.dir={tmp_path}",
        cwd=trained_run,
    )
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["split"] == "val" and report["samples"] == 180 and "val/acc" in report
    # A path relative to where the command ran named no file to a reader elsewhere.
    recorded = Path(report["ckpt_path"])
    assert recorded.is_absolute() and recorded.samefile(trained_run / "checkpoints" / "best.ckpt")


class _ScriptedValidationLoss(pl.Callback):
    """Replaces each epoch's val/loss by the next of `losses`, before the checkpoint callbacks read it."""

    def __init__(self, losses: list[float]) -> None:
        self.losses = iter(losses)

    def on_validation_end(self, trainer, pl_module) -> None:
        trainer.callback_metrics["val/loss"] = torch.tensor(next(self.losses))


@pytest.mark.parametrize("top_k", [2, -1])
def test_keeping_several_best_checkpoints_tests_the_best_of_them(tmp_path: Path, top_k: int) -> None:
    # With one fixed file name, the worse third epoch (still among the top 2) replaced the second's
    # best.ckpt, and the final test read it as the best.
    overrides = (
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "logger=none",
        f"callbacks.model_checkpoint.save_top_k={top_k}",
    )
    cfg = compose_config(*overrides, f"paths.output_dir={tmp_path}")
    _, datamodule, trainer = start_run(cfg)
    trainer.callbacks.insert(0, _ScriptedValidationLoss([1.0, 0.5, 0.8]))
    trainer.fit(builders.build_module(cfg, datamodule.spec), datamodule=datamodule)
    best = trainer.checkpoint_callback.best_model_path
    assert torch.load(best, map_location="cpu", weights_only=True)["epoch"] == 1
    kept = sorted(path.name for path in (tmp_path / "checkpoints").glob("best*.ckpt"))
    assert len(kept) == (2 if top_k == 2 else 3), kept


def test_several_best_checkpoints_are_named_by_their_epoch_and_step(tmp_path: Path) -> None:
    # The README names them best-epoch=E-step=S.ckpt: with trainer.val_check_interval an epoch
    # validates more than once, and the step says which validation kept each.
    cfg = compose_config("callbacks.model_checkpoint.save_top_k=2", f"paths.output_dir={tmp_path}")
    (best,) = [c for c in builders.build_callbacks(cfg) if isinstance(c, BestCheckpoint)]
    assert Path(best.format_checkpoint_name({"epoch": 1, "step": 40})).name == "best-epoch=1-step=40.ckpt"


class _StopsInTheSecondEpoch(pl.Callback):
    """Asks the trainer to stop in the middle of the second epoch: after a batch, as trainer.max_time's
    Timer does, or after a validation there, as early stopping at a val_check_interval does."""

    def __init__(self, after: str) -> None:
        self.after = after
        self.tallies: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.after == "batch" and trainer.current_epoch == 1 and batch_idx == 0:
            trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.after == "validation" and trainer.current_epoch == 1:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.tallies.append(float(pl_module.train_sums[0] / pl_module.train_seen))


@pytest.mark.parametrize("after", ["batch", "validation"])
def test_an_epoch_stopped_in_its_middle_logs_its_own_training_figures(
    tmp_path: Path, after: str, capsys: pytest.CaptureFixture
) -> None:
    # They were logged only at an epoch's last batch: the stopped epoch's line and its logged
    # train/loss were the epoch before's.
    cfg = compose_config(
        "trainer.max_epochs=3",
        "trainer.accelerator=cpu",
        "trainer.limit_train_batches=4",
        "trainer.val_check_interval=2",
        "logger=none",
        f"paths.output_dir={tmp_path}",
    )
    _, datamodule, trainer = start_run(cfg)
    stopper = _StopsInTheSecondEpoch(after)
    trainer.callbacks.append(stopper)
    trainer.fit(builders.build_module(cfg, datamodule.spec), datamodule=datamodule)
    assert trainer.current_epoch == 2 and len(stopper.tallies) == 2
    assert stopper.tallies[0] != stopper.tallies[1]
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(stopper.tallies[1])
    # EpochSummary's line for the stopped epoch shows that epoch's loss, not the epoch before's.
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch 2/3 ")]
    assert f"train/loss={stopper.tallies[1]:.4f}" in line


class _StopsAtTheFirstEpochsEnd(pl.Callback):
    """Asks the trainer to stop at the first epoch's end, as early stopping does; under
    trainer.min_epochs the trainer goes on with should_stop still set."""

    def __init__(self) -> None:
        self.tallies: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.tallies.append(float(pl_module.train_sums[0] / pl_module.train_seen))
        trainer.should_stop = True


def test_a_stop_held_off_by_min_epochs_logs_each_later_epoch_over_all_its_batches(tmp_path: Path) -> None:
    # should_stop stays set while min_epochs holds the run: read as "the epoch ends here", each
    # later epoch logged the tally of its first batch alone.
    cfg = compose_config(
        "trainer.max_epochs=3",
        "trainer.min_epochs=3",
        "trainer.accelerator=cpu",
        "trainer.limit_train_batches=4",
        "logger=none",
        f"paths.output_dir={tmp_path}",
    )
    _, datamodule, trainer = start_run(cfg)
    stopper = _StopsAtTheFirstEpochsEnd()
    trainer.callbacks.append(stopper)
    trainer.fit(builders.build_module(cfg, datamodule.spec), datamodule=datamodule)
    assert len(stopper.tallies) == 3
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(stopper.tallies[-1])


class _TallyAtEpochEnd(pl.Callback):
    """The loss of each epoch's batches, read as the epoch ends."""

    def __init__(self) -> None:
        self.tallies: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.tallies.append(float(pl_module.train_sums[0] / pl_module.train_seen))


def test_the_progress_bar_shows_the_training_loss_of_an_epoch_early_stopping_ended_in_its_middle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At a terminal the bar's last picture of that epoch showed the epoch before's train/loss: the
    # figures were logged only in the module's on_train_epoch_end, after the bar's.
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    # Validations at the middle and end of each epoch; none can gain 1.0 in accuracy, so the third,
    # in the middle of the second epoch, is the second without a gain and stops the run.
    cfg = compose_config(
        "callbacks=early_stopping",
        "callbacks.early_stopping.patience=2",
        "+callbacks.early_stopping.min_delta=1.0",
        "trainer.max_epochs=3",
        "trainer.accelerator=cpu",
        "trainer.limit_train_batches=4",
        "trainer.val_check_interval=0.5",
        "logger=none",
        f"paths.output_dir={tmp_path}",
    )
    _, datamodule, trainer = start_run(cfg)
    (bar,) = [c for c in trainer.callbacks if isinstance(c, RichProgressBar)]
    shown: list[float] = []
    on_train_epoch_end, refresh = bar.on_train_epoch_end, bar.refresh
    at_epoch_end: list[tuple] = []

    def record_the_bar(trainer, pl_module) -> None:
        at_epoch_end.append((trainer, pl_module))
        on_train_epoch_end(trainer, pl_module)
        at_epoch_end.clear()

    def record_the_picture(*args, **kwargs) -> None:
        # What the bar draws at the epoch's end, not what it would show if drawn again later.
        if at_epoch_end:
            shown.append(float(bar.get_metrics(*at_epoch_end[0])["train/loss"]))
        refresh(*args, **kwargs)

    monkeypatch.setattr(bar, "on_train_epoch_end", record_the_bar)
    monkeypatch.setattr(bar, "refresh", record_the_picture)
    tally = _TallyAtEpochEnd()
    trainer.callbacks.append(tally)
    trainer.fit(builders.build_module(cfg, datamodule.spec), datamodule=datamodule)
    assert trainer.current_epoch == 2 and len(tally.tallies) == 2, "the run did not stop in its 2nd epoch"
    assert tally.tallies[0] != tally.tallies[1]
    assert shown == pytest.approx(tally.tallies)


def test_a_terminal_run_keeps_each_epochs_figures_in_its_log_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    # At a terminal only the progress bar showed an epoch's figures, and the bar is redrawn: the
    # run's train.log kept none of them. The plain line goes to the file, not the console too.
    import logging
    from types import SimpleNamespace

    from zoo.training.callbacks import EpochSummary

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    cfg = compose_config("logger=none", f"paths.output_dir={tmp_path}")
    (summary,) = [c for c in builders.build_callbacks(cfg) if isinstance(c, EpochSummary)]
    trainer = SimpleNamespace(
        is_global_zero=True,
        callback_metrics={"val/loss": torch.tensor(0.5)},
        current_epoch=0,
        max_epochs=3,
        sanity_checking=False,
    )
    with caplog.at_level(logging.INFO, logger="zoo"):
        summary.on_validation_end(trainer, SimpleNamespace())
        summary.on_train_epoch_end(trainer, SimpleNamespace())
    assert "epoch 1/3  val/loss=0.5000" in caplog.text
    assert "epoch 1/3" not in capsys.readouterr().out
