"""The benchmark suite: one command, one table per benchmark, the same figures as JSON.

    python benchmarks/run.py [--quick] [--only NAME ...] [--device cpu|cuda] [--all] [--json PATH]

Benchmarks (--only takes these names):
  overhead        train.py's training loop against a plain PyTorch loop (LeNet-5, ResNet-18)
  vs_torchvision  zoo models against torchvision's, forward and training step at 224 px
  options         speedup of channels_last, compile, bf16-mixed (and cudnn benchmark on a GPU)
  end_to_end      `python train.py` as a whole process against benchmarks/plain_digits.py
  syncs           host-device synchronisations inside train.py's training steps (GPU only)

--quick shrinks every benchmark but syncs to a smoke test (its figures are noisy); --all times every zoo
model that torchvision also has instead of a subset. Timings on a machine shared with other work
are noise: read the wall-clock ratios from a quiet machine. On a CPU the CPU-time ratios beside
them are steadier (run with OMP_NUM_THREADS=1 for that); on a GPU they are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from timing import ROOT, OneLineErrors, cannot_write, machine, positive_int, table

BENCHMARKS = ("overhead", "vs_torchvision", "options", "end_to_end", "syncs")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineErrors(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and few rounds: a smoke test")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--all", action="store_true", help="vs_torchvision: every shared model, not a subset")
    parser.add_argument(
        "--rounds",
        type=positive_int,
        help="override each benchmark's number of alternating rounds (syncs has none)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "runs" / "benchmarks" / "results.json",
        help="where to write the figures",
    )
    args = parser.parse_args(argv)
    problem = cannot_write(args.json)
    if problem:
        parser.error(f"argument --json: {problem}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is visible to PyTorch", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    chosen = args.only or BENCHMARKS
    from zoo.training.host import keep_freed_cpu_memory

    # train.py's allocator setting (cpu_memory_cache), process-wide and set before any contender
    # runs, so every side allocates alike: without it every large CPU tensor faults its pages in
    # again, a noise of +-20% here. What the setting is worth against a plain process shows in the
    # end-to-end benchmark, where each side is its own process.
    keep_freed_cpu_memory()
    results: dict = {"machine": machine(), "device": args.device, "quick": args.quick, "benchmarks": {}}
    started = time.perf_counter()

    for name in chosen:
        began = time.perf_counter()
        print(f"\n== {name} ({args.device}{', quick' if args.quick else ''}) ==", flush=True)
        if name == "overhead":
            import overhead

            rows, columns = overhead.run(device, args.quick, args.rounds), overhead.COLUMNS
        elif name == "vs_torchvision":
            import vs_torchvision

            models = vs_torchvision.shared_models() if args.all else None
            rows = vs_torchvision.run(device, args.quick, models, reps=args.rounds)
            columns = vs_torchvision.COLUMNS
        elif name == "options":
            import options

            rows, columns = options.run(device, args.quick, args.rounds), options.COLUMNS
        elif name == "syncs":
            import syncs

            rows, columns = syncs.run(device), syncs.COLUMNS
        else:
            import end_to_end

            # The default run is 30 epochs; --quick checks the machinery on 3 epochs, one round.
            rounds = args.rounds or (1 if args.quick else 2 if args.device == "cuda" else 3)
            row = end_to_end.run(rounds=rounds, epochs=3 if args.quick else None, device=device.type)
            rows, columns = [row], end_to_end.COLUMNS
        print(table(rows, columns), flush=True)
        print(f"({time.perf_counter() - began:.0f} s)", flush=True)
        results["benchmarks"][name] = rows
        # Written after every benchmark, so an interrupted run keeps what it measured.
        results["seconds"] = round(time.perf_counter() - started, 1)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))

    print(f"\nfigures written to {args.json} ({results['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
