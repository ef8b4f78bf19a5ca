"""The speed options run and predict what the default path predicts, within stated tolerances.

channels_last=true            same weights, eval logits equal to 1e-5 of their scale on a CPU; on a
                              GPU cuDNN picks other algorithms per layout: 1e-4 there, TF32 off
compile=true                  same weights, eval logits equal to 1e-4 of their scale (LeNet-5 only:
                              compiling larger networks takes minutes on a CPU)
trainer.precision=bf16-mixed  bfloat16 keeps 8 bits of mantissa (0.3% measured on the logits);
                              on a trained LeNet-5, >= 97% of test predictions agree and no logit
                              moves by more than 5% of the logits' scale
trainer.benchmark=true        cuDNN's algorithm search; the GPU trainer config turns it on
trainer.precision=*-true      weights in bfloat16 or float16: a few steps train with a finite loss
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from zoo.data import DataSpec, DigitsDataModule, InMemoryBatches
from zoo.training import builders
from zoo.training.errors import UserError
from zoo.training.fused import adopt_this_runs_implementation
from zoo.training.module import OPTIMIZER_KIND_KEY, ImageClassifier, refuse_another_optimization
from zoo.training.validation import validate_config

from .conftest import compose_config

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SPEC = DataSpec(
    class_names=tuple(str(i) for i in range(10)), channels=3, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3
)


def _classifier(name: str, spec: DataSpec = SPEC, **options) -> ImageClassifier:
    torch.manual_seed(0)
    model = {"name": name, "num_classes": spec.num_classes, "in_chans": spec.channels, "small_input": True}
    return ImageClassifier(model=model, data=spec.to_dict(), **options)


def _twin(reference: ImageClassifier, name: str, spec: DataSpec = SPEC, **options) -> ImageClassifier:
    """The same network with an option switched on, holding the reference's weights."""
    twin = _classifier(name, spec, **options)
    twin.load_state_dict(reference.state_dict(), strict=True)
    return twin


def _images(count: int, spec: DataSpec = SPEC, seed: int = 1) -> torch.Tensor:
    shape = (count, spec.channels, spec.image_size, spec.image_size)
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _cpu_trainer(steps: int, **trainer_options) -> pl.Trainer:
    """Lightning's Trainer on the CPU for `steps` optimiser steps, writing and printing nothing."""
    return pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_options,
    )


def _assert_trains(module: ImageClassifier, steps: int, batch: int, **trainer_options) -> None:
    """A few optimiser steps through Lightning's Trainer on the CPU; every one runs, the loss stays finite."""
    trainer = _cpu_trainer(steps, **trainer_options)
    count = steps * batch
    batches = InMemoryBatches(_images(count), torch.arange(count) % 10, batch, shuffle=True)
    trainer.fit(module, train_dataloaders=batches)
    assert trainer.global_step == steps
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def _assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, tolerance: float) -> None:
    scale = expected.abs().max().item()
    difference = (actual.float() - expected.float()).abs().max().item()
    assert difference <= tolerance * scale, (
        f"max difference {difference:.3g} > {tolerance} x scale {scale:.3g}"
    )


