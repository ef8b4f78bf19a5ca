"""Pictures written to TensorBoard: an input grid and confusion matrices, encoded for a small cost.

SummaryWriter.add_image spends far more than the picture is worth on what a run logs:
  * it makes every picture RGB, so a grid of grey digits is written three times over;
  * it compresses the PNG at zlib's default level 6: on noisy pictures (photographs, random test data)
    three to four times the time of level 1, for a file no smaller;
  * every byte written then goes through TensorBoard's CRC-32C, which is pure Python (about 80 ns a
    byte on a 2-core VM) and runs in the writer's thread, holding the interpreter lock that the
    training loop needs.
On a grid of 64 random 32 px grey images that was 26 ms, once per run; here it is a third of that.
Large images make a grid of fewer tiles (see GRID_PIXELS).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy
import torch
from PIL import Image
from torchvision.utils import make_grid

if TYPE_CHECKING:
    from tensorboard.compat.proto.summary_pb2 import Summary

GRID_COLUMNS = 8
# About a screen (64 tiles of 128 px): a grid of 64 RGB images of 224 px was 1801 px a side, 7 to 10 MB
# of PNG and a second of the run, mostly TensorBoard's checksum; a browser shows it scaled down.
GRID_PIXELS = 64 * 128 * 128


def input_grid(images: torch.Tensor, columns: int = GRID_COLUMNS) -> numpy.ndarray:
    """One picture of a batch of images (N x C x H x W, uint8 or float in [0, 1]) as 8-bit pixels:
    H' x W' x 3 for RGB images; H' x W' grey otherwise, with each channel of an image other than RGB
    (two, four, ...) a tile of its own, so that none is dropped. Only as many images as fit in
    GRID_PIXELS, and at least one."""
    tiles_per_image = 1 if images.shape[1] == 3 else images.shape[1]
    fitting = GRID_PIXELS // (tiles_per_image * images.shape[2] * images.shape[3])
    images = images[: max(1, fitting)].detach().cpu()
    if images.dtype != torch.uint8:
        images = (images.float() * 255).round_().clamp_(0, 255).to(torch.uint8)
    if images.shape[1] != 3:
        images = images.reshape(-1, 1, *images.shape[2:])
    grid = make_grid(images, nrow=columns, padding=1)
    return grid[0].numpy() if images.shape[1] == 1 else grid.permute(1, 2, 0).contiguous().numpy()


def png_summary(tag: str, pixels: numpy.ndarray) -> Summary:
    """A TensorBoard image summary of 8-bit pixels, H x W (grey) or H x W x C (RGB, RGBA)."""
    # Imported here: TensorBoard's protobuf modules cost their import only to runs that log pictures.
    from tensorboard.compat.proto.summary_pb2 import Summary

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    height, width = pixels.shape[:2]
    image = Summary.Image(
        height=height,
        width=width,
        colorspace=1 if pixels.ndim == 2 else pixels.shape[2],
        encoded_image_string=buffer.getvalue(),
    )
    return Summary(value=[Summary.Value(tag=tag, image=image)])


def add_picture(writer, tag: str, pixels: numpy.ndarray, step: int) -> None:
    """`writer.add_image` for 8-bit pixels, kept in their own colour space and compressed fast.
    `writer`: a torch SummaryWriter, or the stand-in Lightning gives processes other than the first,
    whose file writer is None: nothing is written there, as add_image writes nothing."""
    file_writer = writer._get_file_writer()
    if file_writer is not None:
        file_writer.add_summary(png_summary(tag, pixels), step)
