"""Every user error gets one clear line on stderr, a non-zero exit, and no traceback."""

from __future__ import annotations

import errno
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, OverrideParseException
from omegaconf import OmegaConf

from zoo.data import DataSpec
from zoo.training import builders
from zoo.training.checkpoint import load_weights_file
from zoo.training.errors import UserError, user_errors
from zoo.training.fit import fit_test_and_record, start_run
from zoo.training.outputs import save_resolved_config
from zoo.training.overrides import (
    check_overrides,
    check_sweep_points,
    describe_override_error,
    run_dir_of_output_dir,
    sweep_points,
)
from zoo.training.validation import validate_config

from .conftest import ROOT, compose_config, run_script


def _assert_one_clear_line(result, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# torch, torchvision and Lightning take seconds to import on a slow CPU: the entry points import them
# only once Hydra has composed the config and its values have passed, so a mistake in the command
# is answered at once.
@pytest.mark.parametrize(
    ("script", "overrides", "needle"),
    [
        ("train.py", ("optimizer.lrr=0.1",), "did you mean optimizer.lr"),
        ("train.py", ("optimizer.lr=-1",), "optimizer.lr must be"),
        ("train.py", ("model=resnet9000",), "unknown model"),
        ("train.py", ("model.small_input=maybe",), "model.small_input must be"),
        (
            "train.py",
            ("optimizer.fused=true", "trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1"),
            "optimizer.fused=true cannot go with trainer.gradient_clip_val",
        ),
        ("finetune.py", ("ckpt_path=SOURCE", "trainer.max_epochs=0"), "trainer.max_epochs must be"),
        ("finetune.py", ("ckpt_path=SOURCE", "finetune.head=bad"), "finetune.head must be one of"),
        ("finetune.py", (), "finetune.py needs a source"),
        ("finetune.py", ("-m", "ckpt_path=SOURCE", "finetune.head=replace,bad"), "sweep point #1"),
        ("evaluate.py", ("ckpt_path=SOURCE", "data.batch_size=0"), "data.batch_size must be"),
        (
            "evaluate.py",
            ("ckpt_path=SOURCE", "data.roott=x"),
            "data has no key 'roott'; did you mean data.root?",
        ),
    ],
)
def test_a_mistake_in_the_command_is_answered_before_torch_is_imported(
    tmp_path: Path, script: str, overrides: tuple[str, ...], needle: str
) -> None:
    source, given = _with_an_unread_source(tmp_path, overrides)
    result = _run_noting_torch(tmp_path, script, *given)
    _assert_one_clear_line(result, needle)
    assert "torch imported: False" in result.stderr


def _with_an_unread_source(tmp_path: Path, overrides: tuple[str, ...]) -> tuple[Path, list[str]]:
    """`overrides` with SOURCE naming a checkpoint file the command must refuse before reading it."""
    source = tmp_path / "source.ckpt"
    # A zip's signature: a file whose first bytes pass, refused only by torch.load.
    source.write_bytes(b"PK\x03\x04not read: the command is refused before any file is loaded")
    return source, [override.replace("SOURCE", str(source)) for override in overrides]


def _run_noting_torch(tmp_path: Path, script: str, *overrides: str) -> subprocess.CompletedProcess:
    """An entry point run in a fresh process that says at exit whether torch was imported."""
    argv = [script, *overrides, f"hydra.run.dir={tmp_path / 'run'}"]
    code = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, file=sys.stderr))\n"
        f"sys.argv = {argv!r}\n"
        f"runpy.run_path({str(ROOT / script)!r}, run_name='__main__')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


# Refused by the job's checks, these left the run folder Hydra had made for it (.hydra/, the log);
# they are now checked before Hydra makes it.
@pytest.mark.parametrize(
    ("script", "overrides", "needle"),
    [
        ("train.py", ("optimizer.lr=-1",), "optimizer.lr must be"),
        (
            "finetune.py",
            ("ckpt_path=SOURCE", "finetune.head=extend", "finetune.reset=classifier"),
            "contradicts",
        ),
        ("finetune.py", (), "finetune.py needs a source"),
    ],
)
def test_a_setting_the_job_refuses_makes_no_run_folder(
    tmp_path: Path, script: str, overrides: tuple[str, ...], needle: str
) -> None:
    source, given = _with_an_unread_source(tmp_path, overrides)
    result = run_script(script, *given, check=False, cwd=tmp_path)  # into runs/<task>/<time>/ there
    _assert_one_clear_line(result, needle)
    assert sorted(tmp_path.iterdir()) == [source]


def _refused_in_the_job(run_dir: Path, meanwhile=lambda run_dir: None) -> None:
    """What a single run refused inside its job goes through: the guard before Hydra makes the
    folder, Hydra's record in it, what the job did `meanwhile`, then a user error inside
    finetune.py's main."""
    from hydra import compose, initialize_config_dir

    from zoo.training.run_dir_guard import RunDirGuard, no_folder_left_by_a_refusal

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        # A source the guard's own checks take: the refusal comes later, from inside the job.
        source = ["pretrained=torchvision", "model=resnet18"]
        config = compose("finetune", [*source, f"hydra.run.dir={run_dir}"], return_hydra_config=True)
    RunDirGuard(resume_key="resume_ckpt").on_run_start(config)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    meanwhile(run_dir)
    with pytest.raises(SystemExit) as exited, no_folder_left_by_a_refusal(), user_errors():
        raise UserError("refused")
    assert exited.value.code == 2


def test_a_refused_job_removes_only_a_run_folder_it_made_that_holds_no_run(tmp_path: Path) -> None:
    from zoo.training.run_dir_guard import keep_the_run_folder

    _refused_in_the_job(tmp_path / "runs" / "finetune" / "new")
    assert list(tmp_path.iterdir()) == []  # with the parents it made
    there = tmp_path / "there"
    there.mkdir()
    (there / "notes.txt").write_text("kept")
    _refused_in_the_job(there)
    assert (there / "notes.txt").read_text() == "kept" and (there / ".hydra").is_dir()

    # A folder this command made stays once it holds a checkpoint, or once the run has trained.
    def checkpointed(run_dir: Path) -> None:
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"PK")

    _refused_in_the_job(tmp_path / "checkpointed", checkpointed)
    _refused_in_the_job(tmp_path / "trained", lambda run_dir: keep_the_run_folder())
    assert (tmp_path / "checkpointed" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "trained" / ".hydra").is_dir()

    # Removed with what a run writes before training; kept when anything else got in meanwhile.
    def began_logging(run_dir: Path) -> None:
        (run_dir / "finetune.log").write_text("refused")
        (run_dir / "tensorboard").mkdir()
        (run_dir / "tensorboard" / "events.out.tfevents.1").write_bytes(b"")

    _refused_in_the_job(tmp_path / "logged", began_logging)
    assert not (tmp_path / "logged").exists()
    _refused_in_the_job(tmp_path / "shared", lambda run_dir: (run_dir / "notes.txt").write_text("kept"))
    assert (tmp_path / "shared" / "notes.txt").read_text() == "kept"


def test_a_refused_job_leaves_a_folder_that_existed_named_through_a_missing_one(tmp_path: Path) -> None:
    # new/ is missing, so new/../there read as written was too; Hydra writes into there/.
    there = tmp_path / "there"
    there.mkdir()
    (there / "notes.txt").write_text("kept")
    _refused_in_the_job(tmp_path / "new" / ".." / "there")
    assert (there / "notes.txt").read_text() == "kept"


@pytest.mark.parametrize("own_config", [False, True], ids=["train.yaml", "--config-name"])
def test_a_refused_setting_leaves_a_folder_that_existed_as_it_was(tmp_path: Path, own_config: bool) -> None:
    # The job's own refusal removes only a folder the command made: into one that existed, Hydra had
    # written .hydra/ and train.log before the job refused the setting. A copy of train.yaml chosen
    # with --config-name is checked as early.
    there = tmp_path / "there"
    there.mkdir()
    (there / "notes.txt").write_text("kept")
    flags = []
    if own_config:
        (tmp_path / "mine").mkdir()
        shutil.copy(ROOT / "configs" / "train.yaml", tmp_path / "mine" / "mytrain.yaml")
        flags = ["--config-dir", str(tmp_path / "mine"), "--config-name", "mytrain"]
    result = run_script("train.py", *flags, "optimizer.lr=-1", f"hydra.run.dir={there}", check=False)
    _assert_one_clear_line(result, "optimizer.lr must be")
    assert [path.name for path in there.iterdir()] == ["notes.txt"]


def test_unknown_model_lists_the_known_models() -> None:
    result = run_script("train.py", "model=resnet9000", check=False)
    _assert_one_clear_line(result, "resnet9000", "lenet5", "resnet18")


