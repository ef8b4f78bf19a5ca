"""What evaluate.py evaluates on: the checkpoint's own data, another data set, or the training data
with some of its settings changed."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from zoo.data import DigitsDataModule
from zoo.training import builders, evaluation
from zoo.training.errors import UserError
from zoo.training.overrides import data_settings_over_the_checkpoints
from zoo.training.validation import validate_config

from .conftest import compose_config


def _trained_on() -> dict:
    """The data section train.py saves in a checkpoint of its default run (the digits)."""
    return builders.to_plain(compose_config().data)


# A `data` with no _target_ (no data= named) was instantiated alone: Hydra handed back the
# DictConfig itself, and evaluate.py failed on `Missing key setup` with a traceback.
def test_a_partial_data_override_changes_only_those_settings_of_the_trained_data() -> None:
    trained_on = _trained_on()
    cfg = compose_config("ckpt_path=x.ckpt", "+data.image_size=64", "batch_size=100", config_name="evaluate")
    validate_config(cfg)
    chosen = evaluation.data_config(cfg, trained_on)
    assert chosen.image_size == 64 and chosen.eval_batch_size == 100
    assert {key: chosen[key] for key in trained_on if key not in ("image_size", "eval_batch_size")} == {
        key: value for key, value in trained_on.items() if key not in ("image_size", "eval_batch_size")
    }
    datamodule = builders.instantiate_section(chosen, "data")
    assert isinstance(datamodule, DigitsDataModule)
    datamodule.setup("test")
    assert datamodule.spec.image_size == 64
    images, _ = next(iter(datamodule.test_dataloader()))
    assert images.shape[-2:] == (64, 64) and len(images) == 100


# The data modules' messages advise data.root=DIR; without data=NAME evaluate.py's config has no data
# section, and Hydra refused the key and asked for +data.root=DIR.
def test_data_keys_are_laid_over_the_checkpoints_data_as_in_training() -> None:
    argv = data_settings_over_the_checkpoints(
        ["ckpt_path=x.ckpt", "data.root=/d", "+data.image_size=64", "split=val"], "evaluate"
    )
    assert argv == ["ckpt_path=x.ckpt", "++data.root=/d", "+data.image_size=64", "split=val"]
    cfg = compose_config(*argv, config_name="evaluate")
    assert dict(cfg.data) == {"root": "/d", "image_size": 64}
    # With data=NAME the section exists and its keys are set as they are; train.py is left alone.
    named = ["ckpt_path=x.ckpt", "data=mnist", "data.root=/d"]
    assert data_settings_over_the_checkpoints(named, "evaluate") == named
    assert compose_config(*named, config_name="evaluate").data.root == "/d"
    assert data_settings_over_the_checkpoints(["data.root=/d"], "train") == ["data.root=/d"]


# The merged data meets the same checks a full data= does: the rules up front, and the data
# module's own arguments when it is built (an unknown one was a DictConfig passed on unbuilt).
def test_a_bad_partial_data_override_is_one_line() -> None:
    cfg = compose_config("ckpt_path=x.ckpt", "+data.eval_batch_size=0", config_name="evaluate")
    with pytest.raises(UserError, match=re.escape("data.eval_batch_size must be an integer >= 1, got 0")):
        validate_config(cfg)
    cfg = compose_config("ckpt_path=x.ckpt", "+data.shuffle=true", config_name="evaluate")
    validate_config(cfg)
    message = "data has no key 'shuffle'; its keys: batch_size, eval_batch_size, image_size,"
    with pytest.raises(UserError, match=re.escape(message)) as raised:
        evaluation.data_config(cfg, _trained_on())
    assert "\n" not in str(raised.value)


# A typo was answered by the data module's constructor, "unexpected keyword argument 'roott'", with
# no fix named. The reference is the module's own arguments: the checkpoint's record of its data
# lacks the settings added since it was saved, and those are accepted.
def test_an_unknown_data_key_names_the_nearest_argument_of_the_checkpoints_data_module() -> None:
    trained_on = builders.to_plain(compose_config("data=imagefolder").data)
    cfg = compose_config("ckpt_path=x.ckpt", "+data.roott=/d", config_name="evaluate")
    with pytest.raises(UserError, match=re.escape("data has no key 'roott'; did you mean data.root?")):
        evaluation.data_config(cfg, trained_on)
    # channels is an argument of the image folders', not of the digits' module.
    cfg = compose_config("ckpt_path=x.ckpt", "+data.channels=1", config_name="evaluate")
    with pytest.raises(UserError, match=re.escape("data has no key 'channels'; its keys: batch_size,")):
        evaluation.data_config(cfg, _trained_on())
    del trained_on["skip_bad_images"]  # a checkpoint saved before the setting existed
    cfg = compose_config("ckpt_path=x.ckpt", "+data.skip_bad_images=true", config_name="evaluate")
    assert evaluation.data_config(cfg, trained_on).skip_bad_images is True


def test_a_data_key_no_data_module_takes_is_refused_before_the_checkpoint_is_read() -> None:
    with pytest.raises(UserError, match=re.escape("data has no key 'roott'; did you mean data.root?")):
        data_settings_over_the_checkpoints(["ckpt_path=x.ckpt", "data.roott=/d"], "evaluate")
    with pytest.raises(UserError, match=re.escape("data has no key 'shuffle'; no data set takes it")):
        data_settings_over_the_checkpoints(["ckpt_path=x.ckpt", "+data.shuffle=true"], "evaluate")
    # With data=NAME, Hydra checks the key against that config.
    named = ["ckpt_path=x.ckpt", "data=mnist", "data.roott=/d"]
    assert data_settings_over_the_checkpoints(named, "evaluate") == named


def test_a_checkpoint_without_its_data_section_asks_for_data() -> None:
    cfg = compose_config("ckpt_path=x.ckpt", "+data.image_size=64", config_name="evaluate")
    with pytest.raises(UserError, match=re.escape("name it with data=NAME")):
        evaluation.data_config(cfg, None)
    # A full data= needs nothing from the checkpoint.
    named = compose_config("ckpt_path=x.ckpt", "data=digits", "data.image_size=64", config_name="evaluate")
    assert evaluation.data_config(named, None).image_size == 64


# Guards evaluation.predict: batch norm and dropout in evaluation mode, and nothing in the network moved.
def test_predictions_come_from_the_network_in_evaluation_mode() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(64, 3),
    ).train()
    before = copy.deepcopy(net.state_dict())
    images, labels = torch.rand(8, 1, 6, 6), torch.arange(8) % 3
    batches = [(images[:4], labels[:4]), (images[4:], labels[4:])]
    logits, targets = evaluation.predict(net, batches, torch.device("cpu"))
    assert all(torch.equal(value, before[key]) for key, value in net.state_dict().items())
    with torch.no_grad():
        assert torch.allclose(logits, net.eval()(images)) and torch.equal(targets, labels)
