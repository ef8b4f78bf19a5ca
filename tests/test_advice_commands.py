"""Commands the messages suggest, copied to a shell as printed: a path with a space, a comma or a
quote reaches Hydra as that path. Printed bare, `a b,c` was two shell words, and `a,b` a Hydra
list (a sweep)."""

from __future__ import annotations

import re
import shlex
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from zoo.data.imagefolder import ImageFolderDataModule
from zoo.training.checkpoint import check_resumable, refuse_other_data
from zoo.training.errors import UserError
from zoo.training.fit import stopped_by_a_signal
from zoo.training.module import _train_on_afresh
from zoo.training.overrides import check_sweep_points
from zoo.training.quoting import override, typed_override, unquoted
from zoo.training.resume import resolve_resume
from zoo.training.run_dirs import refuse_reused_run_dir

from .conftest import run_script
from .test_data_imagefolder import write_classes

AWKWARD_NAMES = ["a b,c", "it's", 'say "hi"', "both ' and \"", "é, ü"]


def value_hydra_reads(message: str, key: str) -> str:
    """The value of `key` in the command `message` ends with, as the shell and then Hydra read it."""
    start = re.search(rf"(?<!\S)'?{re.escape(key)}=", message)
    assert start, message
    lexer = shlex.shlex(message[start.start() :], posix=True)
    lexer.whitespace_split = True
    return OverridesParser.create().parse_override(lexer.get_token()).value()


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_an_override_typed_as_printed_names_the_path(name: str) -> None:
    path = f"runs/{name}/checkpoints/best.ckpt"
    (token,) = shlex.split(typed_override("ckpt_path", path))
    assert OverridesParser.create().parse_override(token).value() == path
    # Rewritten into the command line, where no shell reads it, Hydra reads it as it is.
    assert OverridesParser.create().parse_override(override("ckpt_path", path)).value() == path
    assert override("ckpt_path", "runs/plain/best.ckpt") == "ckpt_path=runs/plain/best.ckpt"


# Hydra drops the spaces around an unquoted value; inside quotes it reads a backslash before the
# quote, or at the end, as escaping what follows, so those are doubled and no others.
@pytest.mark.parametrize(
    "value", [" lead", "trail ", "ends in \\", "it\\'s", 'say \\"hi\\"', "two\\\\", "a\\b,c"]
)
def test_a_value_with_edge_spaces_or_backslashes_reads_back_as_written(value: str) -> None:
    assert OverridesParser.create().parse_override(override("ckpt_path", value)).value() == value
    (token,) = shlex.split(typed_override("ckpt_path", value))
    assert OverridesParser.create().parse_override(token).value() == value


def test_a_printed_path_takes_hydras_double_quotes_inside_the_shells_single_ones() -> None:
    # Hydra's single quotes inside the shell's would each be closed, escaped and reopened: the
    # command still ran, but read as 'ckpt_path='"'"'a b,c'"'"'' where this reads as written.
    assert typed_override("ckpt_path", "runs/a b,c/last.ckpt") == "'ckpt_path=\"runs/a b,c/last.ckpt\"'"


def test_only_a_matching_pair_of_quotes_is_taken_off_a_value() -> None:
    # A quote at one end only, or one of each kind, is part of the name (a file called it's' is one).
    assert unquoted("'a,b'") == unquoted('"a,b"') == "a,b"
    for value in ("'", '"', "'a,b\"", "a'", "'a", "''x"):
        assert unquoted(value) == value
    assert unquoted("''") == ""


def _run(runs: Path, name: str, task: str, finished: bool) -> Path:
    run_dir = runs / name
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    config_name: {task}\n")
    if finished:
        (run_dir / "metrics.json").write_text("{}")
    return run_dir


def test_resume_refusals_print_commands_that_name_the_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    trained = _run(runs, "a b,c", "train", finished=False)
    with pytest.raises(UserError, match="resume it with python train.py") as raised:
        resolve_resume([f"resume={trained}"], "resume_ckpt", task="finetune")
    assert value_hydra_reads(str(raised.value), "resume") == str(trained)

    finished = _run(runs, "d e,f", "finetune", finished=True)
    last = finished / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError, match="train on from its weights with python finetune.py") as raised:
        resolve_resume([f"ckpt_path={last}"], "ckpt_path", task="train")
    assert value_hydra_reads(str(raised.value), "ckpt_path") == str(last)

    only_best = runs / "g h,i"
    (only_best / "checkpoints").mkdir(parents=True)
    (only_best / "checkpoints" / "best.ckpt").write_bytes(b"")
    with pytest.raises(UserError, match="its best checkpoint resumes with") as raised:
        resolve_resume([f"resume={only_best}"], "ckpt_path", task="train")
    assert value_hydra_reads(str(raised.value), "ckpt_path") == str(only_best / "checkpoints" / "best.ckpt")

    with pytest.raises(UserError, match="or resume it with python train.py ") as raised:
        refuse_reused_run_dir(trained, resuming=False)
    assert value_hydra_reads(str(raised.value), "resume") == str(trained)
    # It gave resume=DIR alone; a fine-tune's run resumes with the script that made it.
    with pytest.raises(UserError, match="or resume it with python finetune.py resume="):
        refuse_reused_run_dir(_run(runs, "tuned", "finetune", finished=False), resuming=False)