def test_unknown_data_set_lists_the_known_ones() -> None:
    result = run_script("train.py", "data=imagenet21k", check=False)
    _assert_one_clear_line(result, "imagenet21k", "digits")


def test_evaluate_without_ckpt_path_says_how_to_pass_one(tmp_path: Path) -> None:
    result = run_script("evaluate.py", f"hydra.run.dir={tmp_path / 'e'}", check=False)
    _assert_one_clear_line(result, "ckpt_path")


# Files that are not checkpoints, each failing differently inside torch.load.
NOT_CHECKPOINTS = {
    "empty": b"",  # EOFError
    "text": b"not a checkpoint at all",  # UnpicklingError
    "truncated": b"PK\x03\x04truncated zip",  # a zip's signature, then nothing readable
    # The weights-only unpickler raises IndexError, KeyError and struct.error on these three.
    "passwd": b"root:x:0:0:root:/root:/bin/bash\n",
    "unknown-memo-key": b"h\x05",
    "short-integer": b"J\xba?",
    "hdf5": b"\x89HDF\r\n\x1a\n\x00\x00\x00\x00",  # Keras's .h5; torch said "Unsupported operand 72"
}


def _bogus_checkpoint(tmp_path: Path, name: str) -> Path:
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(NOT_CHECKPOINTS[name])
    return bogus


@pytest.mark.parametrize("name", NOT_CHECKPOINTS)
def test_a_file_that_is_not_a_checkpoint_is_one_user_error_naming_it(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match="bogus.ckpt") as raised:
        load_weights_file(_bogus_checkpoint(tmp_path, name))
    assert "\n" not in str(raised.value)
    # The unpickler's own reason for these was "(101)" or "(list index out of range)".
    if name in ("passwd", "unknown-memo-key", "short-integer"):
        start = NOT_CHECKPOINTS[name][:16]
        assert str(raised.value).endswith(
            f"torch.save writes a zip archive (or, before torch 1.6, a pickle), "
            f"and this file begins {start!r}"
        )
    if name == "empty":
        assert str(raised.value).endswith("bogus.ckpt is empty: a checkpoint whose writing never finished")


@pytest.mark.parametrize("name", ["empty", "text", "passwd"])
def test_evaluate_on_a_file_that_is_not_a_checkpoint(tmp_path: Path, name: str) -> None:
    bogus = _bogus_checkpoint(tmp_path, name)
    result = run_script("evaluate.py", f"ckpt_path={bogus}", f"hydra.run.dir={tmp_path / 'e'}", check=False)
    _assert_one_clear_line(result, "bogus.ckpt")
    assert bogus.read_bytes() == NOT_CHECKPOINTS[name]


# Neither a zip archive nor a pickle, told from the first bytes: refused with load_weights_file's
# line before seconds of importing torch. A file that starts as a
# zip (an .npz, a TorchScript archive, a truncated checkpoint) is left to torch.load, whose reason
# the line gives.
@pytest.mark.parametrize("name", ["empty", "text", "hdf5"])
@pytest.mark.parametrize(
    ("script", "key"), [("evaluate.py", "ckpt_path"), ("finetune.py", "ckpt_path"), ("train.py", "ckpt_path")]
)
def test_a_file_plainly_not_a_checkpoint_is_refused_before_torch_is_imported(
    tmp_path: Path, script: str, key: str, name: str
) -> None:
    bogus = _bogus_checkpoint(tmp_path, name)
    with pytest.raises(UserError) as raised:
        load_weights_file(bogus)
    result = _run_noting_torch(tmp_path, script, f"{key}={bogus}")
    _assert_one_clear_line(result, f"error: {raised.value}")
    assert "torch imported: False" in result.stderr
    assert bogus.read_bytes() == NOT_CHECKPOINTS[name]


def test_evaluate_on_a_missing_file(tmp_path: Path) -> None:
    result = run_script(
        "evaluate.py", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'e'}", check=False
    )
    _assert_one_clear_line(result, "does not exist")


# Refused inside its job, an evaluation left runs/evaluate/<time>/ holding only .hydra/ and
# evaluate.log; a folder that existed before the command stays, even with nothing else in it.
@pytest.mark.parametrize(
    ("refusal", "needle"),
    [
        ("no-checkpoint", "ckpt_path is required"),
        ("not-a-checkpoint", "bogus.ckpt is not a PyTorch checkpoint"),
        ("other-classes", "but the checkpoint was trained on"),
    ],
)
def test_a_refused_evaluation_leaves_no_new_folder(
    trained_run: Path, tmp_path: Path, refusal: str, needle: str
) -> None:
    bogus = _bogus_checkpoint(tmp_path, "text")
    given = {
        "no-checkpoint": [],
        "not-a-checkpoint": [f"ckpt_path={bogus}"],
        "other-classes": [
            f"ckpt_path={trained_run / 'checkpoints' / 'best.ckpt'}",
            "data=synthetic",
            "data.num_classes=3",
            "data.num_samples=8",
        ],
    }[refusal]
    result = run_script("evaluate.py", *given, check=False, cwd=tmp_path)  # into runs/evaluate/<time>/
    assert result.returncode == 2
    _assert_one_clear_line(result, needle)
    assert sorted(tmp_path.iterdir()) == [bogus]
    existing = tmp_path / "existing"
    existing.mkdir()
    result = run_script("evaluate.py", *given, f"hydra.run.dir={existing}", check=False, cwd=tmp_path)
    assert result.returncode == 2
    assert sorted(path.name for path in existing.iterdir()) == [".hydra", "evaluate.log"]


def test_an_evaluation_keeps_the_folder_it_made(trained_run: Path, tmp_path: Path) -> None:
    run_script("evaluate.py", f"ckpt_path={trained_run / 'checkpoints' / 'best.ckpt'}", cwd=tmp_path)
    (run_dir,) = (tmp_path / "runs" / "evaluate").iterdir()
    assert sorted(path.name for path in run_dir.iterdir()) == [
        ".hydra",
        "confusion_matrix.png",
        "evaluate.log",
        "metrics.json",
        "tensorboard",
    ]


# Checked before any checkpoint is read (the file named here is empty, unreadable): evaluate.py's
# own settings, and a data set named with data=, which meets the training rules.
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("split=train",), "split must be test or val, got 'train'"),
        (("data=digits", "data.val_fraction=abc"), "data.val_fraction must be a number in (0, 1), got 'abc'"),
    ],
    ids=["own-setting", "named-data"],
)
def test_evaluate_checks_its_settings_before_loading_anything(
    tmp_path: Path, overrides: tuple[str, ...], message: str
) -> None:
    (tmp_path / "any.ckpt").write_bytes(b"")
    result = run_script(
        "evaluate.py",
        f"ckpt_path={tmp_path / 'any.ckpt'}",
        *overrides,
        f"hydra.run.dir={tmp_path / 'e'}",
        check=False,
    )
    _assert_one_clear_line(result, message)


def _train_config(tmp_path: Path, *overrides: str):
    return compose_config(f"paths.output_dir={tmp_path}", "logger=none", *overrides)


@pytest.mark.parametrize(
    ("key", "value"), [("data.val_fraction", 1.5), ("data.test_fraction", 0), ("data.eval_fraction", -0.1)]
)
def test_held_out_fractions_lie_strictly_between_0_and_1(key: str, value: float) -> None:
    cfg = OmegaConf.create({})
    OmegaConf.update(cfg, key, value, force_add=True)
    with pytest.raises(UserError, match=rf"{key} must be a number in \(0, 1\), got {value}"):
        validate_config(cfg)


def test_held_out_fractions_leave_images_to_train_on() -> None:
    validate_config(OmegaConf.create({"data": {"val_fraction": 0.4, "test_fraction": 0.5}}))
    with pytest.raises(
        UserError, match="data.val_fraction \\+ data.test_fraction = 1.1 leaves no training images"
    ):
        validate_config(OmegaConf.create({"data": {"val_fraction": 0.5, "test_fraction": 0.6}}))
    # Exactly all of them held out leaves none either.
    with pytest.raises(
        UserError, match="data.val_fraction \\+ data.test_fraction = 1 leaves no training images"
    ):
        validate_config(OmegaConf.create({"data": {"val_fraction": 0.5, "test_fraction": 0.5}}))


