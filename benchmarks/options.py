"""Speed options of train.py, each against the same run without it, through the framework's own loop.

    channels_last=true             NHWC memory format for the network and its inputs
    compile=true                   torch.compile of the network
    trainer.precision=bf16-mixed   bfloat16 autocast
    trainer.benchmark              cuDNN's algorithm search (GPU only; configs/trainer/gpu.yaml turns it
                                   on, so there the comparison is its default against benchmark=false)
    optimizer.fused                torch's fused optimizer step (on by default, optimizer.fused=auto:
                                   the comparison is the default against optimizer.fused=false)

Each row trains with overhead.framework_fit (the real config, module, trainer and callbacks) on
synthetic in-memory data; the runs of one model alternate over rounds, and speedup is the default
run's median steady epoch time (first epoch left out: it holds compilation and autotuning) over
the option's. On a GPU all run on ResNet-18 (small stem, 32 px), where convolutions dominate as
these options assume; on a CPU compile and bf16-mixed run on LeNet-5 (see plan).
"""

from __future__ import annotations

import functools
import sys
from dataclasses import replace

import torch
from overhead import CASES, Case, framework_fit, synthetic_data
from timing import alternate, median

# name -> (overrides with the option, overrides of the run it is compared against)
OPTIONS = {
    "channels_last": (("channels_last=true",), ()),
    "compile": (("compile=true",), ()),
    "bf16-mixed": (("trainer.precision=bf16-mixed",), ()),
    "cudnn benchmark": ((), ("trainer.benchmark=false",)),
    "fused optimizer": ((), ("optimizer.fused=false",)),
}


def plan(device: torch.device, quick: bool) -> dict[Case, list[str]]:
    """Which options are measured on which model (and data size) on this device."""
    # Three epochs: the first is left out, the median of the other two is kept (a smoke test: two).
    epochs = 2 if quick else 3
    resnet = replace(CASES[("resnet18", device.type, quick)], epochs=epochs)
    if device.type == "cuda":
        # Half the overhead case's epoch (25 steps of 512): each of the ten runs keeps a steady
        # epoch to time, and gpu.sh stays within its five minutes.
        resnet = replace(resnet, images=resnet.images // 2)
        return {resnet: ["channels_last", "bf16-mixed", "compile", "cudnn benchmark", "fused optimizer"]}
    # On a CPU: compiling a ResNet-18 training step takes minutes, and on CPUs without native
    # bfloat16 its bf16 step is ~20x slower (measured on a Zen 3), so both run on LeNet-5 there.
    resnet = replace(resnet, batch=16, images=16 * (2 if quick else 4))
    lenet = replace(CASES[("lenet5", "cpu", True)], epochs=epochs)
    return {resnet: ["channels_last", "fused optimizer"], lenet: ["bf16-mixed", "compile", "fused optimizer"]}


def run(device: torch.device, quick: bool = False, rounds: int | None = None) -> list[dict]:
    rounds = rounds or (1 if quick else 2)
    rows = []
    for case, names in plan(device, quick).items():
        data = synthetic_data(case, device)
        # Untimed: the process's first fit pays for first-touch pages, lazy imports and kernel
        # selection, which would otherwise land on whichever configuration runs first.
        framework_fit(case, device, data, ())
        configs = {"default": ()}
        for name in names:
            with_option, without = OPTIONS[name]
            configs[name] = with_option
            if without:
                configs[f"without {name}"] = without
        runs = alternate(
            {
                label: functools.partial(framework_fit, case, device, data, overrides)
                for label, overrides in configs.items()
            },
            rounds,
        )
        epoch = {label: median([r.steady() for r in results]) for label, results in runs.items()}
        first = {label: median([r.epochs[0] for r in results]) for label, results in runs.items()}
        for name in names:
            with_option, without = OPTIONS[name]
            base = f"without {name}" if without else "default"
            option = "default" if without else name
            rows.append(
                {
                    "benchmark": "options",
                    "option": name,
                    "model": case.model,
                    "device": device.type,
                    "batch": case.batch,
                    "images_per_epoch": case.images,
                    "rounds": rounds,
                    "baseline_epoch_s": epoch[base],
                    "option_epoch_s": epoch[option],
                    "speedup": epoch[base] / epoch[option],
                    # Compilation and autotuning land in the first epoch: what the option costs up front.
                    "first_epoch_extra_s": first[option] - first[base],
                    "overrides": " ".join(with_option) or f"(default; vs {' '.join(without)})",
                }
            )
    return rows


COLUMNS = [
    ("option", "option"),
    ("model", "model"),
    ("device", "device"),
    ("batch", "batch"),
    ("baseline_epoch_s", "baseline s/epoch"),
    ("option_epoch_s", "option s/epoch"),
    ("speedup", "speedup"),
    ("first_epoch_extra_s", "1st-epoch extra s"),
    ("overrides", "overrides"),
]


if __name__ == "__main__":
    # One benchmark of the suite, with the suite's options (run.py --help).
    import run

    sys.exit(run.main(["--only", "options", *sys.argv[1:]]))
