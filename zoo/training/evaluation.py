"""Per-class metrics and the confusion matrix of a trained classifier on a data split."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy
import torch
import torch.nn.functional as F
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from ..data import DataSpec
from ..data.base import same_names_in_other_unicode_forms
from .errors import UserError
from .overrides import no_such_key
from .pictures import add_picture

if TYPE_CHECKING:
    from PIL import Image


def data_config(cfg: DictConfig, trained_on: dict | None) -> DictConfig:
    """The data to evaluate on: `data=` when named, else the data the checkpoint was trained on;
    evaluate.py's `batch_size`, when set, replaces that data's eval_batch_size.

    A `data` with no _target_ (data.image_size=64 with no data=) only changes some settings of the
    training data, so it is laid over the checkpoint's data config; instantiated alone it was a
    DictConfig standing in for a data module."""
    given = cfg.get("data")
    if given is not None and not isinstance(given, DictConfig):
        raise UserError(f"data={given!r} is not a data config; name one with data=NAME [data.KEY=...]")
    if given is not None and "_target_" in given:
        chosen = given
    elif trained_on is None:
        raise UserError(
            "the checkpoint does not record the data it was trained on; name it with data=NAME [data.KEY=...]"
        )
    elif given is None:
        chosen = OmegaConf.create(trained_on)
    else:
        _refuse_unknown_keys(given, trained_on.get("_target_"))
        # Resolved first: a ${...} in the override points into evaluate.py's config, not the merged one.
        chosen = OmegaConf.merge(trained_on, OmegaConf.to_container(given, resolve=True))
    if cfg.batch_size is None:
        return chosen
    return OmegaConf.merge(chosen, {"eval_batch_size": cfg.batch_size})


def _refuse_unknown_keys(given: DictConfig, target: object) -> None:
    """data.KEY=... names an argument of the checkpoint's data module: the module's own arguments,
    not the keys the checkpoint recorded (a setting added since it was saved is one of them)."""
    if not isinstance(target, str):
        return  # no module named: instantiating it reports that
    parameters = inspect.signature(get_class(target)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    for key in given:
        if key not in parameters:
            raise UserError(no_such_key("data", str(key), list(parameters)))


def check_data_fits(spec: DataSpec, trained_on: dict) -> str | None:
    """Data a checkpoint cannot read (other classes, other channels) is refused in one line; another
    image size can be read (the networks pool adaptively) and gets a note, as accuracy moves with it."""
    class_names = list(trained_on["class_names"])
    if list(spec.class_names) != class_names:
        raise UserError(
            f"the data has classes {list(spec.class_names)[:10]} but the checkpoint was trained on "
            f"{class_names[:10]}"
            + (
                same_names_in_other_unicode_forms(spec.class_names, class_names)
                or "; evaluate on data with the same classes, or fine-tune with finetune.py"
            )
        )
    if spec.channels != trained_on["channels"]:
        raise UserError(
            f"the data has {spec.channels}-channel images but the checkpoint was trained on "
            f"{trained_on['channels']}-channel ones; set data.channels={trained_on['channels']} where the "
            "data takes it (image folders convert), or fine-tune with finetune.py"
        )
    if spec.image_size != trained_on["image_size"]:
        return (
            f"note: evaluating at {spec.image_size} px a network trained at {trained_on['image_size']} px "
            f"(data.image_size={trained_on['image_size']} matches training)"
        )
    return None


@torch.no_grad()
def predict(
    module: torch.nn.Module, batches: Iterable, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """All logits and targets of a split, kept on the device until the end (no per-batch sync)."""
    module.eval().to(device)
    logits, targets = [], []
    for images, labels in batches:
        logits.append(module(images.to(device, non_blocking=True)).float())
        targets.append(labels.to(device, non_blocking=True))
    return torch.cat(logits).cpu(), torch.cat(targets).cpu()


def classification_report(logits: torch.Tensor, targets: torch.Tensor, class_names: list[str]) -> dict:
    n = len(class_names)
    per_class = {
        "precision": multiclass_precision(logits, targets, n, average=None, zero_division=0),
        "recall": multiclass_recall(logits, targets, n, average=None, zero_division=0),
        "f1": multiclass_f1_score(logits, targets, n, average=None, zero_division=0),
        "support": torch.bincount(targets, minlength=n),
    }
    report = {
        "acc": float(multiclass_accuracy(logits, targets, n, average="micro")),
        "loss": float(F.cross_entropy(logits, targets)),
        "samples": int(len(targets)),
        "per_class": {
            name: {
                metric: float(values[i]) if metric != "support" else int(values[i])
                for metric, values in per_class.items()
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": multiclass_confusion_matrix(logits, targets, n).tolist(),
        "class_names": list(class_names),
    }
    if n > 5:
        report["acc_top5"] = float(multiclass_accuracy(logits, targets, n, top_k=5, average="micro"))
    report["averages"] = {
        average: _averaged(logits, targets, n, average) for average in ("macro", "weighted")
    }
    return report


def _averaged(logits: torch.Tensor, targets: torch.Tensor, n: int, average: str) -> dict:
    """Precision, recall and F1 averaged over the classes as scikit-learn's classification_report
    averages them. "macro" leaves out a class neither in the split nor ever predicted (torchmetrics
    does, as does scikit-learn given no class list): it has no precision or recall, and counting them
    as 0 held every checkpoint's macro F1 below (n-1)/n on a split that lacks a class. "weighted"
    weights each class by its support."""
    return {
        "precision": float(multiclass_precision(logits, targets, n, average=average, zero_division=0)),
        "recall": float(multiclass_recall(logits, targets, n, average=average, zero_division=0)),
        "f1": float(multiclass_f1_score(logits, targets, n, average=average, zero_division=0)),
        "support": int(len(targets)),
    }


def format_table(report: dict) -> str:
    averages = {f"{average} avg": row for average, row in report["averages"].items()}
    width = max(8, *(len(name) for name in [*report["class_names"], *averages]))

    def line(name: str, row: dict) -> str:
        return (
            f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:5.4f}"
            f"  {row['support']:7d}"
        )

    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    lines += [line(name, row) for name, row in report["per_class"].items()]
    return "\n".join([*lines, "", *(line(name, row) for name, row in averages.items())])


def describe(report: dict) -> str:
    """Which checkpoint was scored on what, for a report read apart from the command that made it: two
    evaluations of last.ckpt differ by the step it was saved at."""
    data = report["data"]
    name = str(data.get("_target_", "data")).rsplit(".", 1)[-1]
    where = f" at {data['root']}" if data.get("root") else ""
    return (
        f"checkpoint {report['ckpt_path']} (step {report['ckpt_step']}), {report['split']} split of "
        f"{name}{where}: {report['samples']} images"
    )


def write_tensorboard(report: dict, split: str, folder: Path) -> None:
    """The report as a TensorBoard run, so `tensorboard --logdir runs` shows an evaluation beside the
    training runs: the headline figures as scalars, the confusion matrix as the same picture
    training logs each epoch, and the per-class table as text."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(folder)) as writer:
        for key in ("acc", "acc_top5", "loss"):
            if key in report:
                writer.add_scalar(f"{split}/{key}", report[key], 0)
        picture = labelled_confusion_image(report["confusion_matrix"], report["class_names"])
        add_picture(writer, f"{split}/confusion_matrix", numpy.asarray(picture), 0)
        # Indented four spaces: TensorBoard renders text as Markdown, and this keeps the columns (and
        # a path's underscores). The line above the table is all the run says of which checkpoint it scored.
        lines = [describe(report), "", *format_table(report).splitlines()]
        writer.add_text(f"{split}/per_class", "\n".join(f"    {line}" for line in lines), 0)


