"""benchmarks/run.py's command line: a mistake is one `error:` line and exit status 2, before any
benchmark runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the suite's scripts import each other as top-level modules

import run  # noqa: E402


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "0"], "argument --rounds: must be an integer, 1 or more, got '0'"),
        (["--rounds", "x"], "argument --rounds: must be an integer, 1 or more, got 'x'"),
        (["--only", "speed"], "argument --only: invalid choice: 'speed'"),
        (["--quick", "extra"], "unrecognized arguments: extra"),
    ],
)
def test_a_wrong_flag_is_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        run.parse_args(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err  # argparse printed its usage block too
    assert err.startswith("error: ") and message in err, err


def test_a_json_path_that_cannot_be_written_is_refused_before_any_benchmark(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    blocker = tmp_path / "figures"
    blocker.write_text("a file where a folder should be")
    # The first write came after the first benchmark, minutes in, and failed with a traceback.
    with pytest.raises(SystemExit) as exit_:
        run.parse_args(["--json", str(blocker / "results.json")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert f"{blocker} is a file, not a folder" in err, err
    # A path that can be written is left as it was found: not created by the check.
    assert not (tmp_path / "new" / "results.json").exists()
    assert run.parse_args(["--json", str(tmp_path / "new" / "results.json")]).json.parent.is_dir()
    assert not (tmp_path / "new" / "results.json").exists()


@pytest.mark.skipif(
    not (BENCHMARKS.parent / ".venv" / "bin" / "python").exists(), reason="no .venv in this checkout"
)
def test_gpu_sh_takes_the_checkouts_venv_and_without_a_gpu_says_so_in_one_line(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: gpu.sh would run the benchmarks")
    # A python on PATH that is not the project's: gpu.sh asked it first, and a user who had run
    # `make` was told to pip install the packages into it.
    stub = tmp_path / "python"
    stub.write_text("#!/bin/sh\necho 'the python on PATH' >&2\nexit 3\n")
    stub.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and result.stderr == "gpu.sh: PyTorch sees no CUDA device\n", result.stderr
