"""``--card KEY=VALUE``: the card settings that decide which path the driver takes (mlx5dev.card.CardConfig)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from mlx5dev.card import CardConfig

#: CardConfig fields a user sets with --card (functions come from --speeds)
SETTINGS = {f.name: f for f in dataclasses.fields(CardConfig) if f.name != "functions"}


def parse_card_setting(text: str) -> tuple[str, Any]:
    """``fast_teardown=false`` -> ("fast_teardown", False); ``cmd_timeout_ms=3000`` -> 3000; ``none``."""
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or key not in SETTINGS:
        raise argparse.ArgumentTypeError(f"--card takes KEY=VALUE with KEY one of {', '.join(SETTINGS)}")
    default = SETTINGS[key].default
    v = value.strip().lower()
    if key == "tap":  # an interface name (mlx5dev.tap checks it when the card starts)
        return key, None if v in ("", "none", "off") else value.strip()
    if isinstance(default, bool):
        if v not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise argparse.ArgumentTypeError(f"--card {key} is true or false, not {value!r}")
        return key, v in ("1", "true", "yes", "on")
    if v in ("none", "off") and key == "cmd_timeout_ms":
        return key, None
    try:
        return key, int(v, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--card {key} is a number, not {value!r}") from None


def add_card(sp: argparse.ArgumentParser) -> None:
    defaults = ", ".join(f"{k}={f.default}" for k, f in SETTINGS.items())
    sp.add_argument("--card", type=parse_card_setting, action="append", default=[], metavar="KEY=VALUE",
                    help=f"a card setting (repeatable); defaults, ConnectX-5-like: {defaults}")


def card_settings(args: argparse.Namespace) -> dict[str, Any]:
    return dict(args.card)
