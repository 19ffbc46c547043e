"""Opcode -> handler table and the generic part of executing one command.

Handlers live in ``mlx5/handlers/`` (one module per area) and register with :func:`handler`;
an opcode can have only one handler. The dispatcher checks, before calling it:

* the opcode is known (else status BAD_OP, syndrome ``Synd.BAD_OPCODE | opcode``);
* ``inlen`` / ``outlen`` cover the handler's fixed input / output struct (else BAD_INP_LEN /
  BAD_OUTP_LEN): the 6.1 driver always sends exactly ``MLX5_ST_SZ_BYTES`` of these structs;
* the HCA life-cycle phase allows it (else BAD_SYS_STATE): nothing before ENABLE_HCA, only the
  init-time commands before INIT_HCA.

Handler input is zero-padded to the input struct size; a :class:`CmdError` from the handler
becomes the command status with no other effect.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .consts import Op, Status
from .errors import CmdError, Synd
from .ifc.cmds import CMD_IN, CMD_OUT
from .layout import Layout
from .state import DeviceState

log = logging.getLogger("mlx5dev.mlx5")


class Phase(Enum):
    ANY = 0  # also before ENABLE_HCA
    ENABLED = 1  # after ENABLE_HCA
    INIT = 2  # after INIT_HCA


@dataclass
class Request:
    """One command as fetched from its queue slot."""

    slot: int
    opcode: int
    op_mod: int
    inp: bytes
    inlen: int
    outlen: int


@dataclass
class Reply:
    out: bytearray
    status: int = Status.OK
    syndrome: int = 0
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    after: list[Callable[[], None]] = field(default_factory=list)
    eqe_allowed: bool = True


class Ctx:
    """What a handler works with: device state, padded input, output buffer, trace extras."""

    def __init__(self, dev: DeviceState, req: Request, spec: Spec, out: bytearray) -> None:
        self.dev = dev
        self.req = req
        self.spec = spec
        size = spec.inp.size if spec.inp else CMD_IN.size
        self.inp = req.inp + bytes(max(0, size - len(req.inp)))
        self.out = out
        self.reply = Reply(out)

    @property
    def op_mod(self) -> int:
        return self.req.op_mod

    def get(self, name: str) -> int:
        assert self.spec.inp is not None
        return self.spec.inp.get(self.inp, name)

    def put(self, name: str, value: int) -> None:
        assert self.spec.out is not None
        self.spec.out.set(self.out, name, value)

    def note(self, detail: str) -> None:
        self.reply.detail = f"{self.reply.detail}; {detail}" if self.reply.detail else detail

    def after(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the completion (and its EQE) has been delivered."""
        self.reply.after.append(fn)


@dataclass
class Spec:
    opcode: Op
    fn: Callable[[Ctx], None]
    inp: Layout | None
    out: Layout | None
    phase: Phase


REGISTRY: dict[int, Spec] = {}


def handler(
    opcode: Op, inp: Layout | None = None, out: Layout | None = None, phase: Phase = Phase.INIT
) -> Callable[[Callable[[Ctx], None]], Callable[[Ctx], None]]:
    """Register the handler of ``opcode`` (fixed input / output structs for the length checks)."""

    def deco(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        if opcode in REGISTRY:
            raise RuntimeError(f"two handlers for {opcode.name}")
        REGISTRY[opcode] = Spec(opcode, fn, inp, out, phase)
        return fn

    return deco


def _load_handlers() -> None:
    from . import handlers  # noqa: F401  (registers every handler module)


GENERIC_OUT_MIN = 8  # status (byte 0) and syndrome (BE32 at 4)


def fail(out: bytearray, status: int, syndrome: int, detail: str) -> Reply:
    CMD_OUT.set(out, "status", status)
    CMD_OUT.set(out, "syndrome", syndrome)
    return Reply(out, status, syndrome, detail)


def execute(dev: DeviceState, req: Request) -> Reply:
    """Run one command against ``dev``; never raises."""
    _load_handlers()
    out = bytearray(max(req.outlen, CMD_OUT.size))
    spec = REGISTRY.get(req.opcode)
    if spec is None:
        return fail(out, Status.BAD_OP, Synd.BAD_OPCODE | req.opcode, "opcode not implemented")
    if spec.inp is not None and req.inlen < spec.inp.size:
        return fail(
            out,
            Status.BAD_INP_LEN,
            Synd.BAD_INPUT_LEN | req.opcode,
            f"inlen {req.inlen:#x} < {spec.inp.name} {spec.inp.size:#x}",
        )
    if req.inlen < 8:
        return fail(out, Status.BAD_INP_LEN, Synd.BAD_INPUT_LEN | req.opcode, f"inlen {req.inlen}")
    # The generic output (status, syndrome) stands for many ifc structs of 8 to 16 bytes
    # (enable_hca_out is 12): only its first 8 bytes are required.
    out_need = 0 if spec.out is None else GENERIC_OUT_MIN if spec.out is CMD_OUT else spec.out.size
    if req.outlen < out_need:
        return fail(
            out,
            Status.BAD_OUTP_LEN,
            Synd.BAD_OUTPUT_LEN | req.opcode,
            f"outlen {req.outlen:#x} < {out_need:#x} ({spec.out.name if spec.out else ''})",
        )
    hca = dev.hca
    if (spec.phase is Phase.ENABLED and not hca.enabled) or (
        spec.phase is Phase.INIT and not hca.initialized
    ):
        return fail(
            out,
            Status.BAD_SYS_STATE,
            Synd.BAD_STATE | req.opcode,
            f"needs {'ENABLE_HCA' if spec.phase is Phase.ENABLED else 'INIT_HCA'}",
        )
    ctx = Ctx(dev, req, spec, out)
    try:
        spec.fn(ctx)
    except CmdError as e:
        out[:] = bytes(len(out))
        reply = fail(out, e.status, e.syndrome, e.detail)
        reply.extra = ctx.reply.extra
        return reply
    except Exception as e:  # a handler bug must not kill the worker: report it as an internal error
        log.exception("handler for %s crashed", spec.opcode.name)
        out[:] = bytes(len(out))
        return fail(
            out,
            Status.INT_ERR,
            Synd.INTERNAL | req.opcode,
            f"handler crashed: {e!r} " + traceback.format_exc(limit=3).replace("\n", " | "),
        )
    CMD_OUT.set(out, "status", Status.OK)
    CMD_OUT.set(out, "syndrome", 0)
    return ctx.reply
