"""Command failures and the syndromes this model reports.

Syndromes are ``0xE5RRxxxx``: ``E5`` marks "emulator", ``RR`` the reason, the low 16 bits the
opcode or register id concerned. They never collide with the driver-synthesised ``0xbadd00de``.
"""

from __future__ import annotations

from .consts import Status


class Synd:
    BASE = 0xE5000000
    BAD_OPCODE = BASE | 0x01 << 16
    BAD_REGISTER = BASE | 0x02 << 16
    BAD_RESOURCE = BASE | 0x03 << 16
    BAD_INPUT_LEN = BASE | 0x04 << 16
    BAD_OUTPUT_LEN = BASE | 0x05 << 16
    BAD_PARAM = BASE | 0x06 << 16
    BAD_STATE = BASE | 0x07 << 16
    NO_RESOURCES = BASE | 0x08 << 16
    INTERNAL = BASE | 0x09 << 16
    BUSY = BASE | 0x0A << 16


class CmdError(Exception):
    """Raised by a handler: the command completes with ``status`` / ``syndrome`` and no side effect."""

    def __init__(self, status: Status, syndrome: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.syndrome = syndrome & 0xFFFFFFFF
        self.detail = detail


def bad_param(detail: str, low: int = 0) -> CmdError:
    return CmdError(Status.BAD_PARAM, Synd.BAD_PARAM | (low & 0xFFFF), detail)


def bad_state(detail: str, low: int = 0) -> CmdError:
    return CmdError(Status.BAD_SYS_STATE, Synd.BAD_STATE | (low & 0xFFFF), detail)
