"""``--card KEY=VALUE``: typed card settings, clear errors, and the race carries them to the card."""

from __future__ import annotations

import argparse

import pytest

from mlx5dev.card import CardConfig
from mlx5lab.cli import build_parser
from mlx5lab.cli.cardopts import parse_card_setting
from mlx5lab.scenarios.reboot_race import RaceParams


def test_settings_are_typed() -> None:
    assert parse_card_setting("fast_teardown=false") == ("fast_teardown", False)
    assert parse_card_setting("sync-reset=on") == ("sync_reset", True)
    assert parse_card_setting("cmd_timeout_ms=3000") == ("cmd_timeout_ms", 3000)
    assert parse_card_setting("cmd_timeout_ms=none") == ("cmd_timeout_ms", None)
    for bad in ("nope=1", "fast_teardown", "fast_teardown=maybe", "msix_vectors=many"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_card_setting(bad)


def test_race_and_boot_take_card_settings() -> None:
    args = build_parser().parse_args(["race", "--card", "fast_teardown=false", "--card", "msix_vectors=16"])
    assert dict(args.card) == {"fast_teardown": False, "msix_vectors": 16}
    params = RaceParams(card=dict(args.card))
    card = CardConfig.from_speeds(params.speeds, **params.card)
    assert card.fast_teardown is False and card.msix_vectors == 16 and card.sync_reset is True
    assert build_parser().parse_args(["boot", "--card", "sync_reset=false"]).card == [("sync_reset", False)]
    with pytest.raises(ValueError, match="reboot is one of"):
        RaceParams(reboot="halt")


def test_tap_takes_an_interface_name_or_none() -> None:
    assert parse_card_setting("tap=mlx5tap0") == ("tap", "mlx5tap0")
    assert parse_card_setting("tap=none") == ("tap", None)
