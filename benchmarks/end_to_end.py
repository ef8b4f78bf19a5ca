"""The default run as a whole process, `python train.py`, against benchmarks/plain_digits.py doing the
same job by hand (same model, data, split, seeds, epochs, batch size, optimizer, schedule, per-epoch
validation, best-by-validation-loss weights saved and tested).

Each side runs as its own child process, alternating (train, plain, plain, train, ...), `--rounds`
times. A child's wall time is measured around its whole life (interpreter start, imports, data,
training, test, exit); its peak resident memory and CPU time come from its own rusage (os.wait4),
so neither this process nor the other side is counted (LAUNCHER says why a launcher forks it).
Reported: medians and their ratios, framework over plain (targets: wall <= 1.2, peak RSS <= 1.3),
and each side's test accuracy.

    python benchmarks/end_to_end.py [--rounds 3] [--epochs N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from timing import (
    ROOT,
    OneLineErrors,
    alternate,
    cannot_write,
    machine,
    median,
    paired_ratio,
    positive_int,
    table,
)

WALL_TARGET, RSS_TARGET = 1.2, 1.3
ACCURACY = re.compile(r"test/acc=([0-9.]+)")


# Runs the measured command as its own child and reports that child's figures. Linux keeps a
# process's pre-exec high-water RSS in ru_maxrss, so a child forked straight from this process,
# which holds PyTorch (and, in the suite, GPU memory), would report at least this process's size;
# forked from this small launcher instead, it starts from the launcher's few megabytes.
LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
wall = time.perf_counter() - start
child.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    json.dump({"wall_s": wall, "returncode": child.returncode, "maxrss": usage.ru_maxrss,
               "cpu_s": usage.ru_utime + usage.ru_stime}, out)
"""


def run_child(command: list[str], log: Path) -> dict:
    """Run one child to completion; its wall time, peak RSS, CPU time and test accuracy."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # plain_digits.py imports the package; from a plain checkout that needs the repository on the path.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    figures = log.with_suffix(".json")
    with log.open("w") as output:
        launcher = [sys.executable, "-S", "-c", LAUNCHER, str(figures), *command]
        subprocess.run(launcher, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, check=True)
    child = json.loads(figures.read_text())
    text = log.read_text()
    if child["returncode"] != 0:
        raise RuntimeError(f"{' '.join(command)} exited {child['returncode']}:\n{text[-3000:]}")
    found = ACCURACY.findall(text)
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS.
    rss_mb = child["maxrss"] / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return {
        "wall_s": child["wall_s"],
        "cpu_s": child["cpu_s"],
        "peak_rss_mb": rss_mb,
        "test_acc": float(found[-1]) if found else None,
    }


def run(
    rounds: int = 3, epochs: int | None = None, python: str = sys.executable, device: str | None = None
) -> dict:
    """Alternate the two sides `rounds` times each; one summary row with every child's figures.
    `device` ("cpu" or "cuda") puts both sides on it; None leaves each to its default, a GPU if any."""
    framework_device = {"cpu": ["trainer.accelerator=cpu"], "cuda": ["trainer.accelerator=gpu"]}
    plain_device = ["--device", device] if device else []
    with tempfile.TemporaryDirectory(prefix="end_to_end_") as folder:
        scratch = Path(folder)
        counter = iter(range(10**6))

        def framework() -> dict:
            index = next(counter)
            # A fresh run directory each time: train.py refuses to overwrite a finished run.
            command = [python, "train.py", f"hydra.run.dir={scratch / f'run{index}'}"]
            command += framework_device.get(device or "", [])
            if epochs is not None:
                command.append(f"trainer.max_epochs={epochs}")
            return run_child(command, scratch / f"train{index}.log")

        def plain() -> dict:
            index = next(counter)
            output = str(scratch / f"plain{index}")
            command = [python, "benchmarks/plain_digits.py", "--output", output, *plain_device]
            if epochs is not None:
                command += ["--epochs", str(epochs)]
            return run_child(command, scratch / f"plain{index}.log")

        children = alternate({"framework": framework, "plain": plain}, rounds)

    def middle(side: str, key: str) -> float:
        return median([child[key] for child in children[side]])

    row = {
        "benchmark": "end_to_end",
        "command": "python train.py" + (f" trainer.max_epochs={epochs}" if epochs is not None else ""),
        "default_run": epochs is None,
        "device": device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "rounds": rounds,
        "framework_wall_s": middle("framework", "wall_s"),
        "plain_wall_s": middle("plain", "wall_s"),
        "framework_peak_rss_mb": middle("framework", "peak_rss_mb"),
        "plain_peak_rss_mb": middle("plain", "peak_rss_mb"),
        "framework_cpu_s": middle("framework", "cpu_s"),
        "plain_cpu_s": middle("plain", "cpu_s"),
        "framework_test_acc": children["framework"][-1]["test_acc"],
        "plain_test_acc": children["plain"][-1]["test_acc"],
        "children": children,
    }

    def paired(key: str) -> float:
        # The two children of a round run back to back: their ratio cancels a slow spell of the machine.
        return paired_ratio([c[key] for c in children["framework"]], [c[key] for c in children["plain"]])

    row["wall_ratio"] = paired("wall_s")
    row["rss_ratio"] = paired("peak_rss_mb")
    # CPU time says little of a GPU run, where a side's CPU waits on the device (run.py's docstring).
    row["cpu_ratio"] = paired("cpu_s") if row["device"] == "cpu" else None
    row["wall_target"], row["rss_target"] = WALL_TARGET, RSS_TARGET
    row["pass"] = row["wall_ratio"] <= WALL_TARGET and row["rss_ratio"] <= RSS_TARGET
    return row


COLUMNS = [
    ("command", "command"),
    ("framework_wall_s", "train.py s"),
    ("plain_wall_s", "plain s"),
    ("wall_ratio", "wall ratio"),
    ("cpu_ratio", "cpu ratio"),
    ("framework_peak_rss_mb", "train.py MB"),
    ("plain_peak_rss_mb", "plain MB"),
    ("rss_ratio", "RSS ratio"),
    ("framework_test_acc", "train.py acc"),
    ("plain_test_acc", "plain acc"),
    ("pass", "pass"),
]


def main() -> None:
    parser = OneLineErrors(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument(
        "--epochs", type=positive_int, help="override the default run's 30 epochs (a quick check)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="both sides on it (default: a GPU if any)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    problem = args.json and cannot_write(args.json)
    if problem:
        parser.error(f"argument --json: {problem}")
    row = run(args.rounds, args.epochs, device=args.device)
    print(table([row], COLUMNS))
    print(f"targets: wall ratio <= {WALL_TARGET}, peak RSS ratio <= {RSS_TARGET}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine(), "end_to_end": row}, indent=2))


if __name__ == "__main__":
    main()