@pytest.mark.parametrize("key", ["data.val_fraction", "data.test_fraction"])
def test_a_held_out_part_too_small_for_every_class_is_one_line(tmp_path: Path, key: str) -> None:
    # On the default digits this was a scikit-learn traceback; the other data sets said it in a line.
    result = run_script("train.py", f"{key}=0.001", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    _assert_one_clear_line(result, f"cannot split off {key}=0.001: ")
    assert "each class needs images on both sides of the split" in result.stderr


def test_a_class_count_the_data_does_not_have_is_refused(tmp_path: Path) -> None:
    spec = DataSpec(class_names=tuple("0123456789"), channels=1, image_size=32, mean=(0.5,), std=(0.25,))
    assert builders.model_config(_train_config(tmp_path, "model.num_classes=10"), spec)["num_classes"] == 10
    for wrong in (3, 12):
        with pytest.raises(UserError, match=f"model.num_classes={wrong} but the data has 10 classes"):
            builders.model_config(_train_config(tmp_path, f"model.num_classes={wrong}"), spec)


@pytest.mark.parametrize("trainer", ["gpu", "ddp"])
def test_a_gpu_trainer_on_a_machine_without_one_says_so(
    tmp_path: Path, trainer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="asks for a GPU, but PyTorch sees none; use trainer=cpu"):
        builders.build_trainer(_train_config(tmp_path, f"trainer={trainer}"))


def test_sync_batchnorm_on_cpu_processes_is_refused(tmp_path: Path) -> None:
    # Two DDP processes on the CPU each died at their first step with a traceback.
    with pytest.raises(UserError, match=r"trainer.sync_batchnorm=true needs GPUs \(PyTorch's SyncBatchNorm"):
        builders.build_trainer(_train_config(tmp_path, "trainer=ddp_cpu", "trainer.sync_batchnorm=true"))


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("trainer.devices=0", "devices=0"),  # MisconfigurationException
        ("trainer.strategy=nonsense", "invalid strategy name"),  # ValueError
        ("+trainer.devcies=1", "unexpected keyword argument 'devcies'"),  # TypeError
    ],
)
def test_trainer_settings_lightning_rejects_are_one_user_error(
    tmp_path: Path, override: str, reason: str
) -> None:
    with pytest.raises(UserError, match=f"Lightning rejects the trainer settings: .*{reason}") as raised:
        builders.build_trainer(_train_config(tmp_path, "trainer=cpu", override))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("trainer.max_epochs=0",), r"trainer.max_epochs must be an integer >= 1, or -1 \(no limit\), got 0"),
        (("trainer.max_steps=0",), r"trainer.max_steps must be an integer >= 1, or -1 \(no limit\), got 0"),
        (("trainer.max_epochs=-1",), "trainer.max_epochs=-1 with no trainer.max_steps or trainer.max_time"),
        # The default cosine schedule spans max_epochs; with no epoch limit its length must be given.
        (
            ("trainer.max_epochs=-1", "trainer.max_steps=100"),
            r"scheduler.factory.T_max must be an integer >= 1 \(it follows trainer.max_epochs",
        ),
    ],
)
def test_run_length_limits(tmp_path: Path, overrides: tuple[str, ...], message: str) -> None:
    with pytest.raises(UserError, match=message):
        validate_config(_train_config(tmp_path, *overrides))
    # -1 is Lightning's "no limit", fine beside another limit.
    for limit in ("trainer.max_steps=100", "trainer.max_time=00:01:00:00"):
        validate_config(_train_config(tmp_path, "trainer.max_epochs=-1", limit, "scheduler=onecycle"))


# Found only once training starts (Lightning knows the step count then), so a whole run, stopped there.
def test_onecycle_without_a_step_count_says_how_to_give_one(tmp_path: Path) -> None:
    limits = ("trainer.max_epochs=-1", "trainer.max_time=00:00:01:00")
    result = run_script(
        "train.py", *limits, "scheduler=onecycle", "logger=none", f"hydra.run.dir={tmp_path}", check=False
    )
    _assert_one_clear_line(result, "scheduler=onecycle needs the run's step count")


# Judged by Lightning only once fit sees the data: 500 steps against an epoch of 20 batches.
def test_trainer_settings_lightning_rejects_at_fit_are_one_user_error(tmp_path: Path) -> None:
    result = run_script(
        "train.py", "trainer.val_check_interval=500", "logger=none", f"hydra.run.dir={tmp_path}", check=False
    )
    _assert_one_clear_line(result, "Lightning rejects the trainer settings: `val_check_interval` (500)")


def test_a_batch_norm_layer_given_one_value_per_channel_is_one_user_error(tmp_path: Path) -> None:
    # ResNet-18 at 8 px ends at 1x1: a batch of one image there was a 170-line traceback from torch.
    cfg = compose_config(
        "data=synthetic",
        "data.num_samples=64",
        "model=resnet18",
        "data.image_size=8",
        "data.batch_size=1",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "logger=none",
        f"paths.output_dir={tmp_path}",
    )
    _, datamodule, trainer = start_run(cfg)
    module = builders.build_module(cfg, datamodule.spec)
    message = "a BatchNorm layer got one value per channel (a training batch of one image at 1x1: "
    with pytest.raises(
        UserError, match=re.escape(message + "torch.Size([1, 512, 1, 1])); set data.batch_size")
    ):
        fit_test_and_record(cfg, trainer, module, datamodule, tmp_path, resume_from=None)


# Hydra's own report of these runs to five lines and advises "+key=value", which for a typo adds a
# second key beside the one meant.
@pytest.mark.parametrize(
    ("override", "config_name", "message"),
    [
        ("optimizer.lrr=0.1", "train", "optimizer has no key 'lrr'; did you mean optimizer.lr?"),
        ("trainer.devcies=1", "train", "trainer has no key 'devcies'; did you mean trainer.devices?"),
        ("max_epochs=3", "train", "the config has no key 'max_epochs'; did you mean trainer.max_epochs?"),
        ("finetune.hed=extend", "finetune", "finetune has no key 'hed'; did you mean finetune.head?"),
        ("splt=val", "evaluate", "the config has no key 'splt'; did you mean split?"),
        # Hydra's own settings are not the job's: hydra.runtime.output_dir is Hydra's to set.
        (
            "output_dir=x",
            "train",
            "the config has no key 'output_dir'; did you mean paths.output_dir? (+output_dir=x adds",
        ),
        # evaluate.py has no data section unless data= names one; +data=... would replace it whole.
        ("data.image_size=64", "evaluate", "the config has no key 'data'; +data.image_size=64 adds it as"),
        ("foo", "train", "cannot parse the override 'foo' (missing EQUAL at '<EOF>'); write key=value"),
        # Hydra advised "override experiment: resnet18_digits", a defaults list's syntax.
        (
            "+experiment=resnet18_digits",
            "train",
            "+experiment=resnet18_digits adds the group experiment, which the config already has: "
            "write experiment=resnet18_digits",
        ),
        # Without -m, Hydra's report of a comma list spanned four lines with backslashed quotes.
        (
            "optimizer.lr=1e-3,1e-2",
            "train",
            "optimizer.lr=1e-3,1e-2 gives several values: add -m to sweep over them, write "
            "optimizer.lr=[1e-3,1e-2] for a list, or \"optimizer.lr='1e-3,1e-2'\" for one string",
        ),
        # The reason given was a caret alone, under a character the one-line message did not show.
        (
            "data.root=~/imgs",
            "train",
            "cannot parse the override 'data.root=~/imgs': Hydra's grammar stops at '~' (character 11); a ~ "
            "is not your home folder here: write it out ($HOME/..., which the shell expands)",
        ),
    ],
)
def test_a_bad_override_is_described_in_one_line(override: str, config_name: str, message: str) -> None:
    with pytest.raises((ConfigCompositionException, OverrideParseException)) as raised:
        compose_config(override, config_name=config_name)
    described = describe_override_error(raised.value)
    assert described.startswith(message) and "\n" not in described


@pytest.mark.parametrize("root", ["/photos/it's here", '/photos/a"b'])
def test_the_quoting_advised_for_an_unparsable_value_gives_that_value(root: str) -> None:
    # The advice is pasted into a shell: the override the shell hands on must compose, to the value meant.
    with pytest.raises(OverrideParseException) as raised:
        compose_config("data=imagefolder", f"data.root={root}")
    advice = describe_override_error(raised.value).rpartition("; quote the value: ")[2]
    (override,) = shlex.split(advice)
    assert compose_config("data=imagefolder", override).data.root == root


def test_a_bad_override_on_the_command_line_is_one_error_line(tmp_path: Path) -> None:
    result = run_script("train.py", "optimizer.lrr=0.1", f"hydra.run.dir={tmp_path}", check=False)
    _assert_one_clear_line(result, "optimizer has no key 'lrr'; did you mean optimizer.lr?")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


