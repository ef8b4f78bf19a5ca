"""A checkpoint from a stranger cannot run code: every load is weights-only."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from unittest.mock import patch

import pytest
import torch

from zoo import create_model
from zoo.training.builders import to_plain
from zoo.training.checkpoint import load_run_checkpoint, load_weights_file, peek_checkpoint
from zoo.training.errors import UserError
from zoo.training.overrides import options

from .conftest import Payload, compose_config, run_script


def _malicious_checkpoint(tmp_path: Path, trained_run: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload-ran"
    checkpoint = torch.load(trained_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["payload"] = Payload(marker)
    path = tmp_path / "evil.ckpt"
    torch.save(checkpoint, path)
    return path, marker


@pytest.mark.parametrize("script", ["evaluate.py", "finetune.py"])
def test_a_crafted_pickle_is_refused_and_its_payload_never_runs(
    tmp_path: Path, trained_run: Path, script: str
) -> None:
    evil, marker = _malicious_checkpoint(tmp_path, trained_run)
    extra = ["trainer.max_epochs=1", "logger=none"] if script == "finetune.py" else []
    result = run_script(script, f"ckpt_path={evil}", *extra, f"hydra.run.dir={tmp_path / 'out'}", check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "refused to load" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_a_checkpoint_peeked_at_for_its_settings_never_runs_its_payload(tmp_path: Path) -> None:
    # train.py's checks read a resumed checkpoint's settings before anything is built (peek_checkpoint),
    # as evaluate.py and finetune.py load theirs: a stranger's file is refused there too.
    marker, evil = tmp_path / "payload-ran", tmp_path / "evil.ckpt"
    torch.save({"hyper_parameters": {"payload": Payload(marker)}, "global_step": 3}, evil)
    assert peek_checkpoint(evil) == {}
    assert not marker.exists()


def _writes(marker: Path) -> dict:
    """A config that, once instantiated, creates `marker` (pathlib.Path(marker).write_text("x"))."""
    return {
        "_target_": "pathlib.Path.write_text",
        "self": {"_target_": "pathlib.Path", "_args_": [str(marker)]},
    }


# A prefix check on the top-level _target_ let through any callable reachable from a zoo.data module
# (torchvision_sets imports Path) and every _target_ nested in an argument; evaluate.py wrote the file.
FOREIGN_DATA = {
    "foreign-callable": lambda marker: {"_target_": "os.system", "command": f"touch {marker}"},
    "attribute-chain": lambda marker: {
        **_writes(marker),
        "_target_": "zoo.data.torchvision_sets.Path.write_text",
        "data": "x",
    },
    "nested-target": lambda marker: {
        "_target_": "zoo.data.DigitsDataModule",
        "batch_size": {**_writes(marker), "data": "x"},
    },
}


def test_a_checkpoint_naming_a_foreign_data_module_is_refused(tmp_path: Path, trained_run: Path) -> None:
    # The whole command, for the case that did write its file; the others are checked in-process below.
    marker = tmp_path / "PWNED"
    checkpoint = torch.load(trained_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["data_config"] = FOREIGN_DATA["attribute-chain"](marker)
    path = tmp_path / "foreign.ckpt"
    torch.save(checkpoint, path)
    result = run_script("evaluate.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'out'}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path} names ") and "will not be used" in line
    assert not marker.exists()


@pytest.mark.parametrize("make", FOREIGN_DATA.values(), ids=FOREIGN_DATA.keys())
def test_a_foreign_data_section_is_refused_before_anything_is_built(tmp_path: Path, make) -> None:
    marker = tmp_path / "PWNED"
    with pytest.raises(UserError, match="refusing to build it, the checkpoint will not be used"):
        _load_with_data_config(make(marker))
    assert not marker.exists()


@functools.cache
def _project_data_configs() -> dict[str, dict]:
    """Each configs/data option as train.py saves it in a checkpoint (resolved, plain types)."""
    return {name: to_plain(compose_config(f"data={name}").data) for name in options("data")}


def _load_with_data_config(data_config: dict) -> dict:
    hparams = {"model": {"name": "lenet5"}, "data": {}, "data_config": data_config}
    checkpoint = {"state_dict": {}, "hyper_parameters": hparams}
    with patch("zoo.training.checkpoint.load_weights_file", return_value=checkpoint):
        return load_run_checkpoint("crafted.ckpt")


# Each would have Hydra build or call more than the one data module: a Hydra key below the top
# (_args_ and _partial_ change what is called), or a ${...} that resolves to a new mapping. The
# project's own data configs, as saved, still load.
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"augment": {"_partial_": True}}, "'_partial_' at augment"),
        ({"_args_": [1]}, "'_args_' at its top level"),
        ({"mean": [0.5, {"_target_": "os.getcwd"}]}, "'_target_' at mean[1]"),
        ({"root": "${oc.decode:'{_target_: os.getcwd}'}"}, "an interpolation"),
        ({"_target_": ["zoo.data.DigitsDataModule"]}, "not one of cnn-zoo's"),
    ],
)
def test_a_data_section_that_could_build_more_than_a_data_module_is_refused(extra: dict, needle: str) -> None:
    for data_config in _project_data_configs().values():
        assert _load_with_data_config(data_config)["hyper_parameters"]["data_config"] is data_config
        with pytest.raises(UserError, match=re.escape(needle)) as raised:
            _load_with_data_config({**data_config, **extra})
        assert "\n" not in str(raised.value) and "will not be used" in str(raised.value)


def test_a_data_section_that_is_not_a_mapping_is_refused() -> None:
    # Only a mapping naming one of the project's data modules is built; anything else is not looked into.
    for data_config in (["zoo.data.DigitsDataModule"], "${oc.decode:'{_target_: os.getcwd}'}"):
        with pytest.raises(
            UserError, match=re.escape(f"names a data section of type {type(data_config).__name__}")
        ):
            _load_with_data_config(data_config)


def test_a_checkpoint_without_its_data_description_is_refused() -> None:
    # A model description alone is not enough: rebuilding the run needs its data section too.
    checkpoint = {"state_dict": {}, "hyper_parameters": {"model": {"name": "lenet5"}}}
    with patch("zoo.training.checkpoint.load_weights_file", return_value=checkpoint):
        with pytest.raises(UserError, match=re.escape("crafted.ckpt is not a cnn-zoo checkpoint")):
            load_run_checkpoint("crafted.ckpt")
    # Nor is a description without the weights it describes.
    checkpoint = {"hyper_parameters": {"model": {"name": "lenet5"}, "data": {}}}
    with patch("zoo.training.checkpoint.load_weights_file", return_value=checkpoint):
        with pytest.raises(UserError, match=re.escape("crafted.ckpt is not a cnn-zoo checkpoint")):
            load_run_checkpoint("crafted.ckpt")


# torch's message reads "Unsupported global: GLOBAL zoo.models.lenet.LeNet5 was not ...": the
# pattern once took "GLOBAL" for the name, and the way out (save the state dict) went unsaid.
def test_a_whole_pickled_model_is_refused_naming_its_class_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(create_model("lenet5", num_classes=10, in_chans=1), path)
    with pytest.raises(UserError) as raised:
        load_weights_file(path)
    message = str(raised.value)
    assert "zoo.models.lenet.LeNet5" in message and "(GLOBAL)" not in message
    assert "torch.save(model.state_dict(), PATH)" in message and "\n" not in message


def test_saved_hyperparameters_are_plain_types(trained_run: Path) -> None:
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)

    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (str, int, float, bool))

    assert plain(checkpoint["hyper_parameters"])


def test_weights_that_do_not_fit_name_the_tensors() -> None:
    # The message was torch's first line alone, "Error(s) in loading state_dict for ImageClassifier:".
    from zoo.data import DataSpec
    from zoo.training.checkpoint import module_from_checkpoint
    from zoo.training.module import ImageClassifier

    spec = DataSpec(class_names=tuple("0123456789"), channels=1, image_size=32, mean=(0.5,), std=(0.25,))
    module = ImageClassifier(model={"name": "lenet5", "num_classes": 10, "in_chans": 1}, data=spec.to_dict())
    weights = module.state_dict()
    dropped = next(iter(weights))
    del weights[dropped]
    checkpoint = {"hyper_parameters": dict(module.hparams), "state_dict": weights}
    with pytest.raises(UserError, match=re.escape(f'Missing key(s) in state_dict: "{dropped}"')):
        module_from_checkpoint(checkpoint)


def test_a_checkpoint_read_for_its_description_alone_maps_its_tensors(tmp_path: Path, monkeypatch) -> None:
    # A resume read the whole checkpoint (weights, optimizer state) to compare its description, and
    # Lightning then read it again; torch maps only its zip format, so an older file is read whole.
    zipped, legacy = tmp_path / "zip.pt", tmp_path / "legacy.pt"
    torch.save({"w": torch.arange(3.0)}, zipped)
    torch.save({"w": torch.arange(3.0)}, legacy, _use_new_zipfile_serialization=False)
    real_load, mapped = torch.load, []

    def load(*args, **kwargs):
        mapped.append(kwargs.get("mmap", False))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    assert torch.equal(load_weights_file(zipped, mmap=True)["w"], torch.arange(3.0)) and mapped == [True]
    assert torch.equal(load_weights_file(legacy, mmap=True)["w"], torch.arange(3.0))
    assert mapped == [True, True, False]
