"""Test-side stand-ins for the guest: fake guest RAM, a recording interrupt sink, and a small
driver that talks to ``Mlx5Function`` the way 6.1 ``mlx5_core`` / ``mlx5e`` do (cmd queue page,
mailbox chains, doorbells, polling then events mode, EQ consumption, the mlx5e object set).

The driver checks the device's side of the events-mode contract as it goes: every CMD EQE must
name only slots it has pending, each at most once, with ownership already returned.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from mlx5dev.interfaces import DMAError
from mlx5dev.mlx5 import Mlx5Function
from mlx5dev.mlx5.consts import Cap, Event, Op, Reg
from mlx5dev.mlx5.ifc import cmds as c
from mlx5dev.mlx5.ifc.hw import CMD_LAYOUT, EQE, PROT_BLOCK
from mlx5dev.mlx5.layout import Layout

PAGE = 4096
RAM_BASE = 0x4000_0000


class FakeGuestMemory:
    """Guest RAM as one bytearray at ``RAM_BASE``; anything else raises DMAError."""

    def __init__(self, size: int = 32 << 20, base: int = RAM_BASE) -> None:
        self.base = base
        self.ram = bytearray(size)
        self._brk = 0
        self.reads = 0
        self.writes = 0
        self._lock = threading.Lock()

    def _span(self, addr: int, length: int) -> int:
        off = addr - self.base
        if length < 0 or off < 0 or off + length > len(self.ram):
            raise DMAError(f"{addr:#x}+{length:#x} outside guest RAM")
        return off

    def read(self, addr: int, length: int) -> bytes:
        off = self._span(addr, length)
        self.reads += 1
        return bytes(self.ram[off : off + length])

    def write(self, addr: int, data: bytes) -> None:
        off = self._span(addr, len(data))
        self.writes += 1
        self.ram[off : off + len(data)] = data

    def alloc(self, size: int, align: int = PAGE) -> int:
        """Bump allocator for driver-side buffers (never freed)."""
        with self._lock:
            start = -(-self._brk // align) * align
            if start + size > len(self.ram):
                raise MemoryError("fake guest RAM exhausted")
            self._brk = start + size
            return self.base + start


class FakeIrq:
    """Records fired vectors; tests can wait for the next one."""

    def __init__(self) -> None:
        self.fired: list[int] = []
        self._cond = threading.Condition()

    def fire(self, vector: int) -> None:
        with self._cond:
            self.fired.append(vector)
            self._cond.notify_all()

    def wait_count(self, n: int, timeout: float = 2.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.fired) >= n, timeout)


class ContractViolation(AssertionError):
    """The device broke the driver-side rules (double / unexpected completion, ...)."""


@dataclass
class Result:
    status: int | None  # None when the delivery status is not OK
    syndrome: int
    out: bytes
    delivery: int


@dataclass
class DriverCq:
    cqn: int
    log_size: int
    buf: int
    dbr: int
    ci: int = 0


@dataclass
class DriverSq:
    sqn: int
    cqn: int
    log_size: int
    buf: int
    dbr: int
    pc: int = 0


@dataclass
class DriverRq:
    rqn: int
    cqn: int
    log_size: int
    log_stride: int
    buf: int
    dbr: int
    pc: int = 0
    buffers: dict[int, int] = field(default_factory=dict)


@dataclass
class DriverEq:
    eqn: int
    log_size: int
    buf: int  # contiguous pages
    intr: int
    mask: int
    ci: int = 0
    eqes: list[bytes] = field(default_factory=list)


def be(value: int, n: int) -> bytes:
    return value.to_bytes(n, "big")


class TestDriver:
    """A miniature mlx5_core + mlx5e. Single-threaded: it polls EQs instead of taking interrupts."""

    __test__ = False  # not a pytest class

    def __init__(self, dev: Mlx5Function, mem: FakeGuestMemory, irq: FakeIrq, timeout: float = 2.0) -> None:
        self.dev, self.mem, self.irq, self.timeout = dev, mem, irq, timeout
        self.cmdq = 0
        self.token = 0
        self.events_mode = False
        self.cmd_eq: DriverEq | None = None
        self.eqs: dict[int, DriverEq] = {}
        self.pending: set[int] = set()
        self.done: set[int] = set()
        self.uar = 0
        self.port_events: list[int] = []
        self.comp_events: list[int] = []
        self.cq_rings: dict[int, DriverCq] = {}
        self.sq_rings: dict[int, DriverSq] = {}
        self.rq_rings: dict[int, DriverRq] = {}
        self.lkey = 0

    # -- BAR access -------------------------------------------------------------------------
    def rd32(self, off: int) -> int:
        return int.from_bytes(self.dev.mmio_read(off, 4), "big")

    def wr32(self, off: int, value: int) -> None:
        self.dev.mmio_write(off, be(value, 4))

    def enable_cmdq(self) -> None:
        """mlx5_cmd_enable: check cmdif rev and queue geometry, program the queue address."""
        assert self.rd32(0x04) >> 16 == 5
        l_sz = self.rd32(0x14)
        assert (l_sz >> 4) & 0xF == 5 and l_sz & 0xF == 6
        self.cmdq = self.mem.alloc(PAGE, PAGE)
        self.wr32(0x10, self.cmdq >> 32)
        self.wr32(0x14, self.cmdq & 0xFFFFFFFF)
        assert self.rd32(0x1FC) >> 31 == 0  # main.c: wait_fw_init reads bit 31 (bit 30: FW reset supported)

    # -- mailboxes --------------------------------------------------------------------------
    def build_chain(self, payload: bytes, nblocks: int, token: int) -> int:
        """Allocate ``nblocks`` 1 KiB-aligned blocks carrying ``payload`` (bytes 16..); returns block 0."""
        addrs = [self.mem.alloc(PROT_BLOCK.size, 1024) for _ in range(nblocks)]
        for k, addr in enumerate(addrs):
            blk = PROT_BLOCK.build()
            chunk = payload[16 + 512 * k : 16 + 512 * (k + 1)]
            blk[: len(chunk)] = chunk
            PROT_BLOCK.set(blk, "next", addrs[k + 1] if k + 1 < nblocks else 0)
            PROT_BLOCK.set(blk, "block_num", k)
            PROT_BLOCK.set(blk, "token", token)
            self.mem.write(addr, bytes(blk))
        return addrs[0] if addrs else 0

    def read_chain(self, first: int, length: int) -> bytes:
        data = b""
        addr = first
        while len(data) < length - 16 and addr:
            raw = self.mem.read(addr, PROT_BLOCK.size)
            data += raw[:512]
            addr = PROT_BLOCK.get(raw, "next")
        return data

    # -- commands ---------------------------------------------------------------------------
    def post(
        self,
        inp: bytes,
        outlen: int,
        slot: int = 0,
        *,
        in_ptr: int | None = None,
        out_ptr: int | None = None,
        inlen: int | None = None,
        entry_type: int = 7,
    ) -> int:
        """Write the queue entry for a command and ring its doorbell; returns the entry address."""
        self.token = self.token % 255 + 1
        inlen = len(inp) if inlen is None else inlen
        nin = max(0, -(-(inlen - 16) // 512))
        nout = max(0, -(-(outlen - 16) // 512))
        ent = CMD_LAYOUT.build()
        CMD_LAYOUT.set(ent, "type", entry_type)
        CMD_LAYOUT.set(ent, "inlen", inlen)
        CMD_LAYOUT.set(ent, "in_ptr", self.build_chain(inp, nin, self.token) if in_ptr is None else in_ptr)
        ent[0x10:0x20] = inp[:16].ljust(16, b"\0")
        CMD_LAYOUT.set(
            ent, "out_ptr", self.build_chain(b"", nout, self.token) if out_ptr is None else out_ptr
        )
        CMD_LAYOUT.set(ent, "outlen", outlen)
        CMD_LAYOUT.set(ent, "token", self.token)
        CMD_LAYOUT.set(ent, "status_own", 1)
        addr = self.cmdq + slot * 64
        self.mem.write(addr, bytes(ent))
        self.pending.add(slot)
        self.wr32(0x18, 1 << slot)
        return addr

    def wait(self, slot: int, outlen: int, timeout: float | None = None) -> Result:
        """Wait for the slot's completion (polling or events mode) and collect the output."""
        addr = self.cmdq + slot * 64
        end = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if self.events_mode:
                self.poll_eqs()
                if slot in self.done:
                    self.done.discard(slot)
                    break
            elif not self.mem.read(addr + 0x3F, 1)[0] & 1:
                self.pending.discard(slot)
                break
            if time.monotonic() > end:
                raise TimeoutError(f"slot {slot} not completed")
            time.sleep(0.0005)
        ent = self.mem.read(addr, 64)
        delivery = ent[0x3F] >> 1
        out = ent[0x20:0x30]
        if delivery == 0:
            out += self.read_chain(CMD_LAYOUT.get(ent, "out_ptr"), outlen)
        out = out[:outlen].ljust(outlen, b"\0")
        status = out[0] if delivery == 0 else None
        return Result(status, int.from_bytes(out[4:8], "big"), out, delivery)

    def cmd(
        self,
        layout: Layout | None,
        values: dict | None = None,
        outlen: int = 16,
        *,
        opcode: int,
        op_mod: int = 0,
        extra: bytes = b"",
        slot: int = 0,
        check: bool = True,
    ) -> Result:
        inp = (layout or c.CMD_IN).build(values or {})
        return self.cmd_raw(inp + extra, outlen, opcode=opcode, op_mod=op_mod, slot=slot, check=check)

    def cmd_raw(
        self, inp: bytearray, outlen: int, *, opcode: int, op_mod: int = 0, slot: int = 0, check: bool = True
    ) -> Result:
        c.CMD_IN.set(inp, "opcode", opcode)
        c.CMD_IN.set(inp, "op_mod", op_mod)
        self.post(bytes(inp), outlen, slot)
        res = self.wait(slot, outlen)
        self.last = res
        if check and (res.delivery or res.status):
            raise AssertionError(
                f"{Op(opcode).name} failed: delivery {res.delivery} status {res.status} "
                f"syndrome {res.syndrome:#x}"
            )
        return res

    # -- event queues -----------------------------------------------------------------------
    def create_eq(self, mask: int, log_size: int, intr: int) -> DriverEq:
        nbytes = 64 << log_size
        buf = self.mem.alloc(nbytes, PAGE)
        self.mem.write(buf, bytes([0] * 63 + [1]) * (1 << log_size))  # every owner byte = 1
        npages = -(-nbytes // PAGE)
        pas = b"".join(be(buf + i * PAGE, 8) for i in range(npages))
        vals = {
            "eq_context_entry.log_eq_size": log_size,
            "eq_context_entry.uar_page": self.uar,
            "eq_context_entry.intr": intr,
            "event_bitmask": mask << 192,
        }
        res = self.cmd(c.CREATE_EQ_IN, vals, 0x10, opcode=Op.CREATE_EQ, extra=pas)
        eq = DriverEq(res.out[0x0B], log_size, buf, intr, mask)
        self.eqs[eq.eqn] = eq
        return eq

    def destroy_eq(self, eq: DriverEq) -> None:
        self.cmd(c.DESTROY_EQ_IN, {"eq_number": eq.eqn}, opcode=Op.DESTROY_EQ)
        del self.eqs[eq.eqn]

    def poll_eq(self, eq: DriverEq) -> list[bytes]:
        """Consume new EQEs of one EQ (owner-bit protocol), update CI + arm via the UAR doorbell."""
        new = []
        while True:
            idx = eq.ci & ((1 << eq.log_size) - 1)
            eqe = self.mem.read(eq.buf + idx * 64, 64)
            if (eqe[0x3F] & 1) != ((eq.ci >> eq.log_size) & 1):
                break
            new.append(eqe)
            eq.ci += 1
        if new:
            self.wr32(self.uar * PAGE + 0x40, (eq.eqn << 24) | (eq.ci & 0xFFFFFF))
            eq.eqes += new
            for eqe in new:
                self._dispatch(eqe)
        return new

    def poll_eqs(self) -> None:
        for eq in list(self.eqs.values()):
            self.poll_eq(eq)

    def _dispatch(self, eqe: bytes) -> None:
        etype = EQE.get(eqe, "type")
        if etype == Event.CMD:
            vec = EQE.get(eqe, "cmd_vector")
            for slot in range(32):
                if not (vec >> slot) & 1:
                    continue
                if slot not in self.pending:
                    raise ContractViolation(f"CMD EQE for slot {slot}, which is not pending")
                if self.mem.read(self.cmdq + slot * 64 + 0x3F, 1)[0] & 1:
                    raise ContractViolation(f"CMD EQE for slot {slot} before ownership was returned")
                self.pending.discard(slot)
                self.done.add(slot)
        elif etype == Event.PORT_CHANGE:
            self.port_events.append(EQE.get(eqe, "sub_type"))
        elif etype == Event.COMP:
            self.comp_events.append(EQE.get(eqe, "comp_cqn") & 0xFFFFFF)

    # -- mlx5_core probe / teardown ---------------------------------------------------------
    def query_cap(self, cap: Cap, cur: bool = True) -> bytes:
        res = self.cmd(
            c.QUERY_HCA_CAP_IN,
            {},
            c.QUERY_HCA_CAP_OUT.size,
            opcode=Op.QUERY_HCA_CAP,
            op_mod=(cap << 1) | int(cur),
        )
        return res.out[0x10:]

    def access_reg(self, reg: Reg, data: bytes, size: int, write: bool = False, check: bool = True) -> Result:
        vals = {"register_id": reg}
        return self.cmd(
            c.ACCESS_REGISTER_IN,
            vals,
            0x10 + size,
            opcode=Op.ACCESS_REG,
            op_mod=0 if write else 1,
            extra=data.ljust(size, b"\0"),
            check=check,
        )

    def probe(self, num_comp_eqs: int = 2) -> None:
        """The commands of mlx5_core's probe, in the order of 6.1's ``main.c``.

        ``mlx5_function_enable`` (ENABLE_HCA, ``mlx5_core_set_issi``, boot pages), ``mlx5_function_open``
        (``set_hca_ctrl``: HOST_ENDIANNESS; ``handle_hca_cap``: QUERY_HCA_CAP cur then max, SET_HCA_CAP;
        init pages; INIT_HCA; ``mlx5_set_driver_version``; ``fw.c: mlx5_query_hca_caps``),
        ``mlx5_init_once`` (``fw.c: mlx5_query_board_id``: QUERY_ADAPTER) and ``mlx5_load`` (ALLOC_UAR;
        ``eq.c: create_async_eqs``: cmd EQ polled, then events mode for the async and pages EQs;
        ``create_comp_eqs``; ``fs_core.c: create_anchor_flow_table`` at level 54).
        """
        self.enable_cmdq()
        self.cmd(c.ENABLE_HCA_IN, {}, opcode=Op.ENABLE_HCA)
        issi = self.cmd(None, {}, c.QUERY_ISSI_OUT.size, opcode=Op.QUERY_ISSI)
        assert c.QUERY_ISSI_OUT.get(issi.out, "supported_issi_dw0") & 2
        self.cmd(c.SET_ISSI_IN, {"current_issi": 1}, opcode=Op.SET_ISSI)
        for boot in (1, 2):
            pages = self.cmd(c.QUERY_PAGES_IN, {}, 0x10, opcode=Op.QUERY_PAGES, op_mod=boot)
            assert c.QUERY_PAGES_OUT.get(pages.out, "num_pages") == 0
            self.cmd(c.MANAGE_PAGES_IN, {}, 0x10, opcode=Op.MANAGE_PAGES, op_mod=1, slot=31)
            if boot == 1:
                self.access_reg(Reg.HOST_ENDIANNESS, b"\0" * 16, 16, write=True)
                cur = self.query_cap(Cap.GENERAL, True)
                self.query_cap(Cap.GENERAL, False)
                setin = c.SET_HCA_CAP_IN.build()
                setin[0x10:0x1010] = cur[:0x1000]
                self.cmd_raw(setin, 16, opcode=Op.SET_HCA_CAP)
        self.cmd(c.INIT_HCA_IN, {}, opcode=Op.INIT_HCA)
        self.cmd(c.SET_DRIVER_VERSION_IN, {}, opcode=Op.SET_DRIVER_VERSION, extra=b"")
        self.caps = {t: self.query_cap(t) for t in (Cap.GENERAL, Cap.ETHERNET_OFFLOADS, Cap.FLOW_TABLE)}
        self.cmd(None, {}, c.QUERY_ADAPTER_OUT.size, opcode=Op.QUERY_ADAPTER)
        self.uar = self.id24(self.cmd(None, {}, 0x10, opcode=Op.ALLOC_UAR))
        # cmd EQ in polling mode, then switch to events
        self.cmd_eq = self.create_eq(1 << Event.CMD, 8, 0)
        self.events_mode = True
        self.create_eq(0x1F02BE, 13, 0)  # async
        self.create_eq(1 << Event.PAGE_REQUEST, 8, 0)  # pages
        self.comp_eqs = [self.create_eq(0, 11, 1 + i) for i in range(num_comp_eqs)]
        self.anchor = self.create_flow_table(level=54)

    def teardown(self) -> None:
        """6.1's ``main.c: mlx5_unload`` + ``mlx5_function_teardown``: EQs, polling, UAR, TEARDOWN, DISABLE.

        ``mlx5_fs_core_cleanup`` (anchor table), ``eq.c: mlx5_eq_table_destroy`` (completion EQs, then
        ``destroy_async_eqs``: pages and async EQs, ``mlx5_cmd_use_polling``, cmd EQ), ``mlx5_put_uars_page``
        (DEALLOC_UAR), ``fw.c: mlx5_cmd_teardown_hca``, ``mlx5_function_disable`` (DISABLE_HCA).
        """
        self.destroy_flow_table(self.anchor)
        for eq in list(self.eqs.values()):
            if eq is not self.cmd_eq:
                self.destroy_eq(eq)
        self.events_mode = False
        assert self.cmd_eq is not None
        self.destroy_eq(self.cmd_eq)
        self.cmd_eq = None
        self.cmd(c.DEALLOC_UAR_IN, {"uar": self.uar}, opcode=Op.DEALLOC_UAR)
        self.cmd(c.TEARDOWN_HCA_IN, {"profile": 0}, opcode=Op.TEARDOWN_HCA)
        self.cmd(c.DISABLE_HCA_IN, {}, opcode=Op.DISABLE_HCA)

    # -- object helpers ---------------------------------------------------------------------
    def create_flow_table(self, level: int, log_size: int = 0) -> int:
        vals = {"flow_table_context.level": level, "flow_table_context.log_size": log_size}
        return self.id24(self.cmd(c.CREATE_FLOW_TABLE_IN, vals, 0x10, opcode=Op.CREATE_FLOW_TABLE))

    def destroy_flow_table(self, tid: int) -> None:
        self.cmd(c.DESTROY_FLOW_TABLE_IN, {"table_id": tid}, opcode=Op.DESTROY_FLOW_TABLE)

    def id24(self, res: Result) -> int:
        return int.from_bytes(res.out[0x09:0x0C], "big")

    def create_cq(self, eqn: int, log_size: int = 6, arm: bool = True) -> tuple[int, int, int]:
        """Returns (cqn, buffer, doorbell record); armed at once as ``en_main.c: mlx5e_create_cq`` does."""
        nbytes = 64 << log_size
        buf = self.mem.alloc(nbytes, PAGE)
        self.mem.write(buf, bytes([0] * 63 + [0xF1]) * (1 << log_size))  # op_own = 0xf1 (en_main.c)
        dbr = self.mem.alloc(64, 64)
        pas = b"".join(be(buf + i * PAGE, 8) for i in range(-(-nbytes // PAGE)))
        vals = {
            "cq_context.log_cq_size": log_size,
            "cq_context.c_eqn_or_apu_element": eqn,
            "cq_context.uar_page": self.uar,
            "cq_context.dbr_addr": dbr,
        }
        res = self.cmd(c.CREATE_CQ_IN, vals, 0x10, opcode=Op.CREATE_CQ, extra=pas)
        cqn = self.id24(res)
        self.cq_rings[cqn] = DriverCq(cqn, log_size, buf, dbr)
        if arm:
            self.arm_cq(cqn)
        return cqn, buf, dbr

    def arm_cq(self, cqn: int) -> None:
        """``cq.h: mlx5_cq_arm``: the consumer index in the doorbell record and UAR + 0x20."""
        cq = self.cq_rings[cqn]
        self.mem.write(cq.dbr, be(cq.ci & 0xFFFFFF, 4))
        self.dev.mmio_write(self.uar * PAGE + 0x20, be(cq.ci & 0xFFFFFF, 4) + be(cqn, 4))

    def poll_cq(self, cqn: int) -> list[bytes]:
        """Take every valid CQE (owner bit of this lap), update the doorbell record (no re-arm)."""
        cq = self.cq_rings[cqn]
        out = []
        while True:
            addr = cq.buf + (cq.ci % (1 << cq.log_size)) * 64
            cqe = self.mem.read(addr, 64)
            if cqe[63] >> 4 == 0xF or (cqe[63] & 1) != (cq.ci >> cq.log_size) & 1:
                break
            out.append(cqe)
            cq.ci += 1
        self.mem.write(cq.dbr, be(cq.ci & 0xFFFFFF, 4))
        return out

    def _ring(self, log_stride: int, log_size: int) -> tuple[int, int, bytes]:
        nbytes = (1 << log_stride) << log_size
        buf = self.mem.alloc(nbytes, PAGE)
        dbr = self.mem.alloc(64, 64)
        pas = b"".join(be(buf + i * PAGE, 8) for i in range(-(-nbytes // PAGE)))
        return buf, dbr, pas

    def create_sq(self, cqn: int, tisn: int, log_size: int = 6) -> int:
        buf, dbr, pas = self._ring(6, log_size)
        vals = {
            "ctx.cqn": cqn,
            "ctx.tis_num_0": tisn,
            "ctx.tis_lst_sz": 1,
            "ctx.state": 0,
            "ctx.wq.wq_type": 1,
            "ctx.wq.log_wq_stride": 6,
            "ctx.wq.log_wq_sz": log_size,
            "ctx.wq.dbr_addr": dbr,
        }
        sqn = self.id24(self.cmd(c.CREATE_SQ_IN, vals, 0x10, opcode=Op.CREATE_SQ, extra=pas))
        self.cmd(c.MODIFY_SQ_IN, {"sqn": sqn, "sq_state": 0, "ctx.state": 1}, opcode=Op.MODIFY_SQ)
        self.sq_rings[sqn] = DriverSq(sqn, cqn, log_size, buf, dbr)
        return sqn

    def create_rq(self, cqn: int, ready: bool = True, log_size: int = 3, log_stride: int = 4,
                  counter: int = 0, vsd: bool = False) -> int:
        buf, dbr, pas = self._ring(log_stride, log_size)
        vals = {"ctx.cqn": cqn, "ctx.wq.wq_type": 1, "ctx.wq.log_wq_stride": log_stride,
                "ctx.wq.log_wq_sz": log_size, "ctx.wq.dbr_addr": dbr, "ctx.counter_set_id": counter,
                "ctx.vsd": int(vsd)}
        rqn = self.id24(self.cmd(c.CREATE_RQ_IN, vals, 0x10, opcode=Op.CREATE_RQ, extra=pas))
        if ready:
            self.cmd(c.MODIFY_RQ_IN, {"rqn": rqn, "rq_state": 0, "ctx.state": 1}, opcode=Op.MODIFY_RQ)
        self.rq_rings[rqn] = DriverRq(rqn, cqn, log_size, log_stride, buf, dbr)
        return rqn

    # -- data path (en_tx.c / en_rx.c shapes) -------------------------------------------------
    def post_send(self, sqn: int, frame: bytes, *, inline: int = 14, cs_flags: int = 0, lso_mss: int = 0,
                  signal: bool = True, ring: bool = True, lkey: int | None = None,
                  ds_override: int | None = None, vlan_tci: int | None = None) -> int:
        """Post one SEND (or LSO with ``lso_mss``) WQE like ``mlx5e_sq_xmit_wqe``; returns its index."""
        sq = self.sq_rings[sqn]
        pi = sq.pc
        opcode = 0x0E if lso_mss else 0x0A
        payload = frame[inline:]
        data = self.mem.alloc(max(len(payload), 1), 64)
        self.mem.write(data, payload)
        eth = bytearray(16)
        eth[4] = cs_flags
        eth[6:8] = be(lso_mss, 2)
        body = bytearray()
        if vlan_tci is not None and not inline:
            eth[12:14] = be(0x8000, 2)
            eth[14:16] = be(vlan_tci, 2)
        elif inline:
            eth[12:14] = be(inline, 2)
            eth[14:16] = frame[:2]
            rest = frame[2:inline]
            body += rest + bytes(-len(rest) % 16)
        if payload:
            body += be(len(payload), 4) + be(self.lkey if lkey is None else lkey, 4) + be(data, 8)
        ds = 2 + len(body) // 16 if ds_override is None else ds_override
        ctrl = be((pi << 8) | opcode, 4) + be((sqn << 8) | ds, 4) + bytes([0, 0, 0, 0x08 if signal else 0]) + bytes(4)
        wqe = ctrl + bytes(eth) + bytes(body)
        self._write_sq(sq, pi, wqe)
        sq.pc = (pi + max(1, -(-(2 + len(body) // 16) // 4))) & 0xFFFF
        if ring:
            self.sq_doorbell(sqn, pi, opcode)
        return pi

    def post_nop(self, sqn: int, ring: bool = True) -> int:
        """``en_txrx.c: mlx5e_trigger_irq``: a signalled NOP of one data segment."""
        sq = self.sq_rings[sqn]
        pi = sq.pc
        wqe = be(pi << 8, 4) + be((sqn << 8) | 1, 4) + bytes([0, 0, 0, 0x08]) + bytes(4)
        self._write_sq(sq, pi, wqe)
        sq.pc = (pi + 1) & 0xFFFF
        if ring:
            self.sq_doorbell(sqn, pi)
        return pi

    def _write_sq(self, sq: DriverSq, pi: int, wqe: bytes) -> None:
        for i in range(0, len(wqe), 64):
            slot = ((pi + i // 64) % (1 << sq.log_size)) * 64
            self.mem.write(sq.buf + slot, wqe[i : i + 64])

    def post_recv(self, rqn: int, count: int, size: int = 2048) -> list[int]:
        """``en_rx.c: mlx5e_alloc_rx_wqe``: ``count`` buffers of ``size`` bytes; the doorbell record last."""
        rq = self.rq_rings[rqn]
        addrs = []
        for _ in range(count):
            addr = self.mem.alloc(size, 64)
            nseg = (1 << rq.log_stride) // 16
            seg = be(size, 4) + be(self.lkey, 4) + be(addr, 8)
            segs = seg + (be(0, 4) + be(0x100, 4) + bytes(8)) * (nseg - 1)
            self.mem.write(rq.buf + (rq.pc % (1 << rq.log_size)) * (1 << rq.log_stride), segs)
            rq.buffers[rq.pc & 0xFFFF] = addr
            rq.pc = (rq.pc + 1) & 0xFFFF
            addrs.append(addr)
        self.mem.write(rq.dbr, be(rq.pc, 4))
        return addrs

    def received(self, rqn: int, cqe: bytes) -> bytes:
        """The frame a receive CQE describes (``wqe_counter`` names the buffer, ``byte_cnt`` its length)."""
        rq = self.rq_rings[rqn]
        index = int.from_bytes(cqe[0x3C:0x3E], "big")
        return self.mem.read(rq.buffers[index], int.from_bytes(cqe[0x2C:0x30], "big"))

    def wait_cqes(self, cqn: int, n: int = 1, timeout: float | None = None) -> list[bytes]:
        """Poll the CQ until ``n`` CQEs arrived (the device works on its own thread)."""
        end = time.monotonic() + (timeout or self.timeout)
        got: list[bytes] = []
        while len(got) < n:
            self.dev.wait_idle(0.5)
            got += self.poll_cq(cqn)
            if len(got) >= n:
                break
            if time.monotonic() > end:
                raise TimeoutError(f"{len(got)} of {n} CQEs on CQ {cqn:#x}")
            time.sleep(0.001)
        return got

    def create_rqt(self, rqns: list[int]) -> int:
        vals = {"rqt_context.rqt_max_size": len(rqns), "rqt_context.rqt_actual_size": len(rqns)}
        extra = b"".join(be(n, 4) for n in rqns)
        return self.id24(self.cmd(c.CREATE_RQT_IN, vals, 0x10, opcode=Op.CREATE_RQT, extra=extra))

    def sq_doorbell(self, sqn: int, wqe_index: int, opcode: int = 0) -> None:
        """mlx5e_notify_hw: one 64-bit write of the ctrl segment's first 8 bytes at UAR + 0x800."""
        self.dev.mmio_write(self.uar * PAGE + 0x800, be((wqe_index << 8) | opcode, 4) + be((sqn << 8) | 1, 4))

    # -- mlx5e ------------------------------------------------------------------------------
    def query_mac(self) -> bytes:
        res = self.cmd(
            c.QUERY_NIC_VPORT_CONTEXT_IN,
            {},
            c.QUERY_NIC_VPORT_CONTEXT_OUT.size,
            opcode=Op.QUERY_NIC_VPORT_CONTEXT,
        )
        return res.out[0x106:0x10C]

    def mlx5e_probe(self, nch: int = 1) -> None:
        """6.1's ``en_main.c: mlx5e_probe`` up to ``register_netdev``, with a TTC-like steering tree.

        ``mlx5e_build_nic_netdev`` (``mlx5e_set_netdev_dev_addr``: QUERY_NIC_VPORT_CONTEXT for the MAC),
        ``mlx5e_resume``: ``en_common.c: mlx5e_create_mdev_resources`` (PD, transport domain, mkey), then
        ``mlx5e_attach_netdev``: ``mlx5e_init_nic_tx`` (8 TISes), ``mlx5e_init_nic_rx`` (Q counters, drop
        RQ, RQTs and TIRs, flow steering), ``mlx5e_nic_enable`` (PAOS down; ``mlx5e_set_netdev_mtu_boundaries``:
        PMTU read; ``mlx5e_set_dev_port_mtu``: PMTU write, vport MTU set and read back).
        """
        self.mac = self.query_mac()
        self.pd = self.id24(self.cmd(None, {}, 0x10, opcode=Op.ALLOC_PD))
        self.td = self.id24(self.cmd(None, {}, 0x10, opcode=Op.ALLOC_TRANSPORT_DOMAIN))
        self.mkey = self.id24(self.cmd(c.CREATE_MKEY_IN, {  # en_common.c: mlx5e_create_mkey
            "memory_key_mkey_entry.lw": 1, "memory_key_mkey_entry.lr": 1, "memory_key_mkey_entry.length64": 1,
            "memory_key_mkey_entry.pd": self.pd, "memory_key_mkey_entry.qpn": 0xFFFFFF,
            "memory_key_mkey_entry.mkey_7_0": 0x5A}, 0x10, opcode=Op.CREATE_MKEY))
        self.lkey = (self.mkey << 8) | 0x5A
        self.tises = [self.id24(self.cmd(c.CREATE_TIS_IN, {}, 0x10, opcode=Op.CREATE_TIS)) for _ in range(8)]
        self.q_counters = [self.cmd(None, {}, 0x10, opcode=Op.ALLOC_Q_COUNTER).out[0x0B] for _ in range(2)]
        self.drop_cq = self.create_cq(self.comp_eqs[0].eqn)[0]
        self.drop_rq = self.create_rq(self.drop_cq)
        self.rqts = [self.create_rqt([self.drop_rq] * 256)] + [
            self.create_rqt([self.drop_rq]) for _ in range(nch)
        ]
        self.tirs = [
            self.id24(self.cmd(c.CREATE_TIR_IN, {}, 0x10, opcode=Op.CREATE_TIR)) for _ in range(10 + nch)
        ]
        self.ttc = self.create_flow_table(level=8, log_size=4)
        grp = self.cmd(
            c.CREATE_FLOW_GROUP_IN,
            {"table_id": self.ttc, "start_flow_index": 0, "end_flow_index": 15},
            0x10,
            opcode=Op.CREATE_FLOW_GROUP,
        )
        self.ttc_group = self.id24(grp)
        for i in range(3):
            self.cmd(c.SET_FTE_IN, {"table_id": self.ttc, "flow_index": i}, opcode=Op.SET_FLOW_TABLE_ENTRY)
        self.cmd(c.SET_FLOW_TABLE_ROOT_IN, {"table_id": self.ttc}, opcode=Op.SET_FLOW_TABLE_ROOT)
        self.cmd(c.MODIFY_FLOW_TABLE_IN, {"table_id": self.anchor}, opcode=Op.MODIFY_FLOW_TABLE)
        self.access_reg(Reg.PAOS, b"\x00\x01\x02\x00\x80\x00\x00\x00", 16, write=True)  # admin down, ase
        pmtu = self.access_reg(Reg.PMTU, b"\x00\x01", 16).out[0x10:]
        self.max_mtu = int.from_bytes(pmtu[4:6], "big")
        self.access_reg(Reg.PMTU, b"\x00\x01\x00\x00\x00\x00\x00\x00" + be(1522 << 16, 4), 16, write=True)
        self.cmd(
            c.MODIFY_NIC_VPORT_CONTEXT_IN,
            {"field_select.mtu": 1, "nic_vport_context.mtu": 1522},
            opcode=Op.MODIFY_NIC_VPORT_CONTEXT,
        )
        res = self.cmd(
            c.QUERY_NIC_VPORT_CONTEXT_IN,
            {},
            c.QUERY_NIC_VPORT_CONTEXT_OUT.size,
            opcode=Op.QUERY_NIC_VPORT_CONTEXT,
        )
        self.hw_mtu = int.from_bytes(res.out[0x36:0x38], "big")

    def ifup(self) -> None:
        """6.1's ``en_main.c: mlx5e_open`` for one channel, then the async-ICOSQ NOP that schedules NAPI.

        ``mlx5e_open_channel`` -> ``mlx5e_open_queues`` (5 CQs; async ICOSQ, ICOSQ, TX and XDP-redirect SQs;
        RQ), ``mlx5e_update_nic_rx`` (MODIFY_TIR), RQTs pointed at the channel, ``mlx5e_update_carrier``
        (QUERY_VPORT_STATE), PAOS up. The order is simplified: the driver posts the NOP
        (``en_txrx.c: mlx5e_trigger_irq`` from ``mlx5e_activate_channel``) before it switches the RQTs
        (``mlx5e_activate_priv_channels``) and queries the carrier.
        """
        eqn = self.comp_eqs[0].eqn
        self.cqs = [self.create_cq(eqn) for _ in range(5)]
        self.sqs = [self.create_sq(cqn, self.tises[0]) for cqn, _b, _d in self.cqs[:4]]
        self.rq = self.create_rq(self.cqs[4][0], counter=self.q_counters[0])
        for tirn in self.tirs:
            self.cmd(c.MODIFY_TIR_IN, {"tirn": tirn}, opcode=Op.MODIFY_TIR)
        for rqtn in self.rqts:
            self.cmd(
                c.MODIFY_RQT_IN,
                {"rqtn": rqtn, "bitmask": 1, "ctx.rqt_actual_size": 1},
                opcode=Op.MODIFY_RQT,
                extra=be(self.rq, 4),
            )
        state = self.cmd(c.QUERY_VPORT_STATE_IN, {}, 0x10, opcode=Op.QUERY_VPORT_STATE)
        self.carrier_at_open = state.out[0x0F] & 0xF
        self.access_reg(Reg.PAOS, b"\x00\x01\x01\x00\x80\x00\x00\x00", 16, write=True)  # admin up, ase
        self.nop(0)

    def nop(self, pc: int) -> bytes:
        """Post a NOP at ``pc`` on the async ICOSQ and wait for its CQE and COMP EQE; returns the CQE."""
        cqn, buf, _dbr = self.cqs[0]
        seen = len(self.comp_events)
        self.sq_rings[self.sqs[0]].pc = pc
        self.post_nop(self.sqs[0])
        end = time.monotonic() + self.timeout
        while len(self.comp_events) == seen:
            if time.monotonic() > end:
                raise TimeoutError("no COMP EQE for the NOP")
            self.poll_eqs()
            time.sleep(0.0005)
        assert self.comp_events[-1] == cqn
        cqe = self.mem.read(buf + (pc % 64) * 64, 64)
        self.cq_rings[cqn].ci = pc + 1  # consumed, then re-armed as mlx5e_napi_poll does
        self.arm_cq(cqn)
        return cqe

    def ifdown_and_remove(self) -> None:
        """6.1's ``en_main.c: mlx5e_close`` + ``mlx5e_remove`` cleanup, every object destroyed in reverse.

        ``mlx5e_close`` (PAOS down, ``mlx5e_close_channels``), then ``mlx5e_suspend`` ->
        ``mlx5e_detach_netdev`` (``mlx5e_cleanup_nic_rx``: flow steering, TIRs, RQTs, drop RQ, Q counters;
        ``mlx5e_cleanup_nic_tx``: TISes) and ``en_common.c: mlx5e_destroy_mdev_resources`` (mkey, TD, PD).
        """
        self.access_reg(Reg.PAOS, b"\x00\x01\x02\x00\x80\x00\x00\x00", 16, write=True)
        self.cmd(c.DESTROY_RQ_IN, {"rqn": self.rq}, opcode=Op.DESTROY_RQ)
        for sqn in self.sqs:
            self.cmd(c.DESTROY_SQ_IN, {"sqn": sqn}, opcode=Op.DESTROY_SQ)
        for cqn, _b, _d in self.cqs:
            self.cmd(c.DESTROY_CQ_IN, {"cqn": cqn}, opcode=Op.DESTROY_CQ)
        for i in range(3):
            self.cmd(
                c.DELETE_FTE_IN, {"table_id": self.ttc, "flow_index": i}, opcode=Op.DELETE_FLOW_TABLE_ENTRY
            )
        self.cmd(
            c.DESTROY_FLOW_GROUP_IN,
            {"table_id": self.ttc, "group_id": self.ttc_group},
            opcode=Op.DESTROY_FLOW_GROUP,
        )
        self.destroy_flow_table(self.ttc)
        for tirn in self.tirs:
            self.cmd(c.DESTROY_TIR_IN, {"tirn": tirn}, opcode=Op.DESTROY_TIR)
        for rqtn in self.rqts:
            self.cmd(c.DESTROY_RQT_IN, {"rqtn": rqtn}, opcode=Op.DESTROY_RQT)
        self.cmd(c.DESTROY_RQ_IN, {"rqn": self.drop_rq}, opcode=Op.DESTROY_RQ)
        self.cmd(c.DESTROY_CQ_IN, {"cqn": self.drop_cq}, opcode=Op.DESTROY_CQ)
        for qc in self.q_counters:
            self.cmd(c.DEALLOC_Q_COUNTER_IN, {"counter_set_id": qc}, opcode=Op.DEALLOC_Q_COUNTER)
        for tisn in self.tises:
            self.cmd(c.DESTROY_TIS_IN, {"tisn": tisn}, opcode=Op.DESTROY_TIS)
        self.cmd(c.DESTROY_MKEY_IN, {"mkey_index": self.mkey}, opcode=Op.DESTROY_MKEY)
        self.cmd(
            c.DEALLOC_TRANSPORT_DOMAIN_IN, {"transport_domain": self.td}, opcode=Op.DEALLOC_TRANSPORT_DOMAIN
        )
        self.cmd(c.DEALLOC_PD_IN, {"pd": self.pd}, opcode=Op.DEALLOC_PD)

    def ptys(self) -> bytes:
        return self.access_reg(Reg.PTYS, b"\x00\x01\x00\x04", 0x40).out[0x10:0x50]


def make_device(**cfg) -> tuple[Mlx5Function, FakeGuestMemory, FakeIrq, TestDriver]:
    from mlx5dev.mlx5 import FunctionConfig

    mem, irq = FakeGuestMemory(), FakeIrq()
    trace = cfg.pop("trace", None)
    dev = Mlx5Function(FunctionConfig(**cfg), mem, irq, trace)
    return dev, mem, irq, TestDriver(dev, mem, irq)