# Hydra takes no null for a config group on the command line: it answered `logger=null` with a
# ValueError traceback, and `model=` with a report of its search path.
@pytest.mark.parametrize(
    ("override", "config_name", "message"),
    [
        (
            "logger=null",
            "train",
            "logger=null: a config group takes the name of one of its options; logger=none",
        ),
        ("scheduler=null", "finetune", "scheduler=none is the one without a scheduler"),
        (
            "model=null",
            "train",
            "model=null: a config group takes the name of one of its options (known: alexnet",
        ),
        ("model=", "train", "model=: a config group takes the name of one of its options (known: alexnet"),
        (
            "experiment=null",
            "train",
            "null is its default already, so leave experiment= out (known: densenet121_cifar100",
        ),
        ("model=null", "finetune", "null is its default already, so leave model= out"),
        ("data=null", "evaluate", "null is its default already, so leave data= out (known: cifar10"),
        ("data=digits,null", "train", "data=null: a config group takes the name of one of its options"),
    ],
)
def test_a_config_group_set_to_null_says_what_to_write(override: str, config_name: str, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        check_overrides([override], config_name=config_name)


@pytest.mark.parametrize("override", ["model=resnet18", "+model=resnet18", "+model.dropout=0.5"])
def test_evaluate_refuses_a_model_which_hydra_would_have_it_ignore(override: str) -> None:
    # Hydra's suggestion, +model=resnet18, evaluated the checkpoint's LeNet without a word.
    with pytest.raises(UserError, match="evaluate.py takes the model .* from the checkpoint; drop it"):
        check_overrides([override], config_name="evaluate")


@pytest.mark.parametrize("config_name", ["train", "finetune", "evaluate"])
def test_hydra_changing_into_the_run_folder_is_refused(config_name: str) -> None:
    # Relative data.root, ckpt_path and resume=RUN were then looked for inside the new run folder.
    with pytest.raises(UserError, match=r"^hydra\.job\.chdir=true: cnn-zoo runs in the folder it is started"):
        check_overrides(["hydra.job.chdir=True"], config_name=config_name)
    check_overrides(["hydra.job.chdir=false"], config_name=config_name)


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "sweep"])
def test_hydra_changing_into_the_run_folder_is_refused_however_it_is_set(
    tmp_path: Path, multirun: bool
) -> None:
    # yes for true, or a --config-name config's own hydra.job.chdir: only the composed value tells.
    from hydra import compose, initialize_config_dir

    from zoo.training.run_dir_guard import RunDirGuard

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        config = compose(
            "train", ["hydra.job.chdir=yes", f"hydra.run.dir={tmp_path / 'run'}"], return_hydra_config=True
        )
    guard = RunDirGuard(resume_key="ckpt_path")
    start = guard.on_multirun_start if multirun else guard.on_run_start
    with pytest.raises(SystemExit) as exited:
        start(config)
    assert exited.value.code == 2 and not (tmp_path / "run").exists()


def test_an_unknown_paths_option_lists_the_known_ones() -> None:
    with pytest.raises(UserError, match="^unknown paths setting 'foo'; known: default$"):
        check_overrides(["paths=foo"])


def test_a_config_group_set_to_null_on_the_command_line_is_one_error_line(tmp_path: Path) -> None:
    result = run_script("train.py", "logger=null", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    _assert_one_clear_line(result, "logger=none is the one without a logger")
    assert result.returncode == 2 and not (tmp_path / "run").exists()


# Each of these ran into a traceback once training started (numpy's seed bounds, a modulo by zero in
# Lightning's loop or in StepLR), or, for the clip value, silently clipped nothing.
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=-5", "seed must be an integer from 0 to 4294967295, got -5"),
        ("seed=4294967296", "seed must be an integer from 0 to 4294967295, got 4294967296"),
        ("trainer.check_val_every_n_epoch=0", "trainer.check_val_every_n_epoch must be an integer >= 1"),
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val must be a number >= 0, got -1"),
        ("scheduler.factory.step_size=0", "scheduler.factory.step_size must be an integer >= 1, got 0"),
        # Not a traceback: the rate silently never dropped at the milestone that is not a number.
        (
            "scheduler.factory.milestones=[60,sixty]",
            "scheduler.factory.milestones must be a list of integers >= 1 (epochs; steps with",
        ),
        ("data.split_seed=-1", "data.split_seed must be an integer from 0 to 4294967295, got -1"),
        (
            "trainer.val_check_interval=0",
            "trainer.val_check_interval must be null (once an epoch), a fraction",
        ),
        (
            "trainer.val_check_interval=0.0",
            "trainer.val_check_interval must be null (once an epoch), a fraction",
        ),
        ("scheduler.factory.max_lr=-0.1", "scheduler.factory.max_lr must be a number > 0, got -0.1"),
        ("scheduler.factory.gamma=abc", "scheduler.factory.gamma must be a number > 0, got 'abc'"),
        ("scheduler.factory.eta_min=abc", "scheduler.factory.eta_min must be a number >= 0, got 'abc'"),
        ("trainer.max_time=-1", "trainer.max_time must be null or a duration DD:HH:MM:SS"),
        (
            "callbacks.model_checkpoint.save_top_k=x",
            "callbacks.model_checkpoint.save_top_k must be an integer",
        ),
        ("data.mixup_alpha=abc", "data.mixup_alpha must be a number >= 0 (0 turns mixup off), got 'abc'"),
        # Not a traceback but worse: any string was taken as true.
        ("compile=maybe", "compile must be true or false, got 'maybe'"),
        ("test=maybe", "test must be true or false, got 'maybe'"),
        (
            "trainer.limit_train_batches=abc",
            "trainer.limit_train_batches must be null (all), an integer >= 0",
        ),
        ("trainer.log_every_n_steps=abc", "trainer.log_every_n_steps must be an integer >= 0, got 'abc'"),
        # benchmark=maybe was a traceback from torch; deterministic=maybe was half applied.
        ("trainer.benchmark=maybe", "trainer.benchmark must be null (Lightning's choice), true or false"),
        ("trainer.deterministic=maybe", "trainer.deterministic must be true, false or warn, got 'maybe'"),
        ("trainer.min_epochs=-3", "trainer.min_epochs must be null or an integer >= 0, got -3"),
        ("trainer.min_steps=x", "trainer.min_steps must be null or an integer >= 0, got 'x'"),
        ("data.seed=abc", "data.seed must be an integer from 0 to 4294967295, got 'abc'"),
        # data.seed follows ${seed}: the key named is the one the user typed.
        (
            "seed=x",
            "seed must be an integer from 0 to 4294967295, got 'x'; fix it on the command line (seed=...)",
        ),
        # Hydra reads these as a number and a bool: Path() raised a TypeError.
        ("ckpt_path=123", "ckpt_path must be a path to a checkpoint file (for a file named 123: ./123)"),
        ("ckpt_path=true", "ckpt_path must be a path to a checkpoint file"),
    ],
)
def test_settings_that_fail_only_once_training_runs_are_refused_up_front(
    tmp_path: Path, override: str, message: str
) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        validate_config(_train_config(tmp_path, _scheduler_with(override), override))
    # Their neighbours at the edge of the range pass.
    edge = {"seed": "seed=0", "trainer.check_val_every_n_epoch": "trainer.check_val_every_n_epoch=null"}
    edge["data.split_seed"] = "data.split_seed=4294967295"
    edge["trainer.val_check_interval"] = "trainer.val_check_interval=1.0"
    edge["scheduler.factory.max_lr"] = "scheduler.factory.max_lr=0.01"
    edge |= {
        "trainer.gradient_clip_val": "trainer.gradient_clip_val=0",
        "scheduler.factory.step_size": "scheduler.factory.step_size=1",
        "scheduler.factory.milestones": "scheduler.factory.milestones=[1,60]",
        "scheduler.factory.gamma": "scheduler.factory.gamma=0.5",
        "scheduler.factory.eta_min": "scheduler.factory.eta_min=0",
        "trainer.max_time": "trainer.max_time=00:00:00:03",
        "callbacks.model_checkpoint.save_top_k": "callbacks.model_checkpoint.save_top_k=-1",
        "data.mixup_alpha": "data.mixup_alpha=0",
        "compile": "compile=false",
        "test": "test=false",
        "trainer.limit_train_batches": "trainer.limit_train_batches=0.5",
        "trainer.log_every_n_steps": "trainer.log_every_n_steps=0",
        "data.seed": "data.seed=0",
        "ckpt_path": "ckpt_path=./123",
        "trainer.benchmark": "trainer.benchmark=true",
        "trainer.deterministic": "trainer.deterministic=warn",
        "trainer.min_epochs": "trainer.min_epochs=0",
        "trainer.min_steps": "trainer.min_steps=null",
    }
    validate_config(_train_config(tmp_path, _scheduler_with(override), edge[override.split("=")[0]]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # "abc" passed the data module's length check as three values, then failed to convert.
        (("data.mean=abc", "data.std=abc"), "data.mean must be null or a list of numbers, one per channel"),
        # A zero std gave a NaN loss at the first step, blamed on the learning rate.
        (("data.mean=[0.5,0.5,0.5]", "data.std=[0,1,1]"), "data.std must be null or a list of numbers > 0"),
    ],
)
def test_image_folder_statistics_must_be_numbers(
    tmp_path: Path, overrides: tuple[str, ...], message: str
) -> None:
    cfg = compose_config(
        "data=imagefolder", f"data.root={tmp_path}", f"paths.output_dir={tmp_path}", *overrides
    )
    with pytest.raises(UserError, match=re.escape(message)):
        validate_config(cfg)
    good = ("data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]")
    validate_config(
        compose_config("data=imagefolder", f"data.root={tmp_path}", f"paths.output_dir={tmp_path}", *good)
    )


