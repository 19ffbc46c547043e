"""The emulated card as the orchestrator sees it: a device-server process, its sockets, its control channel.

The device server (``python -m mlx5dev serve``) is started before QEMU and stopped after it. Each function
of the card is its own vfio-user socket; QEMU places them as functions of one slot behind a PCIe root port
(``.0`` with multifunction on, ``.1``, ...), like the two ports of a dual-port ConnectX.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from mlx5dev.card import CardConfig
from mlx5dev.rundir import CardDir, remove_socket

from .. import Mlx5LabError
from .process import ChildProcess

ROOT_PORT_ID = "mlx5rp"
ROOT_PORT_ARGS = ("-device", f"pcie-root-port,id={ROOT_PORT_ID},chassis=1,slot=1")  # the card's slot


class ControlClient:
    """JSON-lines requests to the device server's control socket (one connection per request)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def request(self, op: str, **args: Any) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            try:
                s.connect(str(self.path))
            except OSError as exc:
                raise Mlx5LabError(f"device server control socket {self.path}: {exc}") from exc
            s.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        reply = json.loads(buf or b"{}")
        if not reply.get("ok"):
            raise Mlx5LabError(f"device server refused {op}: {reply.get('error', 'no reply')}")
        return reply.get("result")

    def status(self) -> Any:
        return self.request("status")

    def set_link(self, function: int, up: bool) -> Any:
        return self.request("set_link", function=function, up=up)

    def set_speed(self, function: int, mbps: int) -> Any:
        return self.request("set_speed", function=function, mbps=mbps)

    def add_fault(self, function: int | None = None, **fault: Any) -> Any:
        return self.request("add_fault", function=function, **fault)

    def clear_faults(self, function: int | None = None) -> Any:
        return self.request("clear_faults", function=function)


class CardServer:
    """A running device-server process for one card, in its folder (names in :mod:`mlx5dev.rundir`)."""

    def __init__(self, spec: CardConfig, run_dir: Path) -> None:
        self.spec = spec
        self.dir = CardDir(run_dir)
        self.run_dir = run_dir
        self.child: ChildProcess | None = None
        self.control = ControlClient(self.dir.control_socket)

    def function_socket(self, i: int) -> Path:
        return self.dir.function_socket(i)

    def trace_file(self, i: int) -> Path:
        return self.dir.trace(i)

    def start(self, timeout: float = 20.0) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        want = self.dir.sockets(len(self.spec.functions))
        for stale in want:  # left by a killed run in a kept folder: they would pass for readiness
            stale.unlink(missing_ok=True)
        self.child = ChildProcess([sys.executable, "-m", "mlx5dev", "serve", "--dir", str(self.run_dir),
                                   "--card", self.spec.to_json()], self.dir.log).start()
        deadline = time.monotonic() + timeout
        while not all(p.exists() for p in want):
            if not self.child.alive():
                raise Mlx5LabError(f"device server exited at start: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise Mlx5LabError(f"device server did not create its sockets in {timeout:.0f}s")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def log_tail(self, lines: int = 20) -> str:
        return self.child.log_tail(lines) if self.child else ""

    def qemu_args(self) -> list[str]:
        """Root port plus one vfio-user-pci device per function, all in slot 0 of that port."""
        args = list(ROOT_PORT_ARGS)
        for dev in self.function_devices():
            args += ["-device", json.dumps(dev)]
        return args

    def function_devices(self) -> list[dict[str, Any]]:
        """One vfio-user-pci device per function (``-device`` JSON, or QMP ``device_add`` arguments)."""
        multi = len(self.spec.functions) > 1
        devices = []
        for i in range(len(self.spec.functions)):
            dev: dict[str, Any] = {
                "driver": "vfio-user-pci", "id": f"mlx5fn{i}", "bus": ROOT_PORT_ID, "addr": f"0.{i}",
                "socket": {"path": str(self.function_socket(i)), "type": "unix"},
            }
            if i == 0 and multi:
                dev["multifunction"] = True
            devices.append(dev)
        return devices

    def stop(self) -> None:
        if self.child is None:
            return
        self.child.stop()
        self.child = None
        for sock in self.dir.sockets(len(self.spec.functions)):
            remove_socket(sock)
