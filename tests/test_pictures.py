"""The pictures runs write to TensorBoard: the input grid's pixels, its colour space, and the PNG
that carries them."""

from __future__ import annotations

import io

import numpy
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from zoo.training.pictures import add_picture, input_grid, png_summary


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


def test_float_images_in_zero_to_one_become_the_nearest_eight_bit_value() -> None:
    image = torch.tensor([0.0, 0.5, 1.0, 1.2, -0.1, 0.2]).reshape(1, 1, 2, 3)
    grid = input_grid(torch.cat([image, image]))
    assert grid[1:3, 1:4].tolist() == [[0, 128, 255], [255, 0, 51]]


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
