"""python -m zoo list [--input-size 32 --in-chans 1 --num-classes 10] | python -m zoo table

`list` prints each variant's parameter count and forward FLOPs at one input size; `table` prints the
README's markdown table (224 px standard stem and 32 px small-input stem side by side). FLOPs are
counted by torch.utils.flop_counter on the meta device: exact for convolutions and matrix products,
no weights allocated, no arithmetic done. One multiply-add counts as two FLOPs.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from .models import create_model, list_models
from .models._input_size import smallest_image_size, wants_small_input


def measure(
    name: str, input_size: int, in_chans: int, num_classes: int, small_input: bool
) -> tuple[int, int]:
    """(parameters, forward FLOPs for one image) of one variant in eval mode."""
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, small_input=small_input).eval()
        image = torch.empty(1, in_chans, input_size, input_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(image)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops()


def _human(count: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f}{unit}"
    return str(int(count))


def print_list(input_size: int, in_chans: int, num_classes: int, stem: str) -> None:
    small = wants_small_input(input_size) if stem == "auto" else stem == "small"
    stem_name = "small" if small else "standard"
    print(f"input {in_chans}x{input_size}x{input_size}, {num_classes} classes, {stem_name} stem")
    print(f"{'model':<14}{'params':>14}{'FLOPs':>12}")
    for name in list_models():
        try:
            params, flops = measure(name, input_size, in_chans, num_classes, small)
        except RuntimeError as error:  # the input shrinks to nothing before the head
            reason = str(error).strip().splitlines()[0]
            model = {"name": name, "in_chans": in_chans, "num_classes": num_classes, "small_input": small}
            needed = smallest_image_size(model, input_size)
            print(f"{name:<14}{'-':>14}{'-':>12}  needs at least {needed} px ({reason})")
            continue
        print(f"{name:<14}{params:>14,}{_human(flops):>12}")


def print_table() -> None:
    print(
        "| model | params (224 px, 1000 classes) | FLOPs at 224 px | params (32 px small stem, 10 classes) "
        "| FLOPs at 32 px |"
    )
    print("|---|---:|---:|---:|---:|")
    for name in list_models():
        big_params, big_flops = measure(name, 224, 3, 1000, small_input=False)
        small_params, small_flops = measure(name, 32, 3, 10, small_input=True)
        print(f"| {name} | {big_params:,} | {_human(big_flops)} | {small_params:,} | {_human(small_flops)} |")


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, not {text!r}")
        return value

    return parse


class _OneLineErrors(argparse.ArgumentParser):
    """A wrong command line is one `error:` line, as train.py's are, not argparse's usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}; see {self.prog} --help\n")


def main(argv: list[str] | None = None) -> None:
    parser = _OneLineErrors(prog="python -m zoo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="parameters and FLOPs of every variant at one input size")
    listing.add_argument("--input-size", type=_at_least(1), default=224)
    listing.add_argument("--in-chans", type=_at_least(1), default=3)
    listing.add_argument("--num-classes", type=_at_least(2), default=1000)
    listing.add_argument(
        "--stem",
        choices=("auto", "small", "standard"),
        default="auto",
        help="auto: the small stem at 64 px and below, as train.py chooses",
    )
    commands.add_parser("table", help="the README's markdown table")
    args = parser.parse_args(argv)
    if args.command == "list":
        print_list(args.input_size, args.in_chans, args.num_classes, args.stem)
    else:
        print_table()


if __name__ == "__main__":
    main()
