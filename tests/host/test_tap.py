"""The TAP host backend (mlx5dev.tap) against the host kernel: frames both ways through a real TAP interface,
seen from the host through a packet socket bound to it (root, as under `make test`)."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from mlx5dev.tap import TapError, TapPort

ETH_P_ALL = 0x0003


def test_frames_cross_a_tap_interface_both_ways() -> None:
    name = f"mlx5t{os.getpid() % 100000}"
    got: list[bytes] = []
    tap = TapPort(name, got.append)
    try:
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
            s.bind((name, 0))
            s.settimeout(5)
            frame = bytes.fromhex("02aa00000002" "02bb00000001" "88b5") + b"host to port" + bytes(40)
            s.send(frame)
            deadline = time.monotonic() + 5
            while frame not in got and time.monotonic() < deadline:
                time.sleep(0.01)
            assert frame in got
            back = bytes.fromhex("02bb00000001" "02aa00000002" "88b5") + b"port to host" + bytes(40)
            tap.send(back)
            while True:  # the host may also see its own frames on the interface
                data = s.recv(2048)
                if data == back:
                    break
        assert tap.status()["sent"] == 1 and tap.status()["received"] >= 1
    finally:
        tap.close()
    time.sleep(0.2)
    assert not os.path.exists(f"/sys/class/net/{name}")  # gone with its file


def test_bad_names_are_refused_clearly() -> None:
    with pytest.raises(TapError, match="1 to 15"):
        TapPort("a name with spaces", lambda frame: None)
    with pytest.raises(TapError, match="1 to 15"):
        TapPort("x" * 16, lambda frame: None)
