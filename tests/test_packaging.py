"""cnn-zoo as a user installs it: the wheel holds the zoo package alone, with no configs/ or entry
points beside it, and pyproject.toml declares every library the package imports."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoo.training.builders import recorded_data_config

from .conftest import ROOT, compose_config

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra installs tomli
    import tomli as tomllib


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_libraries() -> dict[str, set[str]]:
    """Each top-level module outside the standard library that zoo/ imports, with the files that do."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "zoo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top not in ("zoo", "__main__"):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_library_the_package_imports_is_a_declared_dependency() -> None:
    # A library that came in only through another's requirements (numpy, omegaconf, PyYAML) goes
    # missing the day that one drops it.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_canonical(re.match(r"[A-Za-z0-9._-]+", spec).group()) for spec in project["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {
        module: sorted(files)
        for module, files in _imported_libraries().items()
        if not {_canonical(dist) for dist in distributions.get(module, [module])} & declared
    }
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"


@pytest.fixture
def installed_package(tmp_path: Path) -> Path:
    """A folder holding zoo as a wheel installs it: the package alone."""
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "zoo", site / "zoo", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def _run_on(site: Path, *command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, *command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_installed_package_loads_a_run_checkpoint(tmp_path: Path, installed_package: Path) -> None:
    # It read the data modules a checkpoint may name from the checkout's configs/, so it refused
    # every checkpoint: "names data module 'zoo.data.DigitsDataModule', which is not one of cnn-zoo's ()".
    data_config = recorded_data_config(compose_config().data)
    hparams = {"model": {"name": "lenet5"}, "data": {}, "data_config": data_config}
    torch.save({"state_dict": {}, "hyper_parameters": hparams}, tmp_path / "best.ckpt")
    code = (
        "import zoo; from zoo.training.checkpoint import load_run_checkpoint\n"
        f"assert zoo.__file__.startswith({str(installed_package)!r}), zoo.__file__\n"
        "print(load_run_checkpoint('best.ckpt')['hyper_parameters']['data_config']['_target_'])\n"
    )
    result = _run_on(installed_package, "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "zoo.data.DigitsDataModule"


def test_an_entry_point_run_on_the_installed_package_composes_from_its_own_folder(
    tmp_path: Path, installed_package: Path
) -> None:
    # As `python -P train.py` runs it: the installed package first, the checkout's script. Every
    # group option was refused with an empty list of known ones ("unknown model 'resnet18'; known: ").
    code = (
        "import runpy, sys\n"
        "sys.argv = ['train.py', 'model=resnet18', '--cfg', 'job']\n"
        f"runpy.run_path({str(ROOT / 'train.py')!r}, run_name='__main__')\n"
    )
    result = _run_on(installed_package, "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "name: resnet18" in result.stdout


def test_an_entry_point_without_configs_beside_it_says_so(tmp_path: Path, installed_package: Path) -> None:
    script = tmp_path / "elsewhere" / "train.py"
    script.parent.mkdir()
    shutil.copy(ROOT / "train.py", script)
    result = _run_on(installed_package, str(script), "model=resnet18", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: no config folder {script.parent / 'configs'}: ") and "checkout" in line
    assert not (tmp_path / "runs").exists()
