"""Evaluate a checkpoint: python evaluate.py ckpt_path=RUN/checkpoints/last.ckpt [data=NAME] (see README.md).

The model, class names and normalisation come from the checkpoint itself; no model= is needed.
"""

from __future__ import annotations

from zoo.training.cli import ctrl_c_ends_the_imports, precheck, run_hydra_main

precheck("evaluate")

import os  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from zoo.training.errors import UserError, user_errors  # noqa: E402
from zoo.training.run_dir_guard import no_folder_left_by_a_refusal  # noqa: E402
from zoo.training.run_dirs import check_weights_file  # noqa: E402
from zoo.training.runlog import library_logs_in_run_file, say  # noqa: E402
from zoo.training.validation import validate_config  # noqa: E402


def evaluate(cfg: DictConfig) -> dict:
    if not cfg.ckpt_path:
        raise UserError("ckpt_path is required: python evaluate.py ckpt_path=RUN/checkpoints/last.ckpt")
    validate_config(cfg)
    check_weights_file(cfg.ckpt_path)  # a text or HDF5 file, an empty one: told from its first bytes
    # torch and Lightning (seconds of imports) load only once the config has passed: a mistyped key
    # or a value out of range is answered at once.
    with ctrl_c_ends_the_imports():
        import torch

        from zoo.training import builders, evaluation, outputs
        from zoo.training.checkpoint import load_run_checkpoint, module_from_checkpoint

    if cfg.accelerator == "gpu" and not torch.cuda.is_available():
        raise UserError("accelerator=gpu asks for a GPU, but PyTorch sees none; use accelerator=auto or cpu")
    checkpoint = load_run_checkpoint(cfg.ckpt_path)
    module = module_from_checkpoint(checkpoint)
    hparams = checkpoint["hyper_parameters"]

    data_config = evaluation.data_config(cfg, hparams.get("data_config"))
    datamodule = builders.instantiate_section(data_config, "data")
    datamodule.setup("test")
    note = evaluation.check_data_fits(datamodule.spec, hparams["data"])
    if note:
        builders.check_image_size(hparams["model"], datamodule.spec.image_size)
        say(note)
    class_names = list(hparams["data"]["class_names"])

    device = torch.device(
        "cuda" if cfg.accelerator in ("auto", "gpu") and torch.cuda.is_available() else "cpu"
    )
    if getattr(datamodule, "evaluation_note", None):
        say(datamodule.evaluation_note)
    batches = datamodule.test_dataloader() if cfg.split == "test" else datamodule.val_dataloader()
    logits, targets = evaluation.predict(module, batches, device)
    report = evaluation.classification_report(logits, targets, class_names)
    # What was scored, in full: a path relative to where the command ran, or last.ckpt alone (saved
    # again as training goes on), does not tell two reports' checkpoints apart.
    report["ckpt_path"] = os.path.abspath(cfg.ckpt_path)
    report["ckpt_step"] = checkpoint.get("global_step")
    report["split"] = cfg.split
    report["data"] = builders.recorded_data_config(data_config)

    run_dir = Path(cfg.paths.output_dir)
    named = {f"{cfg.split}/{key}": report[key] for key in ("acc", "acc_top5", "loss") if key in report}
    outputs.write_json_atomically(run_dir / "metrics.json", {**named, **report})
    evaluation.save_confusion_png(report["confusion_matrix"], class_names, run_dir / "confusion_matrix.png")
    if cfg.tensorboard:
        evaluation.write_tensorboard(report, cfg.split, run_dir / "tensorboard")
    say(evaluation.describe(report))
    say(evaluation.format_table(report))
    top5 = f"  {cfg.split}/acc_top5={report['acc_top5']:.4f}" if "acc_top5" in report else ""
    say(
        f"run directory: {run_dir}  {cfg.split}/acc={report['acc']:.4f}{top5}"
        f"  {cfg.split}/loss={report['loss']:.4f}"
    )
    return report


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    # A refusal (no checkpoint, another file, data of other classes) comes before the report's files.
    with no_folder_left_by_a_refusal(), user_errors(), library_logs_in_run_file():
        evaluate(cfg)


if __name__ == "__main__":
    run_hydra_main(main)
