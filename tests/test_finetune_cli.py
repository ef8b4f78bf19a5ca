"""finetune.py end to end, as a user runs it: from a train.py run and from a torchvision state dict,
evaluate.py on the result, and one clear line for a source that cannot be used."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .conftest import checkpoint_weights, run_script

FAST = ("logger=none", "trainer.limit_val_batches=1")


def test_extend_a_train_run_unfreeze_on_schedule_evaluate_and_resume(
    trained_run: Path, tmp_path: Path
) -> None:
    source = next((trained_run / "checkpoints").glob("best*.ckpt"))
    run_dir = tmp_path / "finetune"
    # A constant rate: a finished cosine schedule would leave the resumed epoch nothing to learn with.
    command = (f"ckpt_path={source}", "finetune.head=extend", "scheduler=none", *FAST)
    result = run_script(
        "finetune.py",
        *command,
        "finetune.unfreeze_at_epoch=1",
        "trainer.max_epochs=2",
        f"hydra.run.dir={run_dir}",
    )
    assert f"fine-tuning lenet5 from checkpoint {source}" in result.stdout
    assert "10 of them with the source's rows" in result.stdout
    assert "epoch 2: backbone unfrozen" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.6

    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    hparams = last["hyper_parameters"]
    assert hparams["source"]["kind"] == "checkpoint" and hparams["source"]["path"] == str(source.resolve())
    assert hparams["source"]["head"] == "extend" and hparams["data"]["class_names"] == [
        str(d) for d in range(10)
    ]
    assert last["callbacks"]["BackboneFreeze"] == {"unfrozen_at_epoch": 1}
    # The backbone trained in epoch 2, so it is no longer the source's.
    assert not torch.equal(
        last["state_dict"]["net.features.0.weight"], checkpoint_weights(source)["net.features.0.weight"]
    )

    # evaluate.py reads the fine-tuned checkpoint like any other and reproduces the test accuracy.
    best = next((run_dir / "checkpoints").glob("best*.ckpt"))
    run_script("evaluate.py", f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'evaluate'}")
    report = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())
    assert abs(report["test/acc"] - metrics["test/acc"]) < 1e-6

    # Resumed as if killed before the end (no metrics.json), asking for a later unfreeze: the backbone,
    # unfrozen in the saved run, keeps training (the resumed epoch changes it) and is not frozen again.
    (run_dir / "metrics.json").unlink()
    result = run_script(
        "finetune.py", *command, "finetune.unfreeze_at_epoch=5", "trainer.max_epochs=3", f"resume={run_dir}"
    )
    assert "resuming the fine-tune" in result.stdout and "unfrozen" not in result.stdout
    resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 2 and resumed["callbacks"]["BackboneFreeze"] == {"unfrozen_at_epoch": 1}
    key = "net.features.0.weight"
    assert not torch.equal(resumed["state_dict"][key], last["state_dict"][key])


def test_a_torchvision_state_dict_on_grey_digits_with_a_frozen_backbone(
    torchvision_resnet18: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    run_script(
        "finetune.py",
        f"ckpt_path={torchvision_resnet18}",
        "model=resnet18",
        "finetune.freeze_backbone=true",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "test=false",
        *FAST,
        f"hydra.run.dir={run_dir}",
    )
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # torchvision's standard stem is kept (its tensors fit no other), on 1 channel for 10 digits.
    assert last["hyper_parameters"]["model"] == {
        "name": "resnet18",
        "num_classes": 10,
        "in_chans": 1,
        "small_input": False,
        "dropout": 0.0,  # not a shape setting: the config's value
    }
    assert last["hyper_parameters"]["source"]["kind"] == "state_dict"
    tuned = {key.removeprefix("net."): value for key, value in last["state_dict"].items()}
    saved = torch.load(torchvision_resnet18, weights_only=True)
    # Frozen: every backbone tensor (BatchNorm statistics too) is the file's; the RGB filters are summed.
    assert torch.equal(tuned["conv1.weight"], saved["conv1.weight"].sum(dim=1, keepdim=True))
    for key, value in saved.items():
        if key != "conv1.weight" and not key.startswith("fc."):
            assert torch.equal(tuned[key], value), key
    assert tuned["fc.weight"].shape == (10, 512)


def test_a_source_of_another_architecture_gets_one_clear_line(
    torchvision_resnet18: Path, tmp_path: Path
) -> None:
    # The other refusals (not a state dict, too few classes, no source) raise the same UserError and
    # are checked in process, in test_finetune_surgery.py.
    result = run_script(
        "finetune.py",
        f"ckpt_path={torchvision_resnet18}",
        "model=vgg11",
        *FAST,
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "does not hold vgg11 weights" in errors[0], result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_source_refused_inside_the_job_leaves_no_new_run_folder(tmp_path: Path) -> None:
    # Read once torch has loaded, after Hydra made the run folder: the refusal left .hydra/, the log
    # and the event file the trainer had begun.
    import zoo

    weights = tmp_path / "lenet5.pth"
    torch.save(zoo.create_model("lenet5", num_classes=10, in_chans=1).state_dict(), weights)
    run_dir = tmp_path / "new" / "run"
    result = run_script("finetune.py", f"ckpt_path={weights}", f"hydra.run.dir={run_dir}", check=False)
    assert result.returncode == 2 and "which does not say its architecture" in result.stderr
    assert sorted(tmp_path.iterdir()) == [weights]