def _scheduler_with(override: str) -> str:
    if "max_lr" in override:
        return "scheduler=onecycle"
    if "milestones" in override:
        return "scheduler=multistep"
    return "scheduler=cosine" if "eta_min" in override else "scheduler=step"


# Torch checks these only as it builds the optimizer or the schedule, inside fit: tracebacks before.
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("+optimizer.eps=-1",), "optimizer: Adam refuses these settings (Invalid epsilon value: -1)"),
        (
            ("optimizer=adamw", "+optimizer.betas=[0.9,1.5]"),
            "optimizer: AdamW refuses these settings (Invalid beta parameter at index 1: 1.5)",
        ),
        (
            ("optimizer=sgd", "optimizer.momentum=0"),
            "optimizer: SGD refuses these settings (Nesterov momentum requires a momentum",
        ),
        (
            ("scheduler=onecycle", "scheduler.factory.pct_start=2"),
            "scheduler.factory: OneCycleLR refuses these settings (Expected float between 0 and 1 pct_start",
        ),
    ],
)
def test_values_torch_refuses_when_building_the_optimizer_are_one_line(
    tmp_path: Path, overrides: tuple[str, ...], message: str
) -> None:
    from hydra.utils import instantiate

    def trial(cfg):
        factory = cfg.scheduler.factory
        builders.try_optimizer_and_scheduler(instantiate(cfg.optimizer), factory and instantiate(factory))

    with pytest.raises(UserError, match=re.escape(message)):
        trial(_train_config(tmp_path, *overrides))
    # The defaults, and OneCycle, whose step count is open until training starts, pass.
    trial(_train_config(tmp_path, "scheduler=onecycle"))
    trial(_train_config(tmp_path, "optimizer=sgd"))


# Lightning finds a monitored metric missing only after the first validation, with a RuntimeError,
# and a checkpoint's only after a whole epoch, leaving an unfinished run behind.
def test_a_callback_monitoring_a_metric_never_logged_is_one_error_line_before_training(
    tmp_path: Path,
) -> None:
    result = run_script(
        "train.py",
        "callbacks=early_stopping",
        "callbacks.early_stopping.monitor=val/nope",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "logger=none",
        f"hydra.run.dir={tmp_path}",
        check=False,
    )
    known = "val/loss, val/acc, val/acc_top5, train/loss, train/acc"
    _assert_one_clear_line(result, f"callbacks.early_stopping.monitor must be one of {known}, got 'val/nope'")
    assert not (tmp_path / "checkpoints").exists()
    cfg = _train_config(tmp_path, "callbacks.model_checkpoint.monitor=val/accuracy")
    with pytest.raises(UserError, match="callbacks.model_checkpoint.monitor must be one of val/loss"):
        validate_config(cfg)
    validate_config(_train_config(tmp_path, "callbacks.model_checkpoint.monitor=val/acc"))


# Hydra met these folders with a traceback while creating them, and our own first write with another.
@pytest.mark.parametrize("where", ["file", "below_a_file", "output_dir_below_a_file"])
def test_a_run_folder_that_cannot_be_created_is_one_line(tmp_path: Path, where: str) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("kept")
    key, folder = {
        "file": ("hydra.run.dir", a_file),
        "below_a_file": ("hydra.run.dir", a_file / "run"),
        "output_dir_below_a_file": ("paths.output_dir", a_file / "run"),
    }[where]
    with pytest.raises(UserError, match=f"{re.escape(f'{key}={folder}')}: .*choose another {key}"):
        check_overrides([f"{key}={folder}"])
    if where == "file":
        with pytest.raises(UserError, match=re.escape(f"{key}={folder}: that is a file, not a folder")):
            check_overrides([f"{key}={folder}"])
    assert a_file.read_text() == "kept" and sorted(tmp_path.iterdir()) == [a_file]
    # A new folder below one that exists is fine, and the check creates nothing.
    check_overrides([f"hydra.run.dir={tmp_path / 'new' / 'run'}"])
    assert sorted(tmp_path.iterdir()) == [a_file]


def test_a_run_folder_that_cannot_be_created_stops_the_command_line(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("kept")
    result = run_script("train.py", f"hydra.run.dir={a_file / 'run'}", check=False)
    _assert_one_clear_line(
        result, f"hydra.run.dir={a_file / 'run'}: cannot create it, as {a_file} takes no new folders"
    )


def test_a_key_missing_from_a_section_lists_that_sections_keys() -> None:
    with pytest.raises(ConfigCompositionException) as raised:
        compose_config("data.num_workers=2")  # the digits live in memory: no loader workers
    described = describe_override_error(raised.value)
    assert described.startswith("data has no key 'num_workers'; its keys: batch_size, eval_batch_size,")
    assert "trainer" not in described


def test_no_images_for_the_normalisation_statistics_is_refused(tmp_path: Path) -> None:
    # The per-channel std of no images is NaN: every loss was NaN from the first step.
    cfg = _train_config(tmp_path, "data=imagefolder", "data.stats_samples=0")
    with pytest.raises(UserError, match=re.escape("data.stats_samples must be an integer >= 1, got 0")):
        validate_config(cfg)


def _error_lines(action, capsys: pytest.CaptureFixture) -> list[str]:
    """What an entry point's user_errors() prints for `action`, which must end it with exit 2."""
    with pytest.raises(SystemExit) as exited, user_errors():
        action()
    assert exited.value.code == 2
    return capsys.readouterr().err.splitlines()


# Hydra's instantiate wraps whatever the target raises in an InstantiationException: a data module
# refusing its arguments ended in two chained tracebacks.
def test_a_user_error_raised_inside_instantiate_is_one_line(capsys: pytest.CaptureFixture) -> None:
    from hydra.utils import instantiate

    bad = OmegaConf.create({"_target_": "zoo.data.DigitsDataModule", "augment": "nope"})
    known = "none, digits, standard, alexnet, randaugment"
    assert _error_lines(lambda: instantiate(bad), capsys) == [
        f"error: data.augment: unknown augmentation 'nope'; known: {known}"
    ]
    # Anything else Hydra wraps keeps its traceback.
    with pytest.raises(Exception, match="Error locating target"), user_errors():
        instantiate(OmegaConf.create({"_target_": "zoo.data.NoSuchModule"}))


def test_a_folder_given_as_checkpoint_names_the_checkpoints_inside(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("best.ckpt", "last.ckpt"):
        (run / "checkpoints" / name).write_bytes(b"")
    listed = f"{run}/checkpoints/best.ckpt, {run}/checkpoints/last.ckpt"
    with pytest.raises(
        UserError, match=re.escape(f"{run} is a folder; pass ckpt_path=PATH") + ".*" + re.escape(listed)
    ):
        load_weights_file(run)
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        UserError,
        match=re.escape(
            "empty is a folder; pass ckpt_path=PATH to a checkpoint file (it holds no .ckpt file)"
        ),
    ):
        load_weights_file(tmp_path / "empty")


# A ${...} that names no key ended in OmegaConf's InterpolationKeyError traceback.
def test_an_interpolation_that_does_not_resolve_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = _train_config(tmp_path, "optimizer.lr=${oops}")
    reason = "Interpolation key 'oops' not found"
    assert _error_lines(lambda: validate_config(cfg), capsys) == [
        f"error: cannot resolve optimizer.lr: {reason}; fix the ${{...}} it holds or names"
    ]


# Hydra resolves the run or sweep folder itself, outside the job: an OmegaConf traceback.
@pytest.mark.parametrize(("key", "sweep"), [("hydra.run.dir", ()), ("hydra.sweep.dir", ("-m", "seed=1,2"))])
def test_a_run_folder_interpolation_that_does_not_resolve_is_one_line(
    tmp_path: Path, key: str, sweep: tuple[str, ...]
) -> None:
    result = run_script("train.py", *sweep, f"{key}={tmp_path}/${{oops}}", check=False, cwd=tmp_path)
    assert result.returncode == 2
    assert (result.stdout + result.stderr).strip().splitlines() == [
        f"error: cannot resolve {key}: Interpolation key 'oops' not found; fix the ${{...}} it holds or names"
    ]
    assert list(tmp_path.iterdir()) == []


# The checkpoint's data: LeNet-5 on 1-channel 32 px digits.
TRAINED_ON = {"class_names": list("0123456789"), "channels": 1, "image_size": 32, "mean": [0.3], "std": [0.3]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"class_names": ("cat", "dog")},
            "the data has classes ['cat', 'dog'] but the checkpoint was trained on",
        ),
        # Was a traceback from conv2d: "expected input[20, 3, 32, 32] to have 1 channels".
        ({"channels": 3, "mean": (0.5,) * 3, "std": (0.2,) * 3}, "the data has 3-channel images but the "),
    ],
)
def test_evaluating_on_data_the_checkpoint_cannot_read_is_refused(change: dict, message: str) -> None:
    from zoo.training.evaluation import check_data_fits

    spec = DataSpec(**{**TRAINED_ON, "class_names": tuple(TRAINED_ON["class_names"]), **change})
    with pytest.raises(UserError, match=re.escape(message)):
        check_data_fits(spec, TRAINED_ON)


