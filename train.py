"""Train a zoo model: python train.py [model=NAME] [data=NAME] [key=value ...] (see README.md)."""

from __future__ import annotations

from zoo.training.cli import ctrl_c_ends_the_imports, precheck, run_hydra_main

precheck("train", resume_key="ckpt_path")  # before Hydra writes anything: a typo is answered at once

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from zoo.training.distributed import isolated_job  # noqa: E402
from zoo.training.errors import user_errors  # noqa: E402
from zoo.training.run_dir_guard import no_folder_left_by_a_refusal  # noqa: E402
from zoo.training.run_dirs import check_weights_file  # noqa: E402
from zoo.training.runlog import library_logs_in_run_file  # noqa: E402
from zoo.training.validation import validate_config  # noqa: E402


def train(cfg: DictConfig) -> dict[str, float]:
    # torch and Lightning (seconds of imports) load only once Hydra has composed the config and
    # validate_config has read it: a mistyped key or a value out of range is answered at once.
    if cfg.ckpt_path:
        check_weights_file(cfg.ckpt_path)  # a text or HDF5 file, an empty one: told from its first bytes
    with ctrl_c_ends_the_imports():
        from zoo.training import builders
        from zoo.training.checkpoint import check_resumable
        from zoo.training.fit import fit_test_and_record, start_run

    resume_from = cfg.ckpt_path or None  # ckpt_path= (empty) is not set, as null
    run_dir, datamodule, trainer = start_run(cfg, resume_from=resume_from)
    module = builders.build_module(cfg, datamodule.spec)
    if resume_from:
        check_resumable(resume_from, module)
    return fit_test_and_record(cfg, trainer, module, datamodule, run_dir, resume_from=resume_from)


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with no_folder_left_by_a_refusal(), user_errors(), isolated_job(), library_logs_in_run_file():
        validate_config(cfg)
        metrics = train(cfg)
    # Returned for Hydra sweepers that optimise a value.
    return metrics.get("test/acc")


if __name__ == "__main__":
    run_hydra_main(main)
