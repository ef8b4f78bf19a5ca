"""Every user error gets one clear line on stderr, a non-zero exit, and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.training.checkpoint import load_weights_file
from zoo.training.errors import UserError

from .conftest import run_script


def _assert_one_clear_line(result, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_model_lists_the_known_models() -> None:
    result = run_script("train.py", "model=resnet9000", check=False)
    _assert_one_clear_line(result, "resnet9000", "lenet5", "resnet18")


def test_unknown_data_set_lists_the_known_ones() -> None:
    result = run_script("train.py", "data=imagenet21k", check=False)
    _assert_one_clear_line(result, "imagenet21k", "digits")


def test_evaluate_without_ckpt_path_says_how_to_pass_one(tmp_path: Path) -> None:
    result = run_script("evaluate.py", f"hydra.run.dir={tmp_path / 'e'}", check=False)
    _assert_one_clear_line(result, "ckpt_path")


# Files that are not checkpoints, each failing differently inside torch.load.
NOT_CHECKPOINTS = {
    "empty": b"",  # EOFError
    "text": b"not a checkpoint at all",  # UnpicklingError
    "truncated": b"PK\x03\x04truncated zip",  # a zip's signature, then nothing readable
    # The weights-only unpickler raises IndexError, KeyError and struct.error on these three.
    "passwd": b"root:x:0:0:root:/root:/bin/bash\n",
    "unknown-memo-key": b"h\x05",
    "short-integer": b"J\xba?",
}


def _bogus_checkpoint(tmp_path: Path, name: str) -> Path:
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(NOT_CHECKPOINTS[name])
    return bogus


@pytest.mark.parametrize("name", NOT_CHECKPOINTS)
def test_a_file_that_is_not_a_checkpoint_is_one_user_error_naming_it(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match="bogus.ckpt") as raised:
        load_weights_file(_bogus_checkpoint(tmp_path, name))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("name", ["empty", "text", "passwd"])
def test_evaluate_on_a_file_that_is_not_a_checkpoint(tmp_path: Path, name: str) -> None:
    bogus = _bogus_checkpoint(tmp_path, name)
    result = run_script("evaluate.py", f"ckpt_path={bogus}", f"hydra.run.dir={tmp_path / 'e'}", check=False)
    _assert_one_clear_line(result, "bogus.ckpt")
    assert bogus.read_bytes() == NOT_CHECKPOINTS[name]


def test_evaluate_on_a_missing_file(tmp_path: Path) -> None:
    result = run_script(
        "evaluate.py", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'e'}", check=False
    )
    _assert_one_clear_line(result, "does not exist")
