"""The control channel: JSON-lines requests on a UNIX socket, to read and change the card while it runs.

One request per line, ``{"op": NAME, ...args}``; one reply line, ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``. Operations (``function`` is the function index; omitted or null means
every function, where that makes sense):

- ``status``: the state of every function (mode, objects, link, speed, faults, health, ...)
- ``set_link`` {function, up}: plug or unplug the cable (a port change event reaches the driver)
- ``set_speed`` {function, mbps}: change the negotiated speed
- ``flap_link`` {function, down_ms}: cable out, and back in after ``down_ms`` (two port change events)
- ``add_fault`` {function, opcode (number or name, e.g. "ACCESS_REG"), register (id or name, e.g.
  "PTYS"), delay_ms, status, syndrome, drop, hold, corrupt_field, corrupt_value, count}: delay, fail, drop,
  hold or corrupt (one output field set to a value) matching commands, for the next ``count`` commands or
  always; returns the fault ids
- ``release_held`` {function}: complete the commands a ``hold`` fault parked (late completions)
- ``corrupt`` {function, opcode, field, value, count}: ``add_fault`` with ``corrupt_field``/``corrupt_value``
- ``remove_fault`` {function, fault_id}; ``clear_faults`` {function}
- the card's firmware, shared by every function (``function`` is ignored): ``set_health`` {synd,
  ext_synd, rfr, severity, fw_ver_dead, counter_frozen}, ``clear_health``; ``fw_fatal`` {synd, ext_synd}
  (a firmware assert: syndrome with ``rfr``, the driver's health recovery resets the firmware);
  ``fw_dead`` {seconds} (every read all-ones; back, reset, after ``seconds`` if given);
  ``freeze_health_counter`` {frozen}; ``sync_reset`` (the firmware asks every function for a sync reset);
  ``firmware`` (its state)
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .card import Card
from .mlx5.consts import Op, Reg

log = logging.getLogger("mlx5dev.control")
MAX_REQUEST = 64 * 1024


def _enum_value(enum: type[Op] | type[Reg], value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
        try:
            return int(enum[value.upper()])
        except KeyError:
            raise ValueError(f"unknown {what} {value!r}") from None
    raise ValueError(f"bad {what} {value!r}")


class ControlServer:
    def __init__(self, card: Card, path: Path) -> None:
        self.card = card
        self.path = path
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self._stopping = False
        self.ops: dict[str, Callable[..., Any]] = {
            "status": lambda: self.card.status(),
            "set_link": self._set_link,
            "set_speed": self._set_speed,
            "add_fault": self._add_fault,
            "remove_fault": lambda fault_id, function=None: [
                fn.remove_fault(int(fault_id)) for fn in self.card.selected(function)],
            "clear_faults": lambda function=None: [fn.clear_faults() for fn in self.card.selected(function)],
            "set_health": self._set_health,
            "clear_health": lambda function=None: self.card.firmware.clear_health(),
            "flap_link": self._flap_link,
            "corrupt": self._corrupt,
            "release_held": lambda function=None: [fn.release_held() for fn in self.card.selected(function)],
            "fw_fatal": self._fw_fatal,
            "fw_dead": self._fw_dead,
            "freeze_health_counter": lambda frozen=True, function=None: self.card.firmware.set_health(
                counter_frozen=bool(frozen)),
            "sync_reset": lambda function=None: self.card.firmware.sync_reset_request(None),
            "firmware": lambda function=None: self.card.firmware.status(),
        }

    def _set_link(self, up: bool, function: int | None = None) -> None:
        for fn in self.card.selected(function):
            fn.set_link(bool(up))

    def _set_speed(self, mbps: int, function: int | None = None) -> None:
        for fn in self.card.selected(function):
            fn.set_speed(int(mbps))

    def _flap_link(self, function: int | None = None, down_ms: float = 500) -> None:
        fns = self.card.selected(function)
        for fn in fns:
            fn.set_link(False)
        timer = threading.Timer(max(0.0, float(down_ms)) / 1000, lambda: [fn.set_link(True) for fn in fns])
        timer.daemon = True
        timer.start()

    def _corrupt(self, opcode: Any, field: str, value: int, function: int | None = None,
                 count: int = 1) -> list[int]:
        """The next ``count`` matching commands answer with output ``field`` set to ``value``."""
        return self._add_fault(function, opcode, None, corrupt_field=str(field), corrupt_value=int(value),
                               count=int(count))

    def _fw_fatal(self, synd: int = 1, ext_synd: int = 0, function: int | None = None) -> None:
        if not 1 <= int(synd) <= 0xFF:
            raise ValueError("synd is 1..255 (health.c: hsynd_str names them; 1 = firmware internal error)")
        self.card.firmware.set_health(synd=int(synd), ext_synd=int(ext_synd) & 0xFFFF, rfr=True)

    def _fw_dead(self, seconds: float | None = None, function: int | None = None) -> None:
        self.card.firmware.set_health(fw_ver_dead=True)
        if seconds is not None:
            self.card.firmware.revive_after(float(seconds))

    def _add_fault(self, function: int | None = None, opcode: Any = None, register: Any = None,
                   **kw: Any) -> list[int]:
        op = _enum_value(Op, opcode, "opcode")
        reg = _enum_value(Reg, register, "register")
        allowed = {"delay_ms", "status", "syndrome", "drop", "hold", "count", "corrupt_field", "corrupt_value"}
        if set(kw) - allowed:
            raise ValueError(f"unknown fault fields {sorted(set(kw) - allowed)}")
        return [fn.add_fault(op, register_id=reg, **kw) for fn in self.card.selected(function)]

    def _set_health(self, function: int | None = None, **kw: Any) -> None:
        allowed = {"synd", "ext_synd", "rfr", "severity", "fw_ver_dead", "counter_frozen"}
        if set(kw) - allowed:
            raise ValueError(f"unknown health fields {sorted(set(kw) - allowed)}")
        self.card.firmware.set_health(**kw)

    def handle(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or not isinstance(req.get("op"), str):
                raise ValueError("a request is a JSON object with a string 'op'")
            op = self.ops.get(req.pop("op"))
            if op is None:
                raise ValueError(f"unknown op; known: {sorted(self.ops)}")
            return {"ok": True, "result": op(**req)}
        except (ValueError, TypeError, KeyError) as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a control request must never take the device server down
            log.exception("control request failed")
            return {"ok": False, "error": f"internal error: {exc!r}"}

    def _serve_client(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            buf = b""
            try:
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                    if len(buf) > MAX_REQUEST:
                        conn.sendall(b'{"ok": false, "error": "request too long"}\n')
                        return
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            conn.sendall(json.dumps(self.handle(line)).encode() + b"\n")
            except OSError as exc:
                log.debug("control client: %r", exc)

    def serve_forever(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                break
            threading.Thread(target=self._serve_client, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):  # not connected: nothing to shut down
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.path.unlink(missing_ok=True)