def test_config_options_reach_the_module(tmp_path: Path) -> None:
    cfg = compose_config(
        f"paths.output_dir={tmp_path}",
        "logger=none",
        "channels_last=true",
        "compile=true",
        "trainer.precision=bf16-mixed",
    )
    module = builders.build_module(cfg, SPEC)
    assert module.memory_format == torch.channels_last and module.hparams.compile
    # Compiled in place: parameter names, and so checkpoints, are those of the plain network.
    assert set(module.state_dict()) == set(_classifier("lenet5").state_dict())
    assert cfg.trainer.precision == "bf16-mixed"
    # The precision reaches the Trainer the entry points build, not only the config.
    assert builders.build_trainer(cfg).precision == "bf16-mixed"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_channels_last_predicts_as_the_default(name: str, device: str) -> None:
    default = _classifier(name).to(device).eval()
    fast = _twin(default, name, channels_last=True).to(device).eval()
    convolution = next(m for m in fast.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert convolution.weight.is_contiguous(memory_format=torch.channels_last)
    images = _images(8).to(device)
    assert fast.normalize(images).is_contiguous(memory_format=torch.channels_last)
    # TF32 (on by default for cuDNN convolutions) rounds to 10 bits and would hide the comparison.
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        _assert_close_to_scale(fast(images), default(images), 1e-5 if device == "cpu" else 1e-4)


def test_channels_last_trains_through_the_trainer() -> None:
    module = _classifier(
        "resnet18", optimizer=lambda params: torch.optim.SGD(params, lr=0.01), channels_last=True
    )
    _assert_trains(module, steps=2, batch=8)


@pytest.mark.skipif(
    not any(shutil.which(compiler) for compiler in ("g++", "c++", "clang++")),
    reason="torch.compile on a CPU (inductor) builds its kernels with a C++ compiler; none is installed",
)
def test_compile_predicts_as_the_default() -> None:
    import torch._inductor.config

    spec = DataSpec(class_names=tuple("0123456789"), channels=1, image_size=32, mean=(0.5,), std=(0.25,))
    default = _classifier("lenet5", spec).eval()
    compiled = _twin(default, "lenet5", spec, compile=True).eval()
    images = _images(16, spec)
    # One small graph compiles faster in this process than through inductor's pool of worker
    # processes, which starts one Python per core (a minute on a 16-core machine).
    with torch.no_grad(), torch._inductor.config.patch(compile_threads=1):
        _assert_close_to_scale(compiled(images), default(images), 1e-4)


@pytest.mark.parametrize("name", ["googlenet", "resnet18"])
def test_compile_reaches_the_training_forward(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # GoogLeNet trains through forward_train (its auxiliary heads), which bypassed the __call__ that
    # net.compile() compiles: compile=true trained it uncompiled. Dynamo's eager backend traces the
    # graphs inductor would compile, without building kernels.
    import torch._dynamo

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **options: real_compile(model, backend="eager"))
    torch._dynamo.reset()
    module = _classifier(name, compile=True).train()
    torch._dynamo.utils.counters.clear()
    module.training_step((_images(4), torch.arange(4)), 0)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def trained_lenet() -> tuple[ImageClassifier, torch.Tensor, torch.Tensor]:
    """A LeNet-5 trained for a few epochs on the digits, and the test split: random weights give
    near-tied logits, whose argmax flips on rounding noise and says nothing about the option."""
    data = DigitsDataModule(augment="none")
    data.setup()
    module = _classifier("lenet5", data.spec)
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    for epoch in range(4):
        loader = data.train_dataloader()
        loader.set_epoch(epoch)
        for images, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(module(images), labels).backward()
            optimizer.step()
    test_images, test_labels = next(iter(data.test_dataloader()))
    return module.eval(), test_images, test_labels


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_mixed_predicts_as_the_default(trained_lenet, device: str) -> None:
    module, images, labels = trained_lenet
    module, images = module.to(device), images.to(device)
    # The trainer's own precision plugin, so this is the autocast that `trainer.precision=bf16-mixed` runs.
    trainer = pl.Trainer(accelerator=device, precision="bf16-mixed", logger=False, enable_progress_bar=False)
    with torch.no_grad():
        expected = module(images)
        with trainer.precision_plugin.forward_context():
            actual = module(images)
    assert actual.dtype == torch.bfloat16  # autocast was on
    agreement = (actual.argmax(1) == expected.argmax(1)).float().mean().item()
    assert agreement >= 0.97, agreement
    _assert_close_to_scale(actual, expected, 0.05)
    assert (expected.argmax(1).cpu() == labels).float().mean() > 0.8  # the model did learn


def test_bf16_mixed_trains_through_the_trainer() -> None:
    module = _classifier("lenet5", optimizer=lambda params: torch.optim.Adam(params, lr=3e-3))
    _assert_trains(module, steps=3, batch=16, precision="bf16-mixed")


# Lightning casts the weights and buffers to the precision's dtype, not a uint8 batch the module
# turns into float: every step failed with "Input type (float) and bias type (c10::Half)".
@pytest.mark.parametrize("precision", ["bf16-true", "16-true"])
def test_true_half_precisions_train_through_the_trainer(precision: str) -> None:
    module = _classifier("lenet5", optimizer=lambda params: torch.optim.SGD(params, lr=0.01))
    _assert_trains(module, steps=3, batch=16, precision=precision)
    assert (
        next(module.net.parameters()).dtype
        == {"bf16-true": torch.bfloat16, "16-true": torch.float16}[precision]
    )
    assert module.train_sums.dtype == torch.float32  # the epoch's tally, not cast with the weights


# The epoch's training tally summed in float16 passed 65504 on an epoch of CIFAR-10 (an infinite
# "loss" that stopped the run), and in bfloat16 rounded the correct count past 256.
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_the_training_tally_keeps_float32_when_the_module_is_cast(dtype: torch.dtype) -> None:
    module = _classifier("lenet5")
    tally = [2.3 * 45_000, 4_501.0]  # loss x samples and correct predictions of a CIFAR-10 epoch
    module.train_sums.copy_(torch.tensor(tally))
    module.to(dtype)  # what Lightning's 16-true and bf16-true do to the module
    assert next(module.net.parameters()).dtype == dtype and module.mean.dtype == dtype
    assert module.train_sums.dtype == torch.float32
    assert module.train_sums.tolist() == pytest.approx(tally)
    assert not module.nonfinite_loss_seen()
    # Steps on half-precision weights add to it in float32.
    images = _images(8).to(dtype).div_(255)
    module.training_step((images, torch.arange(8)), 0)
    assert module.train_sums.dtype == torch.float32 and module.train_seen == 8


def test_cudnn_benchmark_is_on_in_the_gpu_config_and_reaches_torch(tmp_path: Path) -> None:
    assert compose_config("trainer=gpu").trainer.benchmark is True
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False  # so only the Trainer built below can turn it on
        cfg = compose_config(
            f"paths.output_dir={tmp_path}", "logger=none", "trainer.benchmark=true", "trainer.accelerator=cpu"
        )
        builders.build_trainer(cfg)  # the entry points' path, not the config section on its own
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = before


# optimizer.fused=auto (configs/optimizer): torch's fused step, one kernel for all parameters. It
# rounds differently from the default step. Where a gradient is near zero, Adam divides it by a
# near-zero root and the rounding shows most: weights apart by up to 0.2% of the learning rate after
# three steps (AdamW, measured), eval logits by 3e-7 of their scale.
def _optimizer_factory(*overrides: str):
    optimizer, _ = builders.build_optimization(compose_config("trainer.accelerator=cpu", *overrides))
    return optimizer


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_a_fused_step_moves_the_weights_as_the_default_step(name: str) -> None:
    fused = _optimizer_factory(f"optimizer={name}")
    assert fused.keywords["fused"] is True  # what auto gives a CPU run
    default = _optimizer_factory(f"optimizer={name}", "optimizer.fused=false")
    reference = _classifier("lenet5")
    twin = _twin(reference, "lenet5")
    before = {key: value.clone() for key, value in reference.state_dict().items()}
    batch = (_images(16), torch.arange(16) % 10)
    for module, factory in ((reference, default), (twin, fused)):
        optimizer = factory(params=module.parameters())
        assert optimizer.param_groups[0]["fused"] is (factory is fused)
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            module.training_step(batch, 0).backward()
            optimizer.step()
    moved = [key for key, value in reference.state_dict().items() if not torch.equal(value, before[key])]
    assert moved  # the steps did change the weights
    learning_rate = fused.keywords["lr"]
    for key in moved:
        apart = (twin.state_dict()[key] - reference.state_dict()[key]).abs().max().item()
        assert apart <= 0.01 * learning_rate, (key, apart)
    with torch.no_grad():
        images = _images(8, seed=2)
        _assert_close_to_scale(twin.eval()(images), reference.eval()(images), 1e-5)


def test_a_fused_optimizer_trains_through_the_trainer() -> None:
    module = _classifier("lenet5", optimizer=_optimizer_factory())
    _assert_trains(module, steps=3, batch=16)
    assert module.trainer.optimizers[0].param_groups[0]["fused"] is True


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_fused_is_left_off_where_mixed_precision_clips_gradients(precision: str) -> None:
    # Lightning's mixed precision refuses to clip a fused optimizer's gradients, at the first step.
    clipping = (f"trainer.precision={precision}", "trainer.gradient_clip_val=1.0")
    assert "fused" not in _optimizer_factory(*clipping).keywords
    assert _optimizer_factory(f"trainer.precision={precision}").keywords["fused"] is True
    with pytest.raises(UserError, match=r"optimizer.fused=true cannot go with trainer.gradient_clip_val"):
        _optimizer_factory(*clipping, "optimizer.fused=true")
    module = _classifier("lenet5", optimizer=_optimizer_factory(*clipping))
    _assert_trains(module, steps=2, batch=16, precision=precision, gradient_clip_val=1.0)


def test_an_optimizer_without_a_fused_step_is_built_without_one() -> None:
    optimizer = _optimizer_factory("optimizer._target_=torch.optim.RMSprop")
    assert optimizer.func is torch.optim.RMSprop and "fused" not in optimizer.keywords
    with pytest.raises(UserError, match=r"optimizer.fused: RMSprop takes no such argument"):
        _optimizer_factory("optimizer._target_=torch.optim.RMSprop", "optimizer.fused=true")
    with pytest.raises(UserError, match=r"optimizer.fused must be auto, true or false, got 'yes please'"):
        _optimizer_factory("optimizer.fused='yes please'")


def test_a_resumed_optimizer_steps_with_this_runs_implementation(tmp_path: Path) -> None:
    # Torch's load_state_dict takes the saved groups whole, fused=False included: a run saved unfused
    # and resumed with optimizer.fused=auto stepped unfused.
    def fit(fused: bool, steps: int, ckpt_path: Path | None = None) -> ImageClassifier:
        module = _classifier("lenet5", optimizer=functools.partial(torch.optim.Adam, lr=3e-3, fused=fused))
        trainer = _cpu_trainer(steps)
        batches = InMemoryBatches(_images(64), torch.arange(64) % 10, 16, shuffle=True)
        trainer.fit(module, train_dataloaders=batches, ckpt_path=ckpt_path)
        if ckpt_path is None:
            trainer.save_checkpoint(tmp_path / "unfused.ckpt")
        return module

    fit(fused=False, steps=2)
    saved = torch.load(tmp_path / "unfused.ckpt", weights_only=True)["optimizer_states"][0]
    assert saved["param_groups"][0]["fused"] is False
    resumed = fit(fused=True, steps=4, ckpt_path=tmp_path / "unfused.ckpt")
    assert resumed.trainer.global_step == 4
    assert resumed.trainer.optimizers[0].param_groups[0]["fused"] is True


def test_a_gradient_scaler_steps_an_optimizer_resumed_from_an_unfused_state() -> None:
    # The scaler leaves unscaling to an optimizer built fused; restored with the saved fused=False,
    # its step failed ("Expected grad_scale and found_inf to be None"), as 16-mixed on a GPU would.
    weight = torch.nn.Parameter(torch.randn(10))
    unfused = torch.optim.Adam([weight], lr=1e-3, fused=False)
    weight.grad = torch.randn(10)
    unfused.step()
    checkpoint = {"optimizer_states": [unfused.state_dict()]}
    factory = functools.partial(torch.optim.Adam, lr=1e-3, fused=True)
    adopt_this_runs_implementation(checkpoint, factory)
    resumed = factory(params=[weight])
    resumed.load_state_dict(checkpoint["optimizer_states"][0])
    assert resumed.param_groups[0]["fused"] is True
    scaler = torch.amp.GradScaler("cpu")
    scaler.scale((weight * weight).sum()).backward()
    before = weight.detach().clone()
    scaler.step(resumed)
    assert not torch.equal(weight.detach(), before)


def test_a_resume_is_not_refused_for_another_step_implementation() -> None:
    # fused, foreach and capturable choose how torch computes a step, not the training's settings.
    fused = _optimizer_factory()
    saved = fused(params=[torch.nn.Parameter(torch.zeros(1))]).state_dict()
    for flags in ({"fused": None}, {"fused": False, "foreach": True}):
        saved["param_groups"][0].update(flags)
        checkpoint = {"optimizer_states": [saved], OPTIMIZER_KIND_KEY: "Adam", "lr_schedulers": []}
        refuse_another_optimization("last.ckpt", checkpoint, fused, None, [{}])
    saved["param_groups"][0]["lr"] = 0.5
    with pytest.raises(UserError, match="lr=0.5"):
        refuse_another_optimization("last.ckpt", checkpoint, fused, None, [{}])


def test_auto_leaves_fused_off_for_another_step_implementation() -> None:
    # Torch refuses fused=True beside foreach=true or differentiable=true; auto made it True there, and
    # +optimizer.foreach=true, which trained before fused=auto, failed with a traceback.
    for option in ("+optimizer.foreach=true", "+optimizer.differentiable=true"):
        optimizer = _optimizer_factory(option)
        assert "fused" not in optimizer.keywords, option
    with pytest.raises(UserError, match=r"optimizer: Adam refuses these settings \(`fused` and `foreach`"):
        _optimizer_factory("+optimizer.foreach=true", "optimizer.fused=true")


@pytest.mark.parametrize("value", ["1", "0", "1.0"])
def test_fused_takes_only_true_false_auto_or_null(value: str) -> None:
    # 1 == True: fused=1 passed the check, escaped the refusal of a fused step that mixed precision
    # clips, and failed at the first step with Lightning's traceback.
    clipping = ("trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1.0", f"optimizer.fused={value}")
    with pytest.raises(UserError, match=rf"optimizer.fused must be auto, true or false, got {value}"):
        _optimizer_factory(*clipping)
    # Also before any work, for every point of a -m sweep.
    with pytest.raises(UserError, match=r"optimizer.fused must be auto, true or false"):
        validate_config(compose_config(*clipping))
    for fine in ("auto", "true", "false", "null"):
        validate_config(compose_config(f"optimizer.fused={fine}"))


@pytest.mark.parametrize(
    ("accelerator", "cuda", "mps", "fused"),
    [
        ("cpu", False, True, True),
        ("cuda", True, True, True),
        ("auto", False, False, True),  # the CPU
        ("auto", True, True, True),  # CUDA first
        ("auto", False, True, False),  # Apple's GPU
        ("gpu", True, True, True),
        ("gpu", False, True, False),  # Apple's GPU
        ("mps", False, True, False),
        ("tpu", False, False, False),
    ],
)
def test_auto_is_fused_on_cuda_and_cpu_only(
    accelerator: str, cuda: bool, mps: bool, fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    cfg = compose_config(f"trainer.accelerator={accelerator}")
    optimizer, _ = builders.build_optimization(cfg)
    assert optimizer.keywords.get("fused", False) is fused


def test_a_state_saved_without_implementation_flags_resumes_with_this_runs() -> None:
    # An older torch saved some groups without them (SGD's fused): neither another optimizer to refuse,
    # nor a state to step with torch's default for a flag this run sets.
    fused = _optimizer_factory()
    saved = fused(params=[torch.nn.Parameter(torch.zeros(1))]).state_dict()
    for key in ("fused", "foreach", "capturable"):
        del saved["param_groups"][0][key]
    checkpoint = {"optimizer_states": [saved], OPTIMIZER_KIND_KEY: "Adam", "lr_schedulers": []}
    refuse_another_optimization("last.ckpt", checkpoint, fused, None, [{}])
    adopt_this_runs_implementation(checkpoint, fused)
    resumed = fused(params=[torch.nn.Parameter(torch.zeros(1))])
    resumed.load_state_dict(checkpoint["optimizer_states"][0])
    assert resumed.param_groups[0]["fused"] is True


def test_every_saved_group_and_optimizer_takes_this_runs_flags() -> None:
    # A fine-tune's head and backbone groups; a checkpoint of a module with two optimizers.
    factory = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, fused=True)
    unfused = torch.optim.SGD(
        [{"params": [torch.nn.Parameter(torch.zeros(1))]}, {"params": [torch.nn.Parameter(torch.zeros(1))]}],
        lr=0.2,
        momentum=0.9,
        fused=False,
        foreach=True,
    )
    checkpoint = {"optimizer_states": [unfused.state_dict(), unfused.state_dict()]}
    adopt_this_runs_implementation(checkpoint, factory)
    for state in checkpoint["optimizer_states"]:
        assert [(g["fused"], g["foreach"]) for g in state["param_groups"]] == [(True, None)] * 2
        assert [g["lr"] for g in state["param_groups"]] == [0.2, 0.2]  # its settings are the checkpoint's
    for empty in ({}, {"optimizer_states": []}):
        adopt_this_runs_implementation(empty, factory)  # evaluate.py's and a weights-only file
    adopt_this_runs_implementation(checkpoint, None)  # a module built to evaluate


@pytest.mark.parametrize("precision", ["16", "bf16", "16-mixed", "bf16-mixed"])
def test_auto_reads_every_spelling_of_mixed_precision_and_only_a_clip_above_zero(precision: str) -> None:
    # Lightning takes 16 and bf16 (a number, as Hydra reads 16) for 16-mixed and bf16-mixed, and
    # clips nothing at gradient_clip_val=0.
    mixed = f"trainer.precision={precision}"
    assert "fused" not in _optimizer_factory(mixed, "trainer.gradient_clip_val=0.5").keywords
    assert _optimizer_factory(mixed, "trainer.gradient_clip_val=0").keywords["fused"] is True
    unmixed = _optimizer_factory("trainer.precision=32", "trainer.gradient_clip_val=0.5")
    assert unmixed.keywords["fused"] is True