def test_evaluating_at_another_image_size_runs_with_a_note() -> None:
    from zoo.training.evaluation import check_data_fits

    same = DataSpec(tuple(TRAINED_ON["class_names"]), 1, 32, (0.3,), (0.3,))
    assert check_data_fits(same, TRAINED_ON) is None
    smaller = DataSpec(tuple(TRAINED_ON["class_names"]), 1, 16, (0.3,), (0.3,))
    assert check_data_fits(smaller, TRAINED_ON) == (
        "note: evaluating at 16 px a network trained at 32 px (data.image_size=32 matches training)"
    )


# Both ended in a traceback from the first training step's convolution or pooling.
@pytest.mark.parametrize(
    ("model", "image_size", "message"),
    [
        (
            {"name": "lenet5", "in_chans": 1},
            8,
            "lenet5 cannot take 8 px images, its layers shrink them to nothing (",
        ),
        (
            {"name": "alexnet", "small_input": False},
            32,
            "it needs at least 63 px: set data.image_size=63 or more (or",
        ),
    ],
)
def test_images_a_network_shrinks_to_nothing_are_refused_naming_the_smallest_size(
    model: dict, image_size: int, message: str
) -> None:
    model = {"num_classes": 10, "in_chans": 3, "small_input": True, **model}
    with pytest.raises(UserError, match=re.escape(message)) as raised:
        builders.check_image_size(model, image_size)
    smallest = int(re.search(r"at least (\d+) px", str(raised.value)).group(1))
    builders.check_image_size(model, smallest)  # the size it names does run
    with pytest.raises(UserError):
        builders.check_image_size(model, smallest - 1)


def test_evaluate_at_a_size_the_network_cannot_take_is_one_line(trained_run: Path, tmp_path: Path) -> None:
    result = run_script(
        "evaluate.py",
        f"ckpt_path={trained_run / 'checkpoints' / 'best.ckpt'}",
        "data=digits",
        "data.image_size=8",
        f"hydra.run.dir={tmp_path}",
        check=False,
    )
    _assert_one_clear_line(result, "lenet5 cannot take 8 px images", "data.image_size=16")


# `~group` deleted a section the entry point reads: OmegaConf's "Key 'data' is not in struct".
@pytest.mark.parametrize(
    ("token", "config_name", "message"),
    [
        (
            "~data",
            "train",
            "~data: train.py needs its data section; choose another with data=NAME (known: cifar10",
        ),
        (
            "~scheduler",
            "finetune",
            "~scheduler: finetune.py needs its scheduler section; scheduler=none turns it off",
        ),
    ],
)
def test_removing_a_section_the_entry_point_needs_is_refused(
    token: str, config_name: str, message: str
) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        check_overrides([token], config_name=config_name)
    # Sections read only when present, or off by default, may go; so may single keys.
    check_overrides(["~logger", "~experiment", "~callbacks.rng_state"], config_name=config_name)
    check_overrides(["~data"], config_name="evaluate")


# Each ended in a TypeError from the first call (the model's builder, Adam, the scheduler) or in
# Hydra's InstantiationException (the data module, a callback, a target that does not exist).
@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+model.width=2",
            "model.width: lenet5 takes no such argument (it takes num_classes, in_chans, small_input",
        ),
        (
            "+optimizer.momentum=0.9",
            "optimizer.momentum: Adam takes no such argument (it takes lr, betas, eps,",
        ),
        ("+scheduler.factory.gamma=0.5", "scheduler.factory.gamma: CosineAnnealingLR takes no such argument"),
        (
            "+data.shuffle=true",
            "data: DigitsDataModule.__init__() got an unexpected keyword argument 'shuffle'",
        ),
        # Values of another type than the builder's or class's annotation: a string was taken as
        # true, or met a comparison deep inside.
        ("model.small_input=abc", "model.small_input must be true or false, got 'abc'"),
        ("+optimizer.amsgrad=1", "optimizer.amsgrad must be true or false, got 1"),
        # The first convolution met the digits' one channel at the first step.
        ("model.in_chans=3", "model.in_chans=3 but the data's images have 1 channel(s)"),
    ],
)
def test_an_argument_the_target_does_not_take_is_one_line(
    tmp_path: Path, override: str, message: str
) -> None:
    cfg = _train_config(tmp_path, override)
    with pytest.raises(UserError, match=re.escape(message)):
        datamodule = builders.build_datamodule(cfg)
        builders.build_module(cfg, datamodule.spec)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("callbacks.lr_monitor.logging_interval=hourly", "callbacks.lr_monitor: logging_interval should be"),
        ("+callbacks.mine._target_=nope.Nope", "callbacks.mine: Error loading 'nope.Nope'"),
    ],
)
def test_a_callback_that_refuses_its_settings_is_one_line(
    tmp_path: Path, override: str, message: str
) -> None:
    with pytest.raises(UserError, match=re.escape(message)) as raised:
        builders.build_callbacks(_train_config(tmp_path, override))
    assert "\n" not in str(raised.value)


# TensorBoardLogger hands its extra keys to SummaryWriter at the first logged value: a key it does
# not take was a traceback after the run had started, a bad flush_secs one from the writer's thread.
def test_a_logger_that_refuses_its_settings_stops_before_the_run(tmp_path: Path) -> None:
    cfg = compose_config(f"paths.output_dir={tmp_path}", "+logger.tensorboard.foo=1")
    message = "logger.tensorboard: SummaryWriter.__init__() got an unexpected keyword argument 'foo'"
    with pytest.raises(UserError, match=re.escape(message)):
        builders.build_loggers(cfg)
    # A resumed run's writer is not opened before its checkpoint is checked; its settings are.
    with pytest.raises(UserError, match=re.escape(message)):
        builders.build_loggers(cfg, resumed_step=10)
    assert not list(tmp_path.glob("**/events.out.tfevents.*"))
    cfg = compose_config(f"paths.output_dir={tmp_path}", "+logger.tensorboard.flush_secs=soon")
    with pytest.raises(UserError, match="logger.tensorboard.flush_secs must be a number of seconds > 0"):
        validate_config(cfg)
    # Good settings: the writer is open, its event file there, before the trainer exists.
    builders.build_loggers(compose_config(f"paths.output_dir={tmp_path / 'good'}"))
    assert list((tmp_path / "good" / "tensorboard").glob("events.out.tfevents.*"))


def test_paths_output_dir_names_the_whole_run_folder(tmp_path: Path) -> None:
    # Given alone, it took the checkpoints, while train.log and .hydra/ went to runs/train/<time>/.
    run = tmp_path / "run"
    short = ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false", "logger=none")
    result = run_script("train.py", "paths.output_dir=run", *short, cwd=tmp_path)
    assert {"train.log", ".hydra", "checkpoints", "config.yaml"} <= {path.name for path in run.iterdir()}
    # Named absolute, as Hydra's own run folders are: "run directory: run" held only from tmp_path.
    assert f"run directory: {run}  no test run" in result.stdout + result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]
    # From Python, with no logger to make the folder first, the config's write ended in a traceback.
    cfg = compose_config("logger=none", f"paths.output_dir={tmp_path / 'new' / 'run'}")
    save_resolved_config(cfg, Path(cfg.paths.output_dir))
    assert f"output_dir: {tmp_path / 'new' / 'run'}" in (tmp_path / "new" / "run" / "config.yaml").read_text()
    with pytest.raises(UserError, match=re.escape("hydra.run.dir=a and paths.output_dir=b name two folders")):
        run_dir_of_output_dir(["hydra.run.dir=a", "paths.output_dir=b"])
    with pytest.raises(
        UserError, match=re.escape("name the sweep's folder instead, hydra.sweep.dir=s (each")
    ):
        check_sweep_points(["-m", "paths.output_dir=s", "optimizer.lr=0.1,0.2"], "train")


