"""The Makefile's targets: each one named phony has a recipe, and `make lint` checks what the code
must pass."""

from __future__ import annotations

import re
from pathlib import Path

MAKEFILE = (Path(__file__).resolve().parents[1] / "Makefile").read_text()


def _recipe(target: str) -> str:
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)*)", MAKEFILE, re.MULTILINE)
    assert match, f"no rule for {target}"
    return match.group(1)


def test_every_phony_target_has_a_recipe() -> None:
    # A phony name without a rule made `make clean-runs` print "Nothing to be done" and do nothing.
    phony = re.search(r"^\.PHONY:(.*)$", MAKEFILE, re.MULTILINE).group(1).split()
    for target in phony:
        assert _recipe(target).strip(), f"make {target} does nothing"


def test_lint_checks_the_formatting_too() -> None:
    recipe = _recipe("lint")
    assert "ruff check" in recipe and "ruff format --check" in recipe, recipe