def test_a_finished_runs_refusals_print_commands_that_name_its_checkpoint(tmp_path: Path) -> None:
    # Nothing left to train, or a schedule of another length: both say how to go on from the
    # checkpoint, and a run folder named with a space and a comma must reach Hydra as one path.
    run = _run(tmp_path / "runs", "a b,c", "train", finished=True)
    (run / ".hydra" / "overrides.yaml").write_text("- trainer.max_epochs=3\n")
    last = run / "checkpoints" / "last.ckpt"
    progress = {"total": {"processed": 3, "completed": 2}}
    torch.save({"global_step": 60, "loops": {"fit_loop": {"epoch_progress": progress}}}, last)
    given = override("ckpt_path", last)  # as Hydra gets it, quoted at the prompt
    with pytest.raises(UserError, match="nothing is left to train") as raised:
        resolve_resume([given], "ckpt_path", task="train")
    fine_tune, _, evaluate = str(raised.value).partition(", or test it: ")
    assert value_hydra_reads(fine_tune, "ckpt_path") == value_hydra_reads(evaluate, "ckpt_path") == str(last)
    with pytest.raises(UserError, match="a resumed run keeps its checkpoint's schedule") as raised:
        resolve_resume([given, "trainer.max_epochs=5"], "ckpt_path", task="train")
    assert value_hydra_reads(str(raised.value), "ckpt_path") == str(last)


def test_refused_resumes_print_a_fine_tune_of_the_checkpoint(tmp_path: Path) -> None:
    checkpoint = str(tmp_path / "a b,c" / "checkpoints" / "last.ckpt")
    assert value_hydra_reads(_train_on_afresh(checkpoint, "schedule"), "ckpt_path") == checkpoint
    # Another model setting (its dropout) is refused with the same way on, once the file is read.
    described = {"model": {"name": "lenet5", "dropout": 0.1}, "data": {"class_names": ["a", "b"]}}
    Path(checkpoint).parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "hyper_parameters": described}, checkpoint)
    module = SimpleNamespace(hparams={**described, "model": {"name": "lenet5", "dropout": 0.5}})
    with pytest.raises(UserError, match="model.dropout=0.1 \\(now 0.5\\)") as raised:
        check_resumable(checkpoint, module)
    assert value_hydra_reads(str(raised.value), "ckpt_path") == checkpoint
    saved = {"data_config": {"batch_size": 64}}
    module = SimpleNamespace(hparams={"data_config": {"batch_size": 32}})
    with pytest.raises(UserError, match="data.batch_size=64 \\(now 32\\)") as raised:
        refuse_other_data(checkpoint, saved, module)
    assert value_hydra_reads(str(raised.value), "ckpt_path") == checkpoint