# Both went through: evaluate.py replaced a training run's metrics.json (paths.output_dir), and a
# second sweep into one folder rewrote each earlier run's .hydra record before its job was refused.
def test_run_folders_given_any_way_are_never_reused(tmp_path: Path) -> None:
    finished = tmp_path / "trained"
    finished.mkdir()
    (finished / "metrics.json").write_text("{}")
    with pytest.raises(UserError) as raised:
        check_overrides([f"paths.output_dir={finished}"], config_name="evaluate")
    assert str(raised.value) == (
        f"run directory {finished} already holds a finished run (metrics.json); "
        "choose another paths.output_dir"
    )  # and no advice to resume, which evaluate.py does not do
    sweep = tmp_path / "sweep"
    (sweep / "1" / "checkpoints").mkdir(parents=True)
    (sweep / "1" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(
        UserError, match=re.escape(f"hydra.sweep.dir={sweep} already holds the runs of another")
    ):
        check_overrides(["-m", "optimizer.lr=0.1,0.2", f"hydra.sweep.dir={sweep}"], "ckpt_path")
    check_overrides(["-m", "optimizer.lr=0.1,0.2", f"hydra.sweep.dir={tmp_path / 'fresh'}"], "ckpt_path")
    # A finished run is a run even once its checkpoints are deleted to save space.
    finished_sweep = tmp_path / "finished-sweep"
    (finished_sweep / "0").mkdir(parents=True)
    (finished_sweep / "0" / "metrics.json").write_text("{}")
    with pytest.raises(
        UserError, match=re.escape(f"hydra.sweep.dir={finished_sweep} already holds the runs")
    ):
        check_overrides(["-m", "optimizer.lr=0.1,0.2", f"hydra.sweep.dir={finished_sweep}"], "ckpt_path")


# A sweep into a finished run's own folder put its points and multirun.yaml among that run's files.
@pytest.mark.parametrize(
    ("left", "state"),
    [
        ("metrics.json", "a finished run (metrics.json)"),
        ("checkpoints/last.ckpt", "an unfinished run's checkpoints"),
    ],
)
def test_a_sweep_into_a_runs_own_folder_is_refused(tmp_path: Path, left: str, state: str) -> None:
    run = tmp_path / "run"
    (run / left).parent.mkdir(parents=True, exist_ok=True)
    (run / left).write_bytes(b"{}")
    with pytest.raises(UserError) as raised:
        check_overrides(["-m", "optimizer.lr=0.1,0.2", f"hydra.sweep.dir={run}"], "ckpt_path")
    assert str(raised.value) == f"hydra.sweep.dir={run} already holds {state}; choose another hydra.sweep.dir"


def test_a_sweep_folder_named_through_an_interpolation_is_never_reused(tmp_path: Path) -> None:
    # hydra.sweep.dir=.../${task_name} names an earlier sweep's folder only once resolved: it must be
    # refused as the folder named outright is, before any point's .hydra record is rewritten.
    old = tmp_path / "done"
    (old / "0" / "checkpoints").mkdir(parents=True)
    (old / "0" / "checkpoints" / "last.ckpt").write_bytes(b"")
    (old / "0" / ".hydra").mkdir()
    (old / "0" / ".hydra" / "overrides.yaml").write_text("- optimizer.lr=0.1\n")
    result = run_script(
        "train.py",
        "-m",
        "optimizer.lr=0.1,0.2",
        "trainer.max_epochs=1",
        "logger=none",
        "task_name=done",
        f"hydra.sweep.dir={tmp_path}/${{task_name}}",
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"hydra.sweep.dir={old} already holds the runs of another sweep" in result.stderr
    assert (old / "0" / ".hydra" / "overrides.yaml").read_text() == "- optimizer.lr=0.1\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["done"]


@pytest.mark.parametrize("script", ["train.py", "evaluate.py"])
def test_a_run_folder_named_through_an_interpolation_is_refused_before_hydra_writes_there(
    tmp_path: Path, script: str
) -> None:
    # Known only once Hydra had composed the config: evaluate.py replaced the run's metrics.json and
    # exited 0, and a refused train.py had already rewritten the run's .hydra record.
    finished = tmp_path / "done"
    (finished / ".hydra").mkdir(parents=True)
    (finished / "metrics.json").write_text('{"test/acc": 0.5}')
    (finished / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (tmp_path / "unused.ckpt").write_bytes(b"")
    extra = [f"ckpt_path={tmp_path / 'unused.ckpt'}"] if script == "evaluate.py" else ["seed=7"]
    result = run_script(
        script, *extra, "task_name=done", f"hydra.run.dir={tmp_path}/${{task_name}}", check=False
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"error: run directory {finished} already holds a finished run (metrics.json); choose another "
        f"hydra.run.dir{', or resume an unfinished one' if script == 'train.py' else ''}"
    ]
    assert (finished / "metrics.json").read_text() == '{"test/acc": 0.5}'
    assert (finished / ".hydra" / "overrides.yaml").read_text() == "- seed=1\n"
    assert sorted(p.name for p in finished.rglob("*")) == [".hydra", "metrics.json", "overrides.yaml"]


@pytest.mark.parametrize(
    ("config_name", "key"), [("train", "ckpt_path"), ("finetune", "ckpt_path"), ("evaluate", "ckpt_path")]
)
def test_a_checkpoint_path_that_names_no_file_is_refused_before_hydra_starts(
    tmp_path: Path, config_name: str, key: str
) -> None:
    # Refused once the run had started: after Lightning's first lines, in a new run folder.
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(
        UserError, match=re.escape(f"checkpoint {missing} does not exist; pass ckpt_path=PATH")
    ):
        check_overrides([f"{key}={missing}"], config_name=config_name)
    with pytest.raises(UserError, match=re.escape(f"checkpoint {tmp_path} is a folder")):
        check_overrides([f"{key}={tmp_path}"], config_name=config_name)
    (tmp_path / "a.ckpt").write_bytes(b"")
    check_overrides([f"{key}={tmp_path / 'a.ckpt'}"], config_name=config_name)  # read, and judged, later
    # A -m sweep over checkpoints names each file only once Hydra has expanded it.
    (tmp_path / "b.ckpt").write_bytes(b"")
    check_overrides(["-m", f"{key}={tmp_path / 'a.ckpt'},{tmp_path / 'b.ckpt'}"], config_name=config_name)
    # A missing state dict (torchvision's .pth, a fine-tune's source) is named as one.
    missing = tmp_path / "resnet18.pth"
    with pytest.raises(
        UserError,
        match=re.escape(
            f"checkpoint {missing} does not exist; pass ckpt_path=PATH to an existing state dict file"
        ),
    ):
        check_overrides([f"{key}={missing}"], config_name=config_name)


def test_only_a_matching_pair_of_quotes_around_a_path_is_taken_off(tmp_path: Path) -> None:
    # Every quote at either end was taken off: the folder bob' (quoted for Hydra, "DIR/bob'") was
    # checked as DIR/bob, and refused for the finished run there; a checkpoint best.ckpt' as best.ckpt.
    finished = tmp_path / "bob"
    finished.mkdir()
    (finished / "metrics.json").write_text("{}")
    check_overrides([f'hydra.run.dir="{finished}\'"'])
    with pytest.raises(UserError, match=re.escape(f"run directory {finished} already holds a finished run")):
        check_overrides([f"hydra.run.dir='{finished}'"])
    named = tmp_path / "best.ckpt'"
    named.write_bytes(b"")
    check_overrides([f'ckpt_path="{named}"'], config_name="finetune")


def test_sweep_points_are_checked_beside_fixed_settings_and_may_each_name_a_folder() -> None:
    # A setting every point shares is no reason to leave the swept one unchecked.
    with pytest.raises(
        UserError, match=re.escape("sweep point #1 (optimizer.lr=abc) of 2: optimizer.lr must be a number")
    ):
        check_sweep_points(["-m", "trainer.max_epochs=1", "optimizer.lr=0.01,abc"], "train")
    # Only a fixed subfolder puts every point in one: Hydra's own ${hydra.job.num} names one per point.
    check_sweep_points(["-m", "optimizer.lr=0.1,0.2", "hydra.sweep.subdir=${hydra.job.num}_lr"], "train")


def test_sweep_functions_and_spaced_lists_of_group_options_pass_to_hydra() -> None:
    # Each was refused as an unknown model ('choice(lenet5', ' alexnet').
    for sweep in ("model=choice(lenet5,alexnet)", "model=glob(lenet*)", "model=lenet5, alexnet"):
        check_overrides(["-m", sweep])
    with pytest.raises(UserError, match="unknown model 'nope'"):
        check_overrides(["-m", "model=lenet5, nope"])


def test_a_sweep_hydra_expands_only_as_it_runs_is_left_to_hydra_by_the_checks_before_it() -> None:
    # glob() of a group's options has no points until Hydra runs the sweep: they cannot be checked.
    assert sweep_points(["-m", "model=glob(lenet*)"]) is None
    check_sweep_points(["-m", "model=glob(lenet*)", "optimizer.lr=0.1,0.2"], "train")


def test_a_list_of_group_options_taken_together_is_checked_name_by_name() -> None:
    # logger=[tensorboard,csv] (both loggers at once, as Hydra composes it) was an "unknown logger
    # '[tensorboard'".
    check_overrides(["logger=[tensorboard,csv]"])
    with pytest.raises(UserError, match="unknown logger 'cvs'"):
        check_overrides(["logger=[tensorboard,cvs]"])


@pytest.mark.parametrize("override", ["~finetune", "finetune=null", "finetune="])
def test_finetune_section_cannot_be_removed(override: str) -> None:
    # ~finetune and finetune=null ended in "cannot resolve None: ... node 'finetune' is not a container";
    # finetune= (empty) asks the same.
    with pytest.raises(UserError, match=re.escape(f"{override}: finetune.py needs its finetune section")):
        check_overrides([override], "resume_ckpt", "finetune")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("data=imagefolder", "data.skip_bad_images=no"),
            "data.skip_bad_images must be true or false, got 'no'",
        ),
        (("data=cifar10", "data.download=maybe"), "data.download must be true or false, got 'maybe'"),
        (("data=synthetic", "data.num_samples=100.7"), "data.num_samples must be an integer >= 1, got 100.7"),
        (("data=synthetic", "data.num_classes=2.5"), "data.num_classes must be an integer >= 2, got 2.5"),
        (("data=synthetic", "data.data_seed=abc"), "data.data_seed must be an integer from 0 to 4294967295"),
    ],
)
def test_data_module_settings_of_the_wrong_type_are_refused(
    tmp_path: Path, overrides: tuple[str, ...], message: str
) -> None:
    # "no" was taken as true; the synthetic set's counts and seed ended in tracebacks.
    with pytest.raises(UserError, match=re.escape(message)):
        validate_config(_train_config(tmp_path, *overrides))


