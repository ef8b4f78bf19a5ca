"""A checkpoint from a stranger cannot run code: every load is weights-only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .conftest import Payload, run_script


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


def test_a_checkpoint_naming_a_foreign_data_module_is_refused(tmp_path: Path, trained_run: Path) -> None:
    checkpoint = torch.load(trained_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["data_config"] = {
        "_target_": "os.system",
        "command": f"touch {tmp_path}/x",
    }
    path = tmp_path / "foreign.ckpt"
    torch.save(checkpoint, path)
    result = run_script("evaluate.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'out'}", check=False)
    assert result.returncode == 2 and "not one of cnn-zoo's" in result.stderr
    assert not (tmp_path / "x").exists()


def test_saved_hyperparameters_are_plain_types(trained_run: Path) -> None:
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)

    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (str, int, float, bool))

    assert plain(checkpoint["hyper_parameters"])
