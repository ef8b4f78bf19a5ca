"""Fine-tune a trained model on new data: python finetune.py ckpt_path=SOURCE [data=NAME] [finetune.KEY=...]
(see configs/finetune.yaml). It keeps the trained convolutional layers, rebuilds the fully connected
head for the new class list, and writes a run directory as train.py does.
"""

from __future__ import annotations

from zoo.training.cli import ctrl_c_ends_the_imports, precheck, run_hydra_main

# Before the heavy imports: a typo is answered at once. ckpt_path names the source here, so resume=
# is rewritten into resume_ckpt (and the run's own directory).
precheck("finetune", resume_key="resume_ckpt")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from zoo.training.distributed import isolated_job  # noqa: E402
from zoo.training.errors import user_errors  # noqa: E402
from zoo.training.finetune_request import check_finetune_command  # noqa: E402
from zoo.training.run_dir_guard import no_folder_left_by_a_refusal  # noqa: E402
from zoo.training.runlog import library_logs_in_run_file, say  # noqa: E402
from zoo.training.validation import validate_config  # noqa: E402


def finetune(cfg: DictConfig) -> dict[str, float]:
    # torch and Lightning (seconds of imports) load only once Hydra has composed the config and
    # main has checked it: a mistyped key, a value out of range or a missing source is answered at once.
    with ctrl_c_ends_the_imports():
        from zoo.training.finetune_request import check_finetune_request
        from zoo.training.finetuning import build_finetune_module
        from zoo.training.fit import fit_test_and_record, start_run
        from zoo.training.freezing import refuse_freezing_under_plain_ddp

    check_finetune_request(cfg)  # before the trainer and its loggers exist
    run_dir, datamodule, trainer = start_run(cfg, resume_from=cfg.resume_ckpt)
    refuse_freezing_under_plain_ddp(trainer, resume_from=cfg.resume_ckpt)
    module, summary = build_finetune_module(cfg, datamodule.spec)
    if trainer.is_global_zero:
        say(summary)
    return fit_test_and_record(cfg, trainer, module, datamodule, run_dir, resume_from=cfg.resume_ckpt)


@hydra.main(version_base="1.3", config_path="configs", config_name="finetune")
def main(cfg: DictConfig) -> float | None:
    with no_folder_left_by_a_refusal(), user_errors(), isolated_job(), library_logs_in_run_file():
        validate_config(cfg)
        check_finetune_command(cfg)
        metrics = finetune(cfg)
    # Returned for Hydra sweepers that optimise a value.
    return metrics.get("test/acc")


if __name__ == "__main__":
    run_hydra_main(main)