# A full disk or a folder this user cannot write used to end the run in Lightning's traceback at its
# first checkpoint save; the checkpoint written before the refusal must still be whole.
@pytest.mark.parametrize(
    ("code", "reason", "fix"),
    [
        (errno.ENOSPC, "No space left on device", "free some space, or use another folder"),
        (errno.EACCES, "Permission denied", "give this user access to it, or use another folder"),
        (
            errno.EFBIG,
            "File too large",
            "raise the file size limit (ulimit -f), or use a folder on another file system",
        ),
    ],
)
def test_a_refused_checkpoint_write_is_one_line_and_keeps_the_last_good_checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    code: int,
    reason: str,
    fix: str,
) -> None:
    from zoo.training import checkpoint_io

    cfg = _train_config(
        tmp_path,
        "data=synthetic",
        "data.num_samples=64",
        "data.image_size=16",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
    )
    _, datamodule, trainer = start_run(cfg)
    module = builders.build_module(cfg, datamodule.spec)
    saved: list[Path] = []

    def open_until_the_disk_refuses(path, mode="r", *args, **kwargs):
        if "w" in mode and saved:  # the first save (epoch 1's last.ckpt or best.ckpt) goes through
            raise OSError(code, reason, str(path))
        if "w" in mode:
            saved.append(Path(path))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoint_io, "open", open_until_the_disk_refuses, raising=False)
    lines = _error_lines(
        lambda: fit_test_and_record(cfg, trainer, module, datamodule, tmp_path, resume_from=None), capsys
    )
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {reason}: {tmp_path / 'checkpoints'}/.")
    assert f"; {fix} (hydra.run.dir=DIR for the run" in lines[0]
    kept = list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert len(kept) == 1
    assert torch.load(kept[0], weights_only=True)["epoch"] == 0
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary file left behind


def test_a_user_error_in_a_dataloader_worker_is_one_line(capsys: pytest.CaptureFixture) -> None:
    # An image damaged past what the setup check sees fails in a worker, and torch re-raised it in
    # the main process with the worker's traceback in the message: twenty lines for one.
    from torch._utils import ExceptionWrapper

    try:
        raise UserError("cannot read image x.gif: truncated; fix or remove it")
    except UserError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    assert _error_lines(wrapped.reraise, capsys) == [
        "error: cannot read image x.gif: truncated; fix or remove it"
    ]


def test_the_packages_own_warnings_print_as_one_line() -> None:
    # skip_bad_images' warning printed the file and line that raised it, and that line's source.
    import warnings

    from zoo.training import cli

    library_format = warnings.formatwarning
    formatted = cli._own_warnings_in_one_line(library_format)
    ours = str(Path(cli.__file__).parents[1] / "data" / "imagefolder.py")
    assert formatted("skipping 1 unreadable image(s): x.png", UserWarning, ours, 246) == (
        "warning: skipping 1 unreadable image(s): x.png\n"
    )
    theirs = str(Path(torch.__file__))
    assert formatted("deprecated", FutureWarning, theirs, 3) == library_format(
        "deprecated", FutureWarning, theirs, 3
    )


def test_ctrl_c_ends_a_run_with_one_word_and_the_shells_status(capsys, monkeypatch) -> None:
    # 130, as a shell reports a command stopped by SIGINT: a script or scheduler can tell it from a failure.
    import signal

    from zoo.training import cli

    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # run_hydra_main sets it; given back afterwards
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # this process's handler is left as it is

    def stopped() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as raised:
        cli.run_hydra_main(stopped)
    assert raised.value.code == 128 + signal.SIGINT
    assert capsys.readouterr().err == "interrupted\n"


def test_ctrl_c_while_the_job_imports_ends_the_process_there() -> None:
    # A library could catch the KeyboardInterrupt halfway through an import; the half-imported module
    # then failed with an unrelated traceback. Ctrl-C after the imports is a KeyboardInterrupt again.
    code = (
        "import os, signal, sys, time\n"
        "from zoo.training.cli import ctrl_c_ends_the_imports\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "with ctrl_c_ends_the_imports():\n"
        "    pass\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "with ctrl_c_ends_the_imports():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(30)\n"
        "    except BaseException:  # what a library catching everything would do\n"
        "        pass\n"
        "    print('went on')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert result.stderr == "interrupted\n" and "went on" not in result.stdout


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        (
            ("optimizer.lr=0.01,abc",),
            "sweep point #1 (optimizer.lr=abc) of 2: optimizer.lr must be a number > 0, got 'abc'",
        ),
        (("optimizer.lr=choice(0.1,0.2)", "optimizer.lrr=1"), "optimizer has no key 'lrr'; did you mean"),
        # Both points trained into one folder (the second was then refused as a finished run's).
        (
            ("optimizer.lr=0.1,0.2", "hydra.sweep.subdir=fixed"),
            "hydra.sweep.subdir=fixed puts all 2 points of the sweep in one folder",
        ),
        # Hydra's basic sweeper raised a traceback for it once the sweep had started.
        (
            ("optimizer.lr=interval(0.001,0.01)",),
            "optimizer.lr=interval(0.001,0.01): Hydra's basic sweeper takes lists, range() and choice()",
        ),
    ],
    ids=["bad-value", "typo", "one-subdir", "interval"],
)
def test_every_point_of_a_sweep_is_checked_before_the_first_trains(
    tmp_path: Path, sweep: tuple[str, ...], message: str
) -> None:
    # The first point trained to the end before the second was found to be wrong.
    result = run_script("train.py", "-m", *sweep, f"hydra.sweep.dir={tmp_path / 'sweep'}", check=False)
    _assert_one_clear_line(result, message)
    assert not (tmp_path / "sweep").exists()
