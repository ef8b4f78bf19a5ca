#!/usr/bin/env bash
# The benchmark suite on a GPU in under 5 minutes (267 s on an H100 with torch 2.11, 2026-11-26,
# the package check and imports included):
#
#     bash benchmarks/gpu.sh [JSON_PATH] [more run.py options, e.g. --quick or --only overhead]
#
# Needs only this checkout and a Python that has the project's packages: $PYTHON if set, else the
# checkout's .venv/bin/python if there is one, else `python`, else `python3` from PATH. The figures go to
# JSON_PATH, else $OUT/gpu.json when $OUT is set, else runs/benchmarks/gpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."

# The checkout's .venv (what `make` sets up) before PATH's python, which may lack the packages: it
# was asked first, and told a user who had run `make` to pip install them into another Python.
VENV_PY=""
[ -x .venv/bin/python ] && VENV_PY=.venv/bin/python
PY="${PYTHON:-${VENV_PY:-$(command -v python || command -v python3 || true)}}"
if [ -z "$PY" ]; then
    echo "gpu.sh: no python on PATH; set PYTHON=/path/to/python" >&2
    exit 2
fi
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then
    JSON="$1"
    shift
else
    JSON="${OUT:+$OUT/gpu.json}"
    JSON="${JSON:-runs/benchmarks/gpu.json}"
fi

# Fail in one line, before minutes of work, when a package is missing.
"$PY" - <<'CHECK'
import importlib.util
import sys

needed = ["torch", "torchvision", "pytorch_lightning", "torchmetrics", "hydra", "omegaconf", "tensorboard", "sklearn"]
missing = [name for name in needed if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"gpu.sh: {sys.executable} lacks {', '.join(missing)}; `pip install -e .` in this checkout adds them")
import torch

if not torch.cuda.is_available():
    sys.exit("gpu.sh: PyTorch sees no CUDA device")
print(f"gpu.sh: {sys.executable}, torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
CHECK

export PYTHONUNBUFFERED=1
# The repository on the path: the package need not be installed.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/run.py --device cuda --json "$JSON" "$@"
