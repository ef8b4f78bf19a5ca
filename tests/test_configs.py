"""Every option of every config group composes with the real configs, and the pieces build."""

from __future__ import annotations

import functools
import inspect
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from zoo.data import DataSpec
from zoo.training import builders, evaluation
from zoo.training.builders import to_plain
from zoo.training.checkpoint import allowed_data_targets
from zoo.training.module import ImageClassifier
from zoo.training.overrides import CONFIG_DIR, options

from .conftest import compose_config

GROUPS = ["model", "data", "optimizer", "scheduler", "trainer", "callbacks", "logger", "experiment", "debug"]


def test_defaults_are_lenet5_on_digits_with_tensorboard() -> None:
    cfg = compose_config()
    assert cfg.model.name == "lenet5"
    assert cfg.data._target_.endswith("DigitsDataModule")
    assert "tensorboard" in cfg.logger
    assert isinstance(cfg.seed, int)


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group: str, option: str) -> None:
    cfg = compose_config(f"{group}={option}")
    assert cfg.model.name and cfg.trainer._target_


@pytest.mark.parametrize("config_name", ["train", "finetune", "evaluate"])
def test_every_entry_points_sweeps_land_under_runs_beside_its_single_runs(config_name: str) -> None:
    # evaluate.py -m wrote its reports to Hydra's default ./multirun/DATE/TIME/, outside the runs/ that
    # `tensorboard --logdir runs` shows.
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, return_hydra_config=True)
    hydra = OmegaConf.to_container(cfg.hydra, resolve=False)
    assert hydra["run"]["dir"] == "runs/${task_name}/${now:%Y-%m-%d_%H-%M-%S-%f}"
    assert hydra["sweep"] == {
        "dir": "runs/${task_name}/multirun/${now:%Y-%m-%d_%H-%M-%S-%f}",
        "subdir": "${hydra.job.num}",
    }


def test_required_group_options_exist() -> None:
    assert {"sgd", "adam", "adamw"} <= set(options("optimizer"))
    assert {"none", "cosine", "step", "onecycle"} <= set(options("scheduler"))
    assert {"default", "cpu", "gpu"} <= set(options("trainer"))
    assert {"tensorboard", "csv", "none"} <= set(options("logger"))
    assert {"fast_dev_run", "overfit"} <= set(options("debug"))
    assert options("experiment")


def test_trainer_keys_are_lightning_trainer_arguments() -> None:
    accepted = set(inspect.signature(pl.Trainer.__init__).parameters)
    for option in options("trainer"):
        cfg = compose_config(f"trainer={option}")
        keys = set(cfg.trainer) - {"_target_"}
        assert keys <= accepted, keys - accepted


# evaluate.py checks data.KEY=... against every data config's keys before torch is imported: they
# stand for the data modules' arguments, which only importing the classes would tell.
@pytest.mark.parametrize("data", options("data"))
def test_each_data_config_sets_every_argument_of_its_module(data: str) -> None:
    section = OmegaConf.to_container(compose_config(f"data={data}").data, resolve=False)
    target = section.pop("_target_")
    assert set(section) == set(inspect.signature(get_class(target)).parameters)


def test_the_data_modules_checkpoints_may_name_are_those_the_data_configs_build() -> None:
    # zoo.data lists them itself, as an installed package has no configs/ to read them from.
    targets = {compose_config(f"data={data}").data._target_ for data in options("data")}
    assert targets == allowed_data_targets()


@pytest.mark.parametrize("optimizer", options("optimizer"))
@pytest.mark.parametrize("scheduler", options("scheduler"))
def test_optimizer_and_scheduler_build_with_partial(optimizer: str, scheduler: str) -> None:
    cfg = compose_config(f"optimizer={optimizer}", f"scheduler={scheduler}")
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = instantiate(cfg.optimizer)(params=params)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr
    if cfg.scheduler.factory is not None:
        factory = instantiate(cfg.scheduler.factory)
        extra = {"total_steps": 10} if factory.keywords.get("total_steps", 0) is None else {}
        assert isinstance(factory(optimizer=opt, **extra), torch.optim.lr_scheduler.LRScheduler)


def test_command_line_overrides_reach_the_config() -> None:
    cfg = compose_config("optimizer.lr=0.05", "trainer.max_epochs=7", "seed=3", "model=resnet18")
    assert (cfg.optimizer.lr, cfg.trainer.max_epochs, cfg.seed, cfg.model.name) == (0.05, 7, 3, "resnet18")


def test_experiment_overrides_groups_and_values() -> None:
    cfg = compose_config("experiment=resnet18_digits")
    assert cfg.model.name == "resnet18"
    assert cfg.optimizer._target_ == "torch.optim.SGD"
    assert cfg.scheduler.interval == "step"


