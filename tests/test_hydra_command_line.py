"""Hydra's own command-line flags (--config-dir, --config-name, --config-path, --cfg, -p) and
config groups (hydra/job_logging) work with the entry points' checks, as Hydra's docs describe them."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from zoo.training.errors import UserError
from zoo.training.overrides import (
    CONFIG_DIR,
    ConfigSource,
    check_overrides,
    check_sweep_points,
    composing_from,
    job_overrides,
    options,
)
from zoo.training.resume import refuse_a_changed_continuation, resolve_resume
from zoo.training.run_dirs import run_task

from .conftest import ROOT, run_script

QUICK = (
    "logger=none",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A user's own config folder: a model option, an experiment, and a copy of train.yaml."""
    folder = tmp_path / "myconf"
    (folder / "model").mkdir(parents=True)
    (folder / "experiment").mkdir()
    (folder / "model" / "wide_dropout.yaml").write_text(
        "name: resnet18\nnum_classes: null\nin_chans: null\nsmall_input: null\ndropout: 1.5\n"
    )
    (folder / "experiment" / "mine.yaml").write_text("# @package _global_\ntask_name: mine\n")
    train = (ROOT / "configs" / "train.yaml").read_text()
    (folder / "mytrain.yaml").write_text(train.replace("label_smoothing: 0.0", "label_smoothing: 2.0"))
    return folder


def test_group_options_of_a_config_dir_are_known(config_dir: Path) -> None:
    check_overrides(["--config-dir", str(config_dir), "model=wide_dropout", "experiment=mine"])
    check_overrides([f"--config-dir={config_dir}", "+experiment=mine"])
    with pytest.raises(UserError, match=r"unknown model 'nope'; known: .*wide_dropout"):
        check_overrides(["-cd", str(config_dir), "model=nope"])
    with pytest.raises(UserError, match="unknown model 'wide_dropout'"):
        check_overrides(["model=wide_dropout"])  # without the folder, as Hydra would say


def test_flags_and_their_values_are_not_overrides() -> None:
    argv = [
        "--config-dir",
        "myconf",
        "-cn",
        "mytrain",
        "-m",
        "seed=1,2",
        "hydra.verbose=true",
        "--cfg",
        "job",
    ]
    assert job_overrides(argv) == ["seed=1,2"]


def test_a_sweep_composes_its_points_from_the_folders_and_config_the_command_names(config_dir: Path) -> None:
    # The user's model file and config are read: their values out of range are named.
    with pytest.raises(UserError, match=r"sweep point #1 \(model=wide_dropout\) of 2: model.dropout must be"):
        check_sweep_points(["--config-dir", str(config_dir), "-m", "model=lenet5,wide_dropout"], "train")
    with pytest.raises(UserError, match=r"sweep point #0 \(seed=1\) of 2: label_smoothing must be"):
        check_sweep_points(["-cd", str(config_dir), "--config-name", "mytrain", "-m", "seed=1,2"], "train")
    # --config-path replaces the project's folder: a whole copy of it, with train.yaml changed.
    copy = shutil.copytree(ROOT / "configs", config_dir.parent / "copy")
    (copy / "train.yaml").write_text((config_dir / "mytrain.yaml").read_text())
    with pytest.raises(UserError, match=r"sweep point #0 \(seed=1\) of 2: label_smoothing must be"):
        check_sweep_points(["--config-path", str(copy), "-m", "seed=1,2"], "train")


def test_an_override_the_command_adds_goes_before_hydras_flags(tmp_path: Path) -> None:
    # paths.output_dir adds hydra.run.dir=...; after `-p KEY` Hydra's parser refused it.
    folder = tmp_path / "run"
    result = run_script(
        "train.py", f"paths.output_dir={folder}", "--cfg", "job", "-p", "paths.output_dir", cwd=tmp_path
    )
    assert result.stdout.strip() == str(folder)


def test_hydras_disabled_job_logging_runs_without_a_log_file(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    run_script("train.py", *QUICK, f"hydra.run.dir={folder}", "hydra/job_logging=disabled", cwd=tmp_path)
    assert (folder / "metrics.json").is_file()
    assert not (folder / "train.log").exists()


@pytest.mark.parametrize(
    ("script", "refused"),
    [("train.py", ()), ("finetune.py", ()), ("evaluate.py", ("model", "optimizer", "experiment"))],
)
def test_help_says_what_the_script_takes_without_importing_torch(
    tmp_path: Path, script: str, refused: tuple[str, ...]
) -> None:
    code = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, file=sys.stderr))\n"
        f"sys.argv = [{script!r}, '--help']\n"
        f"runpy.run_path({str(ROOT / script)!r}, run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"usage: python {script}" in result.stdout
    groups = {line.partition(":")[0] for line in result.stdout.splitlines() if re.match(r"\w+: \w", line)}
    assert "data" in groups and not groups & set(refused)
    assert "== Config ==" not in result.stdout  # Hydra's dump of the whole config: --cfg job
    assert "torch imported: False" in result.stderr
    assert not any(tmp_path.iterdir())
    assert "== Flags ==" in run_script(script, "--hydra-help", cwd=tmp_path).stdout


