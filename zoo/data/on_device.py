"""data.on_device's settings, apart from the data modules: the command-line checks that run before
anything is built read them without importing torch."""

from __future__ import annotations

ON_DEVICE_CHOICES = "true, false or auto"


def is_on_device_choice(value: object) -> bool:
    """Whether `value` is a setting of data.on_device (a bool, not merely equal to one, or "auto")."""
    return isinstance(value, bool) or value == "auto"
