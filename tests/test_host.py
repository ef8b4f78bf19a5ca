"""Host-side fast paths: the allocator setting, the NVML probe, the no-op profiler, the cheap hook name."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from pytorch_lightning.profilers import SimpleProfiler
from torch import nn

from zoo.data import DataSpec
from zoo.training import builders, host
from zoo.training.module import ImageClassifier
from zoo.training.profiling import NoProfiler

from .conftest import ROOT, compose_config


def _python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


PAGE_FAULTS_OF_STEPS = """
    import resource, sys, torch
    from zoo.training.host import keep_freed_cpu_memory
    if sys.argv[-1] == "cache":
        assert keep_freed_cpu_memory()
    def step():  # activations of a few MB each, allocated and freed as a training step does
        kept = [torch.ones(256, 1024 * (1 + i % 4)) for i in range(16)]
        return sum(float(t[0, 0]) for t in kept)
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(60):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_keeping_freed_memory_stops_the_page_faults_of_repeated_steps(tmp_path: Path) -> None:
    script = tmp_path / "steps.py"
    script.write_text(textwrap.dedent(PAGE_FAULTS_OF_STEPS))

    def faults(mode: str) -> int:
        result = subprocess.run(
            [sys.executable, str(script), mode], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return int(result.stdout)

    default, cached = faults("default"), faults("cache")
    # By default each freed block over the mmap threshold goes back to the OS and faults in again.
    assert default > 10_000
    assert cached < default / 4


def test_keeping_freed_memory_sets_glibcs_mmap_and_trim_thresholds(monkeypatch) -> None:
    # Both thresholds must be set, each to its own value: mmap at glibc's 32 MiB ceiling, trim at 1 GiB.
    calls = []

    class FakeMallopt:
        argtypes = restype = None

        def __call__(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    class FakeLibc:
        mallopt = FakeMallopt()

    monkeypatch.setattr(host.sys, "platform", "linux")
    monkeypatch.setattr(host.ctypes, "CDLL", lambda name: FakeLibc())
    assert host.keep_freed_cpu_memory()
    assert calls == [(-3, 32 * 1024 * 1024), (-1, 1024**3)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


def test_the_memory_setting_is_applied_only_when_asked_for(monkeypatch) -> None:
    # cpu_memory_cache (on by default) must decide whether the trainer's host is prepared with it.
    calls = []
    monkeypatch.setattr(builders, "keep_freed_cpu_memory", lambda: calls.append(1) or True)
    builders.prepare_host(compose_config("cpu_memory_cache=false"))
    assert calls == []
    builders.prepare_host(compose_config())
    assert calls == [1]


def test_the_nvml_probe_lightning_turns_on_is_dropped_only_without_a_gpu() -> None:
    out = _python(
        """
        import os, torch
        import pytorch_lightning
        before = os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")
        from zoo.training.host import skip_nvml_probe_without_gpu
        skip_nvml_probe_without_gpu()
        print(before, os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK"), torch.cuda.is_available())
        """
    )
    before, after, gpu = out.split()
    assert before == "1"
    assert after == ("1" if gpu == "True" else "None")


def _compose(tmp_path: Path, *overrides: str):
    return compose_config(f"paths.output_dir={tmp_path}", *overrides)


def test_the_trainer_profiles_nothing_unless_a_profiler_is_asked_for(tmp_path: Path) -> None:
    trainer = builders.build_trainer(_compose(tmp_path, "logger=none"))
    assert isinstance(trainer.profiler, NoProfiler)
    # One shared do-nothing context for every hook call.
    assert trainer.profiler.profile("a") is trainer.profiler.profile("b")
    with trainer.profiler.profile("training_step"):
        pass
    asked = builders.build_trainer(_compose(tmp_path, "logger=none", "trainer.profiler=simple"))
    assert isinstance(asked.profiler, SimpleProfiler)


def test_the_cheap_hook_name_attribute_leaves_module_registration_alone() -> None:
    spec = DataSpec(class_names=tuple("0123456789"), channels=1, image_size=32, mean=(0.5,), std=(0.25,))
    module = ImageClassifier(model={"name": "lenet5", "num_classes": 10, "in_chans": 1}, data=spec.to_dict())
    module._current_fx_name = "training_step"
    assert module._current_fx_name == "training_step"
    module.probe = nn.Linear(2, 2)
    module.scale = nn.Parameter(torch.ones(1))
    assert "probe" in dict(module.named_children())
    assert "scale" in dict(module.named_parameters())
