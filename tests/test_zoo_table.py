"""The zoo table counts what the architectures really cost."""

from __future__ import annotations

import subprocess
import sys

import pytest

from zoo import __main__ as zoo_main
from zoo.__main__ import measure
from zoo.models import list_models

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


def test_list_marks_the_variants_an_input_size_is_too_small_for(capsys) -> None:
    from zoo.__main__ import main

    main(["list", "--input-size", "8"])
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert set(rows) == set(list_models())
    # LeNet-5's two 5x5 convolutions and pools need 16 px; the small-stem ResNet-18 takes 8.
    assert "needs at least 16 px (" in rows["lenet5"] and "needs" not in rows["resnet18"]


def test_list_refuses_sizes_that_are_not_positive(capsys) -> None:
    from zoo.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["list", "--input-size", "0"])
    assert exited.value.code == 2
    # One line, as the entry points' errors are; argparse's own usage block came first before.
    assert capsys.readouterr().err.splitlines() == [
        "error: python -m zoo list: argument --input-size: must be an integer >= 1, not '0'; "
        "see python -m zoo list --help"
    ]
    with pytest.raises(SystemExit) as exited:
        main(["bogus"])
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: python -m zoo: argument command: invalid choice: 'bogus'")


# Guards the README table's columns: the 224 px standard stem, then the 32 px small stem at 10 classes,
# FLOPs in the largest unit that fits.
def test_table_rows_give_both_stems_in_readable_units(capsys, monkeypatch) -> None:
    monkeypatch.setattr(zoo_main, "list_models", lambda: ["resnet18"])
    zoo_main.print_table()
    row = capsys.readouterr().out.splitlines()[-1]
    assert row == "| resnet18 | 11,689,512 | 3.63G | 11,173,962 | 1.11G |"


# Guards list --stem: a stem asked for by name is used whatever the input size.
def test_list_uses_the_stem_asked_for(capsys, monkeypatch) -> None:
    monkeypatch.setattr(zoo_main, "list_models", lambda: ["resnet18"])
    zoo_main.main(["list", "--input-size", "32", "--stem", "standard"])
    header, _, row = capsys.readouterr().out.splitlines()
    assert header == "input 3x32x32, 1000 classes, standard stem"
    assert row.split()[:2] == ["resnet18", "11,689,512"]  # the 7x7 stem's parameter count
