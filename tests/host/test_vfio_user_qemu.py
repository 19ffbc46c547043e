"""Against the real client: QEMU 10.2's ``vfio-user-pci`` attaches to the server (no guest kernel).

QEMU connects at start-up (VERSION, DMA maps, region/IRQ info, config space reads, DEVICE_RESET).
A 64 KiB "BIOS" made here then programs the root port's bus numbers and sets bus mastering on the
function (QEMU refuses DMA otherwise), so message-based DMA (DMA_READ/DMA_WRITE) can be checked
against what QEMU itself sees. Needs the QEMU that `make setup` builds (the ``qemu`` fixture).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlx5dev.pci import PciFunction, PciFunctionConfig, RegisterFileBar
from mlx5dev.vfio_user import VfioUserServer
from mlx5lab.vm.qemu import machine_args


def _cf8(bus: int, dev: int, fn: int, reg: int) -> int:
    return 0x80000000 | (bus << 16) | (dev << 11) | (fn << 8) | reg


def _config_write32(addr: int, value: int) -> bytes:
    # 16-bit real mode: mov eax, addr; mov dx, 0xcf8; out dx, eax; mov eax, value; mov dx, 0xcfc; out dx, eax
    return (
        b"\x66\xb8" + struct.pack("<I", addr) + b"\xba\xf8\x0c\x66\xef"
        + b"\x66\xb8" + struct.pack("<I", value) + b"\xba\xfc\x0c\x66\xef"
    )  # fmt: skip


def bus_master_rom(root_port_slot: int) -> bytes:
    """Firmware that puts the function (behind the root port) on bus 1 with bus mastering, then halts."""
    code = b"\xfa"  # cli
    code += _config_write32(
        _cf8(0, root_port_slot, 0, 0x18), 0x00010100
    )  # primary 0, secondary 1, subordinate 1
    code += _config_write32(_cf8(0, root_port_slot, 0, 0x04), 0x0006)  # root port: memory + bus master
    code += _config_write32(_cf8(1, 0, 0, 0x04), 0x0006)  # the function: memory + bus master
    code += b"\xf4\xeb\xfd"  # hlt; jmp back to hlt
    rom = bytearray(code.ljust(0x10000, b"\xff"))
    rom[0xFFF0:0xFFF3] = b"\xe9\x0d\x00"  # reset vector: jmp 0x0000 (IP wraps at 64 KiB)
    return bytes(rom)


class Qmp:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.f = self.sock.makefile("rw")
        self.f.readline()
        self.cmd("qmp_capabilities")

    def cmd(self, name: str, **args: object) -> object:
        self.f.write(json.dumps({"execute": name, **({"arguments": args} if args else {})}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "error" in r:
                raise RuntimeError(r["error"])
            if "return" in r:
                return r["return"]

    def hmp(self, line: str) -> str:
        return str(self.cmd("human-monitor-command", **{"command-line": line}))

    def close(self) -> None:
        self.f.close()
        self.sock.close()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Run:
    def __init__(
        self, server: VfioUserServer, bar: RegisterFileBar, qmp: Qmp, rom: bytes, log: Path, records: Records
    ) -> None:
        self.server, self.bar, self.qmp, self.rom, self.log = server, bar, qmp, rom, log
        self.records = records.records


def wait_for(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture(params=["memfd-share", "plain-ram"])
def qemu_run(request: pytest.FixtureRequest, qemu: Path, tmp_path: Path) -> Iterator[Run]:
    cfg = PciFunctionConfig()
    bar = RegisterFileBar(cfg.bar0_size)
    sock, qmp_path, log = tmp_path / "vfu.sock", tmp_path / "qmp.sock", tmp_path / "qemu.log"
    rom = bus_master_rom(root_port_slot=1)
    (tmp_path / "bm.rom").write_bytes(rom)
    records = Records()
    logger = logging.getLogger("mlx5dev")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(records)
    server = VfioUserServer(sock, lambda mem, irq: PciFunction(cfg, bar))
    thread = server.serve_in_thread(forever=False)
    device = {"driver": "vfio-user-pci", "socket": {"path": str(sock), "type": "unix"}, "bus": "rp0"}
    args = [
        *machine_args(qemu, accel="tcg", memory_mb=1024, shared_memory=request.param == "memfd-share",
                      bios=tmp_path / "bm.rom"),
        "-device", "pcie-root-port,id=rp0,chassis=1", "-device", json.dumps(device),
        "-S", "-qmp", f"unix:{qmp_path},server=on,wait=off",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    qmp = None
    try:
        wait_for(lambda: qmp_path.exists() or proc.poll() is not None)
        assert proc.poll() is None, log.read_text()
        qmp = Qmp(qmp_path)
        yield Run(server, bar, qmp, rom, log, records)
    finally:
        if qmp is not None:
            qmp.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        thread.join(10)
        server.close()
        logger.removeHandler(records)
        logger.setLevel(old_level)
        assert not thread.is_alive()


def test_qemu_attaches_and_message_dma_works(qemu_run: Run) -> None:
    r = qemu_run
    # Start-up handshake: QEMU has mapped guest memory and reset the device.
    wait_for(lambda: len(r.server.dma_table) >= 3 and r.bar.resets >= 1)
    r.qmp.cmd("cont")  # run the ROM: bus numbers, then bus mastering on our function
    wait_for(lambda: r.server.device.config_space.get(0x04, 2) == 0x0006)  # type: ignore[attr-defined]

    # QEMU's view of the function, built from our config space and region info.
    bus0 = r.qmp.cmd("query-pci")[0]["devices"]  # type: ignore[index]
    rp = next(d for d in bus0 if d.get("qdev_id") == "rp0")
    assert rp["slot"] == 1, "the ROM assumes the root port at 00:01.0"
    (fn,) = rp["pci_bridge"]["devices"]
    assert (fn["id"]["vendor"], fn["id"]["device"]) == (0x15B3, 0x1017)
    assert fn["class_info"]["class"] == 0x0200
    (bar0,) = [b for b in fn["regions"] if b["bar"] == 0]
    assert bar0["size"] == 32 << 20 and bar0["mem_type_64"] and bar0["prefetch"]

    mem = r.server.memory
    # The ROM window is never fd-backed: this goes through DMA_READ messages.
    assert mem.read(0xFFFF0000, 0x10000) == r.rom
    # Guest RAM: mmap of the memfd, or DMA_WRITE/DMA_READ messages without share=on.
    mem.write(0x2000, b"MLX5LAB!")
    assert "'M' 'L' 'X' '5' 'L' 'A' 'B' '!'" in r.qmp.hmp("xp /8cb 0x2000")
    data = os.urandom(300 << 10)  # several DMA chunks
    mem.write(0x300000, data)
    assert mem.read(0x300000, len(data)) == data

    qemu_errors = [ln for ln in r.log.read_text().splitlines() if "terminating on signal" not in ln]
    assert qemu_errors == []
    assert [rec.getMessage() for rec in r.records if rec.levelno >= logging.WARNING] == []
    assert any("negotiated vfio-user 0.0" in rec.getMessage() for rec in r.records)
