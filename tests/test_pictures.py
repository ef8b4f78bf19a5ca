"""The pictures runs write to TensorBoard: the input grid's pixels, its colour space, and the PNG
that carries them; the confusion matrix's size and names as the classes grow."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy
import pytest
import torch
from PIL import Image, ImageDraw
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from zoo.training.callbacks import TensorBoardImages
from zoo.training.evaluation import labelled_confusion_image
from zoo.training.pictures import GRID_PIXELS, add_picture, input_grid, png_summary


def _batch(channels: int, count: int = 10, size: int = 5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(channels)
    return torch.randint(0, 256, (count, channels, size, size), generator=generator, dtype=torch.uint8)


def _tile(grid: numpy.ndarray, index: int, size: int, columns: int = 8) -> numpy.ndarray:
    # make_grid puts a 1-pixel border before each tile.
    top, left = 1 + (index // columns) * (size + 1), 1 + (index % columns) * (size + 1)
    return grid[top : top + size, left : left + size]


def test_a_grey_batch_is_one_grey_picture_of_its_exact_pixels() -> None:
    images = _batch(1)
    grid = input_grid(images)
    assert grid.dtype == numpy.uint8 and grid.ndim == 2
    assert grid.shape == (2 * 6 + 1, 8 * 6 + 1)  # 10 images: two rows of eight columns
    for index in range(10):
        assert numpy.array_equal(_tile(grid, index, 5), images[index, 0].numpy())


def test_an_rgb_batch_keeps_its_three_channels() -> None:
    images = _batch(3)
    grid = input_grid(images)
    assert grid.shape == (13, 49, 3)
    assert numpy.array_equal(_tile(grid, 9, 5), images[9].permute(1, 2, 0).numpy())


@pytest.mark.parametrize("channels", [2, 4])
def test_each_channel_of_other_images_is_a_grey_tile_of_its_own(channels: int) -> None:
    images = _batch(channels, count=3)
    grid = input_grid(images)
    assert grid.ndim == 2
    for index in range(3 * channels):
        expected = images[index // channels, index % channels].numpy()
        assert numpy.array_equal(_tile(grid, index, 5), expected)


# Float images of any precision, not float32 alone.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_float_images_in_zero_to_one_become_the_nearest_eight_bit_value(dtype: torch.dtype) -> None:
    image = torch.tensor([0.0, 0.5, 1.0, 1.2, -0.1, 0.2], dtype=dtype).reshape(1, 1, 2, 3)
    grid = input_grid(torch.cat([image, image]))
    assert grid[1:3, 1:4].tolist() == [[0, 128, 255], [255, 0, 51]]


def test_a_grid_of_large_images_shows_the_first_that_fit_in_about_a_screen() -> None:
    # 64 RGB images of 224 px were a 1801 px square grid: 7 to 10 MB written, a second of the run.
    images = _batch(3, count=64, size=224)
    grid = input_grid(images)
    shown = GRID_PIXELS // (224 * 224)
    assert shown == 20 and grid.shape == (3 * 225 + 1, 8 * 225 + 1, 3)
    assert numpy.array_equal(_tile(grid, shown - 1, 224), images[shown - 1].permute(1, 2, 0).numpy())


def test_the_budget_counts_each_channel_tile_and_keeps_one_image_however_large() -> None:
    # Four channels are four tiles an image: 128 px images of four channels fit sixteen to a grid.
    assert input_grid(_batch(4, count=64, size=128)).shape == (8 * 129 + 1, 8 * 129 + 1)
    assert input_grid(_batch(1, count=2, size=1100)).shape == (1100, 1100)  # one image: no border


def _row_name_bands(picture) -> int:
    """How many separate bands of ink the row names make, left of a grid whose diagonal is its only
    coloured cells (white elsewhere, names in grey)."""
    pixels = numpy.asarray(picture).astype(int)
    blue = numpy.argwhere(pixels[..., 2] - pixels[..., 0] > 40)
    (top, left), bottom = blue.min(axis=0), blue[:, 0].max() + 1
    # From the top of the grid, past the title and the axis note, to its bottom, before the
    # column names begin.
    region = pixels[top - 2 : bottom + 2, :left, 0] < 128
    inked = region.any(axis=1)
    return int((inked[1:] & ~inked[:-1]).sum() + inked[0])


@pytest.mark.parametrize("classes", [10, 100, 200, 1000])
def test_the_confusion_picture_stays_about_a_screen_and_thins_names_taller_than_their_rows(
    classes: int,
) -> None:
    # Cells of at least 6 px drew 1000 classes 6094 px wide (1.2 s and 1.4 MB each validation), and
    # names 8 px tall in rows narrower than that ran into one another; up to 100 classes each row is
    # named, as before.
    names = [f"H{i}" for i in range(classes)]
    picture = labelled_confusion_image(torch.eye(classes, dtype=torch.long), names)
    assert max(picture.size) < 1200
    bands = _row_name_bands(picture)
    assert bands == classes if classes <= 100 else classes // 10 <= bands < classes


@pytest.mark.parametrize("classes", [100, 150, 250, 1000])
def test_the_confusion_picture_names_every_nth_class_from_the_first_and_says_so(
    classes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Which texts the picture draws: row and column names, the title and the note under it.
    drawn = []
    draw_text = ImageDraw.ImageDraw.text

    def recording(self, xy, text, *args, **kwargs):
        drawn.append(text)
        return draw_text(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", recording)
    names = [f"H{i}" for i in range(classes)]
    picture = labelled_confusion_image(torch.eye(classes, dtype=torch.long), names)
    named = sorted({int(text[1:]) for text in drawn if text in names})
    step = named[1] - named[0]
    assert named == list(range(0, classes, step))
    (note,) = (text for text in drawn if text.startswith("rows:"))
    # A picture that leaves names out says so, and one that names every class says nothing of it.
    assert note.endswith(f"; one class in {step} named") if step > 1 else "named" not in note
    # Each name clear of the next: a band of ink of its own.
    assert _row_name_bands(picture) == len(named)


@pytest.mark.parametrize("shape", [(7, 9), (7, 9, 3)], ids=["grey", "rgb"])
def test_the_png_carries_the_pixels_and_their_colour_space(shape: tuple[int, ...]) -> None:
    pixels = numpy.random.default_rng(0).integers(0, 256, shape, dtype=numpy.uint8)
    (value,) = png_summary("x", pixels).value
    assert (value.tag, value.image.height, value.image.width) == ("x", 7, 9)
    assert value.image.colorspace == (1 if len(shape) == 2 else 3)
    decoded = Image.open(io.BytesIO(value.image.encoded_image_string))
    assert decoded.mode == ("L" if len(shape) == 2 else "RGB")
    assert numpy.array_equal(numpy.asarray(decoded), pixels)


def test_a_picture_reaches_the_event_file_at_its_step(tmp_path) -> None:
    pixels = input_grid(_batch(1))
    with SummaryWriter(str(tmp_path)) as writer:
        add_picture(writer, "train/inputs", pixels, 42)
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    (logged,) = events.Images("train/inputs")
    assert logged.step == 42
    assert numpy.array_equal(numpy.asarray(Image.open(io.BytesIO(logged.encoded_image_string))), pixels)


def _first_batch_logged(tmp_path, callback: TensorBoardImages, is_global_zero: bool = True):
    """What TensorBoard holds once `callback` has seen a run's first training batch, `_batch(1)`."""
    logger = TensorBoardLogger(str(tmp_path), name="", version="")
    trainer = SimpleNamespace(
        loggers=[logger],
        is_global_zero=is_global_zero,
        global_step=0,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=0)),
    )
    callback.on_train_batch_start(trainer, None, (_batch(1), torch.zeros(10)), 0)
    logger.experiment.flush()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    return events


def test_the_grid_shows_no_more_than_the_callbacks_grid_images(tmp_path) -> None:
    events = _first_batch_logged(tmp_path, TensorBoardImages(grid_images=3))
    (logged,) = events.Images("train/inputs")
    shown = numpy.asarray(Image.open(io.BytesIO(logged.encoded_image_string)))
    assert numpy.array_equal(shown, input_grid(_batch(1)[:3]))


def test_only_the_first_process_logs_the_grid(tmp_path) -> None:
    # Another process's logger is Lightning's stand-in, whose file writer is None: a grid logged there
    # would fail the run, and would be the first process's grid again.
    events = _first_batch_logged(tmp_path, TensorBoardImages(), is_global_zero=False)
    assert events.Tags()["images"] == []


def test_a_picture_for_lightnings_stand_in_writer_is_dropped_quietly() -> None:
    # Processes other than the first get Lightning's stand-in experiment, whose file writer is None;
    # add_image wrote nothing there, and add_picture must not fail there either.
    from lightning_fabric.loggers.logger import _DummyExperiment

    add_picture(_DummyExperiment(), "train/inputs", input_grid(_batch(1)), 0)
