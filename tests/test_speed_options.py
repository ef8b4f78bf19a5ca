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

import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from zoo.data import DataSpec, DigitsDataModule, InMemoryBatches
from zoo.training import builders
from zoo.training.module import ImageClassifier

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


def _assert_trains(module: ImageClassifier, steps: int, batch: int, **trainer_options) -> None:
    """A few optimiser steps through Lightning's Trainer on the CPU; every one runs, the loss stays finite."""
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_options,
    )
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