def test_evaluate_config_composes_without_data() -> None:
    cfg = compose_config("ckpt_path=x.ckpt", config_name="evaluate")
    assert cfg.get("data") is None and cfg.ckpt_path == "x.ckpt"
    cfg = compose_config("ckpt_path=x.ckpt", "data=digits", config_name="evaluate")
    assert cfg.data._target_.endswith("DigitsDataModule")


# evaluate.py's batch_size once was validated and then ignored: evaluation read only the data's
# eval_batch_size. The digits test split holds 360 images.
@pytest.mark.parametrize(
    ("overrides", "batch_sizes"),
    [
        ((), [360]),  # unset: the trained data's eval_batch_size, 512
        (("batch_size=100",), [100, 100, 100, 60]),
        (("data=digits", "batch_size=150"), [150, 150, 60]),
    ],
    ids=["data-default", "from-checkpoint", "named-data"],
)
def test_evaluate_batch_size_reaches_the_loader(overrides: tuple[str, ...], batch_sizes: list[int]) -> None:
    cfg = compose_config("ckpt_path=x.ckpt", *overrides, config_name="evaluate")
    trained_on = to_plain(compose_config().data)
    datamodule = instantiate(evaluation.data_config(cfg, trained_on))
    datamodule.setup("test")
    assert [len(labels) for _, labels in datamodule.test_dataloader()] == batch_sizes


@pytest.mark.parametrize("data", options("data"))
def test_overfit_debugging_trains_on_unaugmented_batches(data: str) -> None:
    # With the digits' random crops on, debug=overfit saw new images every epoch and ended near 92%
    # training accuracy instead of memorising its three batches.
    cfg = compose_config(f"data={data}", "debug=overfit")
    assert (cfg.data.augment, cfg.data.mixup_alpha, cfg.data.cutmix_alpha) == ("none", 0.0, 0.0)
    assert cfg.trainer.overfit_batches == 3


def test_checkpoint_files_keep_their_names_in_a_moved_run_folder(tmp_path) -> None:
    # Lightning versions a file (last-v1.ckpt) when the folder differs from the one it saved to:
    # a run moved and resumed then kept a stale last.ckpt, which the next resume read.
    from pytorch_lightning.callbacks import ModelCheckpoint

    from zoo.training.builders import build_callbacks

    cfg = compose_config(f"paths.output_dir={tmp_path}")
    checkpoints = [c for c in build_callbacks(cfg) if isinstance(c, ModelCheckpoint)]
    assert len(checkpoints) == 2
    assert not any(c._enable_version_counter for c in checkpoints)


def test_scale_lr_multiplies_the_rate_by_the_global_batch_and_says_so(
    tmp_path, capsys: pytest.CaptureFixture
) -> None:
    from zoo.training import builders

    cfg = compose_config(
        f"paths.output_dir={tmp_path}", "logger=none", "scale_lr=true", "trainer.accumulate_grad_batches=4"
    )
    trainer = builders.build_trainer(cfg)
    builders.scale_learning_rate(cfg, trainer)
    assert cfg.optimizer.lr == pytest.approx(0.003 * 4)
    assert (
        "scale_lr: optimizer.lr 0.003 x 1 processes x 4 accumulated batches = 0.012"
        in capsys.readouterr().out
    )


# Guards the linear scaling rule's process count: the rate grows with the processes too.
def test_scale_lr_counts_every_process(tmp_path) -> None:
    cfg = compose_config(f"paths.output_dir={tmp_path}", "logger=none", "scale_lr=true")
    trainer = SimpleNamespace(world_size=4, accumulate_grad_batches=2, is_global_zero=False)
    builders.scale_learning_rate(cfg, trainer)
    assert cfg.optimizer.lr == pytest.approx(0.003 * 8)


# Guards model_config: the data's image size picks the stem only where model.small_input is null.
def test_a_stem_given_in_the_config_is_kept_whatever_the_image_size(tmp_path) -> None:
    spec = DataSpec(class_names=tuple("0123456789"), channels=1, image_size=32, mean=(0.5,), std=(0.25,))
    chosen = builders.model_config(compose_config(f"paths.output_dir={tmp_path}", "model=resnet18"), spec)
    given = compose_config(f"paths.output_dir={tmp_path}", "model=resnet18", "model.small_input=false")
    assert chosen["small_input"] is True and builders.model_config(given, spec)["small_input"] is False


# Guards configure_optimizers: the schedule steps at the interval the config names (onecycle: each step).
def test_the_schedule_steps_at_the_configured_interval() -> None:
    spec = DataSpec(class_names=("a", "b"), channels=1, image_size=32, mean=(0.5,), std=(0.25,))
    module = ImageClassifier(
        model={"name": "lenet5", "num_classes": 2, "in_chans": 1},
        data=spec.to_dict(),
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1),
        scheduler_interval="step",
    )
    assert module.configure_optimizers()["lr_scheduler"]["interval"] == "step"