def test_help_lists_the_options_of_the_folders_the_command_names(config_dir: Path) -> None:
    shown = run_script("train.py", "--config-dir", str(config_dir), "--help", cwd=config_dir).stdout
    assert re.search(r"^model: .*\bwide_dropout\b", shown, re.MULTILINE)
    # evaluate.py lists its data options itself (Hydra's listing holds the groups it refuses), those
    # of the folders the command names among them.
    (config_dir / "data").mkdir()
    shutil.copy(ROOT / "configs" / "data" / "digits.yaml", config_dir / "data" / "mydata.yaml")
    for flags, source in (([], None), (["--config-dir", str(config_dir)], (CONFIG_DIR, config_dir))):
        shown = run_script("evaluate.py", *flags, "--help", cwd=config_dir).stdout
        listed = next(line for line in shown.splitlines() if line.startswith("data: "))
        known = options("data", source and ConfigSource(source, "evaluate"))
        assert sorted(listed.removeprefix("data: ").split(", ")) == known
        assert ("mydata" in known) == bool(flags)


@pytest.fixture(scope="module")
def run_of_a_config_dir(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """A finished run of a copy of train.yaml under another name, with a model and a data option of
    the user's folder (which also holds a copy of finetune.yaml): the folder, the run, and the flags
    and overrides it was started with."""
    folder = tmp_path_factory.mktemp("own") / "myconf"
    (folder / "model").mkdir(parents=True)
    (folder / "data").mkdir()
    shutil.copy(ROOT / "configs" / "train.yaml", folder / "mytrain.yaml")
    shutil.copy(ROOT / "configs" / "finetune.yaml", folder / "myfinetune.yaml")
    shutil.copy(ROOT / "configs" / "model" / "lenet5.yaml", folder / "model" / "mymodel.yaml")
    shutil.copy(ROOT / "configs" / "data" / "digits.yaml", folder / "data" / "mydata.yaml")
    command = [
        "--config-dir",
        str(folder),
        "--config-name",
        "mytrain",
        "model=mymodel",
        "data=mydata",
        *QUICK,
    ]
    run = folder.parent / "runs" / "mine"
    run_script("train.py", *command, f"hydra.run.dir={run}", cwd=folder.parent)
    return folder, run, command


def _interrupted_copy(run: Path, runs: Path) -> Path:
    """The run as one stopped before its test: its checkpoints and record, no metrics.json."""
    copy = shutil.copytree(run, runs / "interrupted")
    (copy / "metrics.json").unlink()
    return copy


def test_a_run_of_ones_own_config_name_resumes_with_the_flags_it_was_started_with(
    run_of_a_config_dir: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    folder, run, command = run_of_a_config_dir
    flags = ["--config-dir", str(folder), "--config-name", "mytrain"]
    interrupted = _interrupted_copy(run, tmp_path / "runs")
    # Hydra records the config's name, mytrain: the run was taken for a run of "mytrain.py".
    assert run_task(interrupted) == "train"
    resumed = resolve_resume([*command, f"resume={interrupted}"], task="train")
    assert f"hydra.run.dir={interrupted}" in resumed
    assert resolve_resume([*command, "resume=auto"], runs_dir=tmp_path / "runs", task="train")[-2:-1] == [
        f"hydra.run.dir={interrupted}"
    ]
    # Without its flags, the run would be rebuilt from configs/train.yaml: refused, with the command.
    again = f"python train.py {' '.join(flags)} resume={interrupted}"
    with pytest.raises(
        UserError, match=f"was composed from {' '.join(flags)}.*resume it from its own: {again}$"
    ):
        resolve_resume([*QUICK, "model=lenet5", f"resume={interrupted}"], task="train")
    with pytest.raises(UserError, match="resume=auto found no unfinished run"):
        resolve_resume([*QUICK, "model=mymodel", "resume=auto"], runs_dir=tmp_path / "runs", task="train")
    with pytest.raises(UserError, match=f"or resume it with {again}$"):
        check_overrides([*command, f"hydra.run.dir={interrupted}"], "ckpt_path")


def test_a_continued_run_is_checked_against_the_config_the_command_names(
    run_of_a_config_dir: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    folder, run, command = run_of_a_config_dir
    last = run / "checkpoints" / "last.ckpt"
    # Composed from the project's configs, model=mymodel was not found, and these were let through.
    with pytest.raises(UserError, match="nothing is left to train"):
        resolve_resume([*command, f"ckpt_path={last}"], task="train")
    interrupted = _interrupted_copy(run, tmp_path / "runs")
    resumed = resolve_resume([*command, "model.dropout=0.5", f"resume={interrupted}"], task="train")
    with pytest.raises(UserError, match="model.dropout"):
        refuse_a_changed_continuation(resumed, "ckpt_path", "train")
    refuse_a_changed_continuation(
        resolve_resume([*command, f"resume={interrupted}"], task="train"), "ckpt_path", "train"
    )


def test_the_sigterm_line_resumes_with_the_flags_that_chose_the_config(
    run_of_a_config_dir: tuple[Path, Path, list[str]], capsys
) -> None:
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from zoo.training.fit import stopped_by_a_signal

    folder, run, _ = run_of_a_config_dir
    with composing_from(ConfigSource((CONFIG_DIR, folder), "mytrain")):
        cfg = compose(config_name="mytrain", return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # as in the job
    trainer = SimpleNamespace(is_global_zero=True, global_step=3)
    try:
        with pytest.raises(SystemExit), stopped_by_a_signal(cfg, trainer, run):
            raise SIGTERMException
    finally:
        HydraConfig.instance().cfg = None  # outside a job again, for the tests that follow
    command = capsys.readouterr().err.partition("resume with: ")[2]
    # It advised `python mytrain.py resume=RUN`, without the folder.
    assert shlex.split(command) == [
        "python",
        "train.py",
        "--config-dir",
        str(folder),
        "--config-name",
        "mytrain",
        f"resume={run}",
    ]


def _advised_fine_tune(refusal: str) -> list[str]:
    return shlex.split(re.search(r"(python finetune\.py .*finetune\.head=extend)", refusal)[1])


def test_the_fine_tune_advised_from_a_runs_weights_composes_from_the_runs_folders(
    run_of_a_config_dir: tuple[Path, Path, list[str]],
) -> None:
    folder, run, command = run_of_a_config_dir
    last = run / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError, match="fresh schedule: python finetune.py") as refused:
        resolve_resume([*command, f"ckpt_path={last}", "trainer.max_epochs=2"], task="train")
    advised = _advised_fine_tune(str(refused.value))
    # Without --config-dir its data=mydata was an unknown data set; mytrain.yaml is no fine-tune's config.
    assert advised[2:] == [
        "--config-dir",
        str(folder),
        f"ckpt_path={last}",
        "data=mydata",
        "finetune.head=extend",
    ]
    check_overrides(advised[2:], "resume_ckpt", "finetune")


def test_the_fine_tune_advised_in_a_job_composes_from_the_jobs_folders_and_config(
    run_of_a_config_dir: tuple[Path, Path, list[str]],
) -> None:
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    from zoo.training.quoting import train_on_command

    folder, run, _ = run_of_a_config_dir
    last = run / "checkpoints" / "last.ckpt"
    with composing_from(ConfigSource((CONFIG_DIR, folder), "myfinetune")):
        given = ["data=mydata", "hydra.job.name=finetune"]  # the job of finetune.py -cn myfinetune
        cfg = compose(config_name="myfinetune", overrides=given, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # as in the job
    try:
        advised = _advised_fine_tune(train_on_command(last))
    finally:
        HydraConfig.instance().cfg = None  # outside a job again, for the tests that follow
    flags = ["--config-dir", str(folder), "--config-name", "myfinetune"]
    assert advised[2:] == [*flags, f"ckpt_path={last}", "data=mydata", "finetune.head=extend"]


def test_a_sweep_asked_to_print_its_config_is_one_line(tmp_path: Path) -> None:
    # Hydra ended -m --cfg job in its traceback ("Only one of --run, --multirun, --cfg, ...").
    result = run_script("train.py", "-m", "--cfg", "job", "seed=1,2", check=False, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: -m and --cfg: Hydra takes one of --run, -m, --cfg, --info, -sc at a time; to print one "
        "point's config, drop -m and give one value for each swept key"
    ]
