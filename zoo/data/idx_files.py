"""The idx files of MNIST and Fashion-MNIST, checked before torchvision reads them.

torchvision's reader fails on a damaged file with an AssertionError, a reshape error or an int()
of an empty string, none of which names the file or what is wrong with it. An idx file is a
4-byte magic number (two zero bytes, a type code, the number of dimensions), one big-endian
32-bit size per dimension, then the values.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

from ..training.errors import UserError

UNSIGNED_BYTE = 0x08
# Dimensions of each file by its name's kind: images N x H x W, labels N.
_DIMENSIONS = {"idx3": 3, "idx1": 1}


def idx_shape(path: Path) -> tuple[int, ...]:
    """The shape an idx file of unsigned bytes declares, once its size is checked against it."""
    expected_dims = next((dims for kind, dims in _DIMENSIONS.items() if kind in path.name), None)
    with path.open("rb") as handle:
        header = handle.read(4)
        if len(header) < 4 or header[:2] != b"\0\0" or header[2] != UNSIGNED_BYTE:
            raise UserError(
                f"{path} is not an idx file of unsigned bytes (it begins {header.hex() or 'empty'}, "
                f"expected 0000080{expected_dims or 'N'}); replace it with the official file"
            )
        dims = header[3]
        if expected_dims is not None and dims != expected_dims:
            kind = "images" if expected_dims == 3 else "labels"
            raise UserError(
                f"{path} holds {dims}-dimensional data, but a file of {kind} holds {expected_dims}; "
                "is it another file renamed? replace it with the official file"
            )
        sizes = handle.read(4 * dims)
        if len(sizes) < 4 * dims:
            raise UserError(f"{path} is cut short inside its header; replace it with the official file")
        shape = struct.unpack(f">{dims}I", sizes)
    found, wanted = path.stat().st_size, 4 + 4 * dims + math.prod(shape)
    if found != wanted:
        declared = " x ".join(str(size) for size in shape)
        problem = "truncated" if found < wanted else "longer than its header says"
        raise UserError(
            f"{path} is {problem}: its header declares {declared} values ({wanted:,} bytes with the "
            f"header), the file holds {found:,} bytes; replace it with the official file"
        )
    return shape


def check_idx_pair(images: Path, labels: Path) -> tuple[int, ...]:
    """The image shape (N, H, W) of an images file and its labels file, which must agree in count."""
    image_shape, label_shape = idx_shape(images), idx_shape(labels)
    if image_shape[0] != label_shape[0]:
        raise UserError(
            f"{images.name} holds {image_shape[0]:,} images but {labels.name} {label_shape[0]:,} labels "
            f"(in {images.parent}); each image needs one label: replace the damaged file"
        )
    return image_shape
