"""Train a zoo model: python train.py [model=NAME] [data=NAME] [key=value ...] (see README.md)."""

from __future__ import annotations

from zoo.training.cli import precheck

precheck(resume_key="ckpt_path")  # before the heavy imports: a typo is answered at once

from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from zoo.training import builders, outputs  # noqa: E402
from zoo.training.checkpoint import check_resumable  # noqa: E402
from zoo.training.checkpoint_io import remove_stale_partials  # noqa: E402
from zoo.training.distributed import isolated_job  # noqa: E402
from zoo.training.errors import UserError, user_errors  # noqa: E402
from zoo.training.fit import fit_test_and_record  # noqa: E402
from zoo.training.validation import validate_config  # noqa: E402


def train(cfg: DictConfig) -> dict[str, float]:
    run_dir = Path(cfg.paths.output_dir)
    if (run_dir / "metrics.json").exists():
        raise UserError(f"run directory {run_dir} already holds a finished run; choose another hydra.run.dir")
    validate_config(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = builders.build_datamodule(cfg)
    trainer = builders.build_trainer(cfg)
    builders.scale_learning_rate(cfg, trainer)
    module = builders.build_module(cfg, datamodule.spec)
    if cfg.ckpt_path:
        check_resumable(cfg.ckpt_path, module)
        if trainer.is_global_zero:
            remove_stale_partials(Path(cfg.ckpt_path).parent)
    if trainer.is_global_zero:
        outputs.save_resolved_config(cfg, run_dir)

    return fit_test_and_record(cfg, trainer, module, datamodule, run_dir, resume_from=cfg.ckpt_path)


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with user_errors(), isolated_job():
        metrics = train(cfg)
    # Returned for Hydra sweepers that optimise a value.
    return metrics.get("test/acc")


if __name__ == "__main__":
    main()
