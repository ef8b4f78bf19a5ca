"""The zoo table counts what the architectures really cost."""

from __future__ import annotations

import subprocess
import sys

from zoo.__main__ import measure

from .conftest import ROOT


def test_lenet5_flops_match_a_hand_count() -> None:
    params, flops = measure("lenet5", 32, 1, 10, small_input=True)
    conv1 = 6 * 28 * 28 * (1 * 5 * 5) * 2
    conv2 = 16 * 10 * 10 * (6 * 5 * 5) * 2
    linear = (400 * 120 + 120 * 84 + 84 * 10) * 2
    assert (params, flops) == (61_706, conv1 + conv2 + linear)


def test_resnet18_flops_match_the_published_figure() -> None:
    # torchvision's model card: 1.81 G multiply-adds at 224 px, i.e. 3.63 GFLOPs.
    params, flops = measure("resnet18", 224, 3, 1000, small_input=False)
    assert params == 11_689_512
    assert abs(flops / 2 - 1.81e9) / 1.81e9 < 0.01


def test_list_command_prints_every_model() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "list", "--input-size", "32", "--in-chans", "1", "--num-classes", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert "small stem" in result.stdout
    assert "lenet5" in result.stdout and "61,706" in result.stdout and "densenet201" in result.stdout