def test_a_run_stopped_by_sigterm_prints_its_resume_command(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "a b,c"
    # SIGTERM saves last.ckpt at the step it stops on; the command resumes from it.
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").touch()
    trainer = SimpleNamespace(is_global_zero=True, global_step=3)
    with pytest.raises(SystemExit) as raised, stopped_by_a_signal(OmegaConf.create({}), trainer, run_dir):
        raise SIGTERMException
    assert raised.value.code == 128 + signal.SIGTERM
    printed = capsys.readouterr().err
    assert "resume with: python train.py" in printed
    assert value_hydra_reads(printed.strip(), "resume") == str(run_dir)


def test_a_sweep_into_one_output_dir_prints_the_sweep_dir_to_give(tmp_path: Path) -> None:
    folder = str(tmp_path / "a b,c")
    given = override("paths.output_dir", folder)  # as the shell hands it on when typed quoted
    with pytest.raises(UserError, match="name the sweep's folder instead") as raised:
        check_sweep_points(["-m", given, "optimizer.lr=0.1,0.2"], "train")
    assert value_hydra_reads(str(raised.value), "hydra.sweep.dir") == folder


def test_a_data_root_a_level_too_high_prints_the_one_below(tmp_path: Path) -> None:
    root = tmp_path / "a b,c"
    for data_set in ("ds 1,x", "ds2"):
        for split in ("train", "val"):
            write_classes(root / data_set / split, classes=("a", "b"), per_class=3)
    with pytest.raises(UserError, match="data.root is a level too high") as raised:
        ImageFolderDataModule(str(root), num_workers=0).setup()
    assert value_hydra_reads(str(raised.value), "data.root") == str(root / "ds 1,x")


def _described_lenet5_checkpoint(folder: Path) -> Path:
    """A run checkpoint with its model description and no weights: enough for the sweep checks,
    which read only the description."""
    source = folder / "best.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {"name": "lenet5"}, "data": {}}}, source)
    return source


def _refused_in_a_fine_tune_sweep(overrides: list[str], message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        check_sweep_points(["-m", *overrides], "finetune")


def test_a_fine_tune_sweep_over_models_of_one_checkpoint_is_refused_before_any_point_trains(
    tmp_path: Path,
) -> None:
    # The first point trained; the second (model=alexnet) was refused only when its turn came, as
    # the lenet5 checkpoint holds no alexnet weights.
    source = _described_lenet5_checkpoint(tmp_path)
    _refused_in_a_fine_tune_sweep(
        [f"ckpt_path={source}", "model=lenet5,alexnet"],
        f"sweep point #1 (model=alexnet) of 2: {source} holds a model=lenet5, not model=alexnet",
    )
    _refused_in_a_fine_tune_sweep(
        [f"ckpt_path={source}", "finetune.head=extend,new"],
        "sweep point #1 (finetune.head=new) of 2: finetune.head must be one of replace, extend",
    )
    # The settings every run's config is checked for are checked for a fine-tune's points too.
    _refused_in_a_fine_tune_sweep(
        [f"ckpt_path={source}", "optimizer.lr=0.1,abc"],
        "sweep point #1 (optimizer.lr=abc) of 2: optimizer.lr must be a number",
    )
    missing = tmp_path / "nope.ckpt"
    _refused_in_a_fine_tune_sweep(
        [f"ckpt_path={source},{missing}"],
        f"sweep point #1 (ckpt_path={missing}) of 2: checkpoint {missing} does not exist",
    )
    # Points the checkpoint can start are let through, model= of its own architecture included.
    check_sweep_points(
        ["-m", f"ckpt_path={source}", "model=lenet5", "finetune.head=extend,replace"], "finetune"
    )


def test_finetune_py_refuses_such_a_sweep_before_hydra_makes_its_folder(tmp_path: Path) -> None:
    source = _described_lenet5_checkpoint(tmp_path)
    sweep = tmp_path / "sweep"
    result = run_script(
        "finetune.py",
        "-m",
        f"ckpt_path={source}",
        "model=lenet5,alexnet",
        f"hydra.sweep.dir={sweep}",
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"error: sweep point #1 (model=alexnet) of 2: {source} holds a model=lenet5, not model=alexnet; "
        "leave model= out to fine-tune the checkpoint's own architecture"
    )
    assert not sweep.exists()


def test_a_resume_refused_for_changed_settings_trains_on_keeping_its_head(tmp_path: Path) -> None:
    # Its advice gave finetune.py's default finetune.head=replace, which starts the trained head
    # afresh, where every other refused resume's advice keeps it (finetune.head=extend).
    checkpoint = str(tmp_path / "last.ckpt")
    module = SimpleNamespace(hparams={"data_config": {"batch_size": 32}})
    with pytest.raises(UserError) as raised:
        refuse_other_data(checkpoint, {"data_config": {"batch_size": 64}}, module)
    assert str(raised.value).endswith(f"python finetune.py ckpt_path={checkpoint} finetune.head=extend")


def test_a_fine_tune_sweep_point_whose_head_options_contradict_is_refused_before_any_trains(
    tmp_path: Path,
) -> None:
    # head=replace,extend with reset=classifier: the replace point trained, and the extend one was
    # refused only when the head was rebuilt for it.
    source = _described_lenet5_checkpoint(tmp_path)
    _refused_in_a_fine_tune_sweep(
        [f"ckpt_path={source}", "finetune.head=replace,extend", "finetune.reset=classifier"],
        "sweep point #1 (finetune.head=extend) of 2: finetune.head=extend keeps the trained head, "
        "so finetune.reset=classifier contradicts it",
    )
