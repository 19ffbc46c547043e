"""Scenarios: what one iteration does to a guest, and how its outcome is decided from evidence.

Each module registers its scenario class with ``@register_scenario`` (``mlx5lab.campaign.scenario``);
importing this package registers them all.
"""

from . import fuzz_program, reboot_race  # noqa: F401 - register "fuzz-program", "reboot-race"
