"""Every experiment file (configs/experiment/) composes into the recipe its header describes, and
trains end to end on tiny files written here in its data set's real format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from zoo.training.overrides import CONFIG_DIR, options

from .conftest import ROOT, compose_config, run_script
from .test_data_sets import TINY, WRITERS

EXPERIMENTS = options("experiment")

_SGD_CIFAR = {
    "optimizer._target_": "torch.optim.SGD",
    "optimizer.lr": 0.1,
    "optimizer.momentum": 0.9,
    "optimizer.weight_decay": 5e-4,
    "optimizer.nesterov": False,
    "trainer.max_epochs": 200,
    "data.batch_size": 128,
    "data.augment": "standard",
    "model.small_input": None,  # chosen from the 32 px images: the small stem
    "label_smoothing": 0.0,
}

# What each file's header says it trains, as the composed config must hold it.
RECIPES: dict[str, dict[str, object]] = {
    "resnet18_digits": {
        "model.name": "resnet18",
        "data._target_": "zoo.data.DigitsDataModule",
        "optimizer._target_": "torch.optim.SGD",
        "optimizer.lr": 0.1,
        "scheduler.factory._target_": "torch.optim.lr_scheduler.OneCycleLR",
        "scheduler.interval": "step",
        "trainer.max_epochs": 8,
        "label_smoothing": 0.1,
    },
    "resnet18_cifar10": {
        **_SGD_CIFAR,
        "model.name": "resnet18",
        "data.dataset": "cifar10",
        "scheduler.factory._target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
        "scheduler.factory.T_max": 200,
        "scheduler.factory.eta_min": 0.0,
    },
    "densenet121_cifar100": {
        **_SGD_CIFAR,
        "model.name": "densenet121",
        "data.dataset": "cifar100",
        "scheduler.factory._target_": "torch.optim.lr_scheduler.MultiStepLR",
        "scheduler.factory.milestones": [60, 120, 160],
        "scheduler.factory.gamma": 0.2,
        "scheduler.interval": "epoch",
    },
    "lenet5_mnist": {
        "model.name": "lenet5",
        "data.dataset": "mnist",
        "data.image_size": 32,
        "data.augment": "none",
        "optimizer._target_": "torch.optim.Adam",
        "optimizer.lr": 0.003,
        "scheduler.factory._target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
        "trainer.max_epochs": 20,
    },
}


def test_every_experiment_file_has_its_recipe_checked_here() -> None:
    assert set(EXPERIMENTS) == set(RECIPES)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_experiment_composes_into_the_recipe_its_header_describes(name: str) -> None:
    cfg = compose_config(f"experiment={name}")
    expected = RECIPES[name]
    assert {key: OmegaConf.select(cfg, key) for key in expected} == expected
    # Its runs land in runs/NAME/, and its header starts with the command that runs it.
    assert cfg.task_name == name
    header = (Path(CONFIG_DIR) / "experiment" / f"{name}.yaml").read_text()
    assert f"\n# python train.py experiment={name}\n" in header


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_the_readme_lists_every_experiment_file(name: str) -> None:
    assert f"\n| `{name}` |" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_experiment_trains_end_to_end_on_tiny_files(tmp_path: Path, name: str) -> None:
    dataset = compose_config(f"experiment={name}").data.get("dataset")  # None: the embedded digits
    files = []
    if dataset is not None:
        WRITERS[dataset](tmp_path / "files")
        files = [f"data.root={tmp_path / 'files'}", "data.download=false", *TINY.get(dataset, [])]
    run_dir = tmp_path / "run"
    run_script(
        "train.py",
        f"experiment={name}",
        *files,
        "data.batch_size=4",
        "data.eval_batch_size=4",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    assert 0 <= json.loads((run_dir / "metrics.json").read_text())["test/acc"] <= 1
    model = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)[
        "hyper_parameters"
    ]["model"]
    # Every recipe here is on 32 px images, for which the model is built with its small stem.
    assert (model["name"], model["small_input"]) == (RECIPES[name]["model.name"], True)
