"""Scenarios: what one iteration does to a guest, and how its outcome is decided from evidence.

Each module registers its scenario class with ``@register_scenario`` (``mlx5lab.campaign.scenario``);
importing this package registers them all.
"""

from . import reboot_race  # noqa: F401 - registers "reboot-race"
