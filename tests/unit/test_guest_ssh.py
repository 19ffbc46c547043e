"""The guest SSH connection's retry loop: it gives up at once when the guest's QEMU is gone."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from mlx5lab.vm.ssh import GuestShell


def test_connect_stops_retrying_when_qemu_is_gone(tmp_path: Path) -> None:
    """A killed guest (the fuzzer's Ctrl-C clean-up kills every QEMU) used to hold its thread in the
    retry loop until the boot deadline, minutes later; now the next attempt sees QEMU gone."""
    key = tmp_path / "key"
    key.write_text(_ed25519_pem())
    with socket.socket() as s:  # a port nothing listens on: every attempt fails fast
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    shell = GuestShell(port, key)
    checks = []

    def alive() -> bool:
        checks.append(time.monotonic())
        return len(checks) < 3  # QEMU exits after the second attempt

    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="QEMU exited"):
        shell.connect(time.monotonic() + 60, alive)
    assert len(checks) == 3
    assert time.monotonic() - t0 < 10
    with pytest.raises(TimeoutError, match="SSH to 127.0.0.1"):  # no alive check: the deadline ends it
        shell.connect(time.monotonic() + 0.3)


def _ed25519_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
