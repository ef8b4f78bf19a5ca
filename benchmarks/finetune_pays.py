"""Does fine-tuning pay? Few-shot digits, fine-tuned from a network that knows half of them, against
the same network trained from scratch on the same data with the same budget.

1. Source: train on digits 0-4 only (their whole training split), as train.py would.
2. Fine-tune that checkpoint on all ten digits with only `--per-class` training images of each,
   through finetune.py's own code path (configs/finetune.yaml; `--head extend` keeps the rows of
   0-4 and adds rows for 5-9).
3. Scratch: the same architecture, data, optimizer, schedule, augmentation and number of epochs,
   from random weights (configs/train.yaml).

Both are scored on the full ten-class test split (360 images) with their final weights: with a few
images per class there is no honest validation set to pick a "best" epoch from. Repeated over
`--seeds`; each seed draws its own few-shot sample and initialisation.

The digits data module has no class-subset or few-shot options, so `DigitSubset` below adds them;
the data options this wants are `classes` (keep these, relabelled 0..k-1) and `train_per_class`.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

from zoo.data import DigitsDataModule
from zoo.training import builders
from zoo.training.callbacks import EpochSummary
from zoo.training.finetuning import build_finetune_module
from zoo.training.overrides import CONFIG_DIR


class DigitSubset(DigitsDataModule):
    """The digits split as DigitsDataModule cuts it, restricted to `classes` (relabelled in that
    order), with `train_per_class` training images of each class drawn at random (all if None)."""

    def __init__(self, classes: list[int], train_per_class: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.classes, self.train_per_class = list(classes), train_per_class

    def load_splits(self):
        splits, names = super().load_splits()
        relabel = torch.full((len(names),), -1, dtype=torch.long)
        relabel[self.classes] = torch.arange(len(self.classes))
        generator = torch.Generator().manual_seed(self.seed)
        for split, (images, labels) in splits.items():
            keep = torch.nonzero(relabel[labels] >= 0).flatten()
            if split == "train" and self.train_per_class is not None:
                chosen = []
                for digit in self.classes:
                    of_digit = keep[labels[keep] == digit]
                    chosen.append(
                        of_digit[torch.randperm(len(of_digit), generator=generator)[: self.train_per_class]]
                    )
                keep = torch.cat(chosen).sort().values
            splits[split] = (images[keep], relabel[labels[keep]])
        return splits, tuple(names[digit] for digit in self.classes)


def _cfg(config: str, run_dir: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(
            config_name=config,
            overrides=[
                f"paths.output_dir={run_dir}",
                "logger=none",
                "callbacks.tensorboard_images=null",
                "callbacks.lr_monitor=null",
                *overrides,
            ],
        )


def _datamodule(cfg, classes: list[int], per_class: int | None) -> DigitSubset:
    options = {key: value for key, value in builders.to_plain(cfg.data).items() if key != "_target_"}
    datamodule = DigitSubset(classes, per_class, **options)
    datamodule.setup("fit")
    return datamodule


def _fit_and_test(cfg, module, datamodule) -> float:
    trainer = builders.build_trainer(cfg)
    # One line per seed is the output here, not one per epoch.
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, EpochSummary)]
    trainer.fit(module, datamodule=datamodule, weights_only=True)
    # The final weights: no checkpoint picked on validation data a few-shot user would not have.
    (result,) = trainer.test(module, datamodule=datamodule, verbose=False, weights_only=True)
    return float(result["test/acc"])


def run_seed(args: argparse.Namespace, seed: int, workdir: Path) -> tuple[float, float]:
    common = [f"model={args.model}", f"seed={seed}", f"optimizer.lr={args.lr}"]
    # 1. The source knows digits 0-4 only.
    source_cfg = _cfg("train", workdir / "source", [*common, f"trainer.max_epochs={args.source_epochs}"])
    pl.seed_everything(seed, verbose=False)
    source_data = _datamodule(source_cfg, list(range(5)), None)
    source = builders.build_module(source_cfg, source_data.spec)
    source_acc = _fit_and_test(source_cfg, source, source_data)
    checkpoint = workdir / "source.ckpt"
    source.trainer.save_checkpoint(checkpoint)

    few_shot = [*common, f"trainer.max_epochs={args.epochs}"]
    # 2. Fine-tune it on all ten digits, a few images of each.
    finetune_cfg = _cfg(
        "finetune", workdir / "finetune", [*few_shot, f"ckpt_path={checkpoint}", f"finetune.head={args.head}"]
    )
    pl.seed_everything(seed, verbose=False)
    data = _datamodule(finetune_cfg, list(range(10)), args.per_class)
    module, summary = build_finetune_module(finetune_cfg, data.spec)
    finetuned = _fit_and_test(finetune_cfg, module, data)

    # 3. The same data and budget from scratch.
    scratch_cfg = _cfg("train", workdir / "scratch", few_shot)
    pl.seed_everything(seed, verbose=False)
    data = _datamodule(scratch_cfg, list(range(10)), args.per_class)
    scratch = _fit_and_test(scratch_cfg, builders.build_module(scratch_cfg, data.spec), data)
    print(
        f"seed {seed}: source (digits 0-4) test/acc={source_acc:.4f}  |  "
        f"{args.per_class}/class, {args.epochs} epochs: fine-tuned {finetuned:.4f}  scratch {scratch:.4f}",
        flush=True,
    )
    return finetuned, scratch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--per-class", type=int, default=10, help="training images per digit")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of both few-shot runs")
    parser.add_argument("--source-epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--head", default="extend", choices=["extend", "replace"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            results.append(run_seed(args, seed, Path(tmp) / str(seed)))
    finetuned, scratch = zip(*results, strict=True)
    print(
        f"{args.model}, {args.per_class} images per digit, {args.epochs} epochs, test on all ten digits "
        f"(mean of {len(results)} seeds): fine-tuned test/acc={statistics.mean(finetuned):.4f}  "
        f"from scratch test/acc={statistics.mean(scratch):.4f}"
    )


if __name__ == "__main__":
    main()
