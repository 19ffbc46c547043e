"""PMLP (0x5002) and MCIA (0x9014): the port's module and its EEPROM, behind ``ethtool -m``.

``en_ethtool.c: mlx5e_get_module_info`` / ``mlx5e_get_module_eeprom_by_page`` -> ``port.c:
mlx5_query_module_eeprom_by_page``: PMLP gives the module number of the port's lane 0
(``mlx5_query_module_num``), then MCIA reads up to 12 dwords of the module's EEPROM at an I2C address
(0x50 low, 0x51 high), page and offset (``mlx5_query_mcia``; 48 bytes without the MCAM ``mcia_32dwords``
feature, which this card does not advertise). The module is a QSFP28 direct-attach copper cable (SFF-8636),
with the fields ``ethtool -m`` decodes from page 00h.
"""

from __future__ import annotations

from ..consts import Reg
from ..errors import bad_param
from ..ifc.regs import MCIA, PMLP
from . import RegCtx, register
from .ptys import check_port

I2C_LOW, I2C_HIGH = 0x50, 0x51  # port.c: MLX5_I2C_ADDR_LOW / MLX5_I2C_ADDR_HIGH
MCIA_MAX = 48  # port.c: mlx5_mcia_max_bytes without mcia_32dwords
STATUS_BAD_PARAM = 0x3  # MCIA status: the module cannot be read there (the driver logs it and fails -EIO)


def _ascii(text: str, n: int) -> bytes:
    return text.encode("ascii")[:n].ljust(n, b" ")


def qsfp28_page0(module: int) -> bytes:
    """256 bytes: lower memory and upper page 00h of a QSFP28 copper cable (SFF-8636 rev 2.x layout)."""
    mem = bytearray(256)
    mem[0] = 0x11  # identifier: QSFP28
    mem[1] = 0x07  # revision compliance: SFF-8636 rev 2.5-2.8
    mem[2] = 0x04  # flat memory (passive copper: no upper pages beyond 00h)
    mem[128] = 0x11
    mem[130] = 0x23  # connector: no separable connector (DAC)
    mem[131] = 0x08  # 40GBASE-CR4 (ethernet compliance) ...
    mem[192] = 0x0B  # ... extended compliance: 100GBASE-CR4
    mem[146] = 1  # copper length: 1 m
    mem[148:164] = _ascii("MLX5LAB", 16)  # vendor name
    mem[165:168] = bytes([0x00, 0x02, 0xC9])  # vendor OUI (Mellanox)
    mem[168:184] = _ascii("MCP1600-C001", 16)  # part number
    mem[184:186] = _ascii("A2", 2)
    mem[196:212] = _ascii(f"MT0000000{module:02d}", 16)  # serial number
    mem[212:220] = _ascii("261202", 8)  # date code YYMMDD
    return bytes(mem)


@register(Reg.PMLP, PMLP)
def pmlp(rc: RegCtx) -> None:
    check_port(rc)
    if rc.write:
        raise bad_param("PMLP: lane mapping is fixed on this card")
    rc.out[:] = bytes(len(rc.out))
    rc.put("local_port", 1)
    rc.put("width", 4)
    rc.put("lane0_module_mapping", rc.dev.config.function_index & 0xFF)  # module = the port's own cage


@register(Reg.MCIA, MCIA)
def mcia(rc: RegCtx) -> None:
    if rc.write:
        raise bad_param("MCIA: the module EEPROM is read-only here")
    module, i2c, page = rc.get("module"), rc.get("i2c_device_address"), rc.get("page_number")
    offset, size = rc.get("device_address"), min(rc.get("size"), MCIA_MAX)
    data = b""
    status = 0
    if module != (rc.dev.config.function_index & 0xFF) or i2c != I2C_LOW or page != 0 or offset + size > 256:
        status = STATUS_BAD_PARAM
        rc.note = f"module {module} i2c {i2c:#x} page {page} offset {offset}: not readable"
    else:
        data = qsfp28_page0(module)[offset : offset + size]
    rc.out[:] = bytes(len(rc.out))
    for name in ("module", "i2c_device_address", "page_number", "device_address"):
        rc.put(name, rc.get(name))
    rc.put("size", size)
    rc.put("status", status)
    base = MCIA.field("dwords").byte
    rc.out[base : base + len(data)] = data