def save_confusion_png(matrix: list[list[int]], class_names: list[str], path: Path) -> None:
    labelled_confusion_image(matrix, class_names).save(path)


def labelled_confusion_image(matrix: list[list[int]] | torch.Tensor, class_names: list[str]) -> Image.Image:
    """The confusion matrix as a picture: rows are true classes, columns predictions, each named,
    cells shaded by the row's rate and labelled with counts. Drawn with Pillow, not matplotlib:
    importing matplotlib costs half a second, and torchmetrics imports it whenever it is installed."""
    from PIL import Image, ImageDraw, ImageFont

    from .callbacks import confusion_image, confusion_rates

    counts = torch.as_tensor(matrix).cpu()
    n = len(class_names)
    # The grid stays within 800 px a side until a class is one pixel: cells of at least 6 px drew
    # 1000 classes 6094 px wide, 1.9 s to draw and write and 1.4 MB of event file each validation.
    cell = max(1, min(40, 800 // n))
    font = ImageFont.load_default(size=max(8, min(14, cell // 3)))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text: str) -> tuple[int, int]:
        left, top, right, bottom = measure.textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    # Where a name is taller than its row, names overlapped into a smear: one class in `step` is
    # named instead, as a plot thins its ticks (above 100 classes at the smallest font).
    _, glyph_top, _, glyph_bottom = font.getbbox("Agjy|")
    step = -(-(glyph_bottom - glyph_top) // cell)
    named = range(0, n, step)
    label_room = max(text_size(class_names[i])[0] for i in named) + 8
    title, axis_note = "confusion matrix", "rows: true class, columns: predicted"
    if step > 1:
        axis_note += f"; one class in {step} named"
    line = glyph_bottom + 6  # full line height, descenders included
    header = 2 * line + 8
    width = max(label_room + n * cell + 8, text_size(axis_note)[0] + 16)
    height = header + n * cell + label_room + 8
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 6), title, fill="black", font=font)
    draw.text((8, 6 + line), axis_note, fill="black", font=font)

    heat = (confusion_image(counts, cell=cell) * 255).round().byte().permute(1, 2, 0).numpy()
    image.paste(Image.fromarray(heat), (label_room, header))
    rates = confusion_rates(counts)
    for i in named:
        name = class_names[i]
        name_width, name_height = text_size(name)
        draw.text(
            (label_room - 4 - name_width, header + i * cell + (cell - name_height) // 2),
            name,
            fill="black",
            font=font,
        )
        # Column names run downwards under the grid, each drawn on its own strip and turned.
        strip = Image.new("RGB", (name_width + 2, name_height + 4), "white")
        ImageDraw.Draw(strip).text((0, 0), name, fill="black", font=font)
        turned = strip.rotate(90, expand=True)
        image.paste(turned, (label_room + i * cell + (cell - turned.width) // 2, header + n * cell + 4))
    if cell >= 16:  # room for the counts themselves
        for i in range(n):
            for j in range(n):
                text = str(int(counts[i, j]))
                text_width, text_height = text_size(text)
                draw.text(
                    (
                        label_room + j * cell + (cell - text_width) // 2,
                        header + i * cell + (cell - text_height) // 2,
                    ),
                    text,
                    fill="white" if rates[i, j] > 0.5 else "black",
                    font=font,
                )
    return image
