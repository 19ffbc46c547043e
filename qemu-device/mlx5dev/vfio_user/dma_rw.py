"""Payloads of the server-to-client DMA_READ / DMA_WRITE messages.

The spec and QEMU 10.2's client disagree on the layout:

* spec: ``address u64, count u64, data`` (data at payload offset 16);
* QEMU (``VFIOUserDMARW``): ``offset u64, count u32, data`` (data at payload offset 12), and it
  checks the message size against ``sizeof(VFIOUserDMARW) + count``, i.e. 4 bytes of struct padding
  are counted after the data. Its DMA_WRITE reply is a bare header.

``QEMU`` is the default, checked against QEMU 10.2.2 (tests/unit/test_vfio_user_qemu.py: a 64 KiB
ROM read through DMA_READ matches byte for byte; a DMA_WRITE shows up in the guest's memory).
``SPEC`` exists for spec-conforming clients.
"""

from __future__ import annotations

import enum
import struct

from .protocol import DMA_ACCESS, DMA_ACCESS_PADDED, DmaAccess

_SPEC = struct.Struct("<QQ")
_PAD = bytes(DMA_ACCESS_PADDED - DMA_ACCESS.size)


class DmaRwLayout(enum.Enum):
    QEMU = "qemu"
    SPEC = "spec"


def encode_read_request(layout: DmaRwLayout, addr: int, count: int) -> bytes:
    if layout is DmaRwLayout.QEMU:
        return DMA_ACCESS.pack(DmaAccess(addr, count)) + _PAD
    return _SPEC.pack(addr, count)


def encode_write_request(layout: DmaRwLayout, addr: int, data: bytes) -> bytes:
    if layout is DmaRwLayout.QEMU:
        return DMA_ACCESS.pack(DmaAccess(addr, len(data))) + data + _PAD
    return _SPEC.pack(addr, len(data)) + data


def decode_read_reply(layout: DmaRwLayout, payload: bytes, addr: int, count: int) -> bytes:
    """The data of a DMA_READ reply; ValueError if it does not answer ``(addr, count)``."""
    if layout is DmaRwLayout.QEMU:
        fixed = DMA_ACCESS.size
        if len(payload) < fixed:
            raise ValueError(f"DMA_READ reply payload of {len(payload)} bytes")
        r_addr, r_count = DMA_ACCESS.unpack(payload)
    else:
        fixed = _SPEC.size
        if len(payload) < fixed:
            raise ValueError(f"DMA_READ reply payload of {len(payload)} bytes")
        r_addr, r_count = _SPEC.unpack_from(payload)
    if r_addr != addr or r_count != count:
        raise ValueError(f"DMA_READ reply for {r_addr:#x}+{r_count:#x}, asked {addr:#x}+{count:#x}")
    if len(payload) < fixed + count:
        raise ValueError(f"DMA_READ reply carries {len(payload) - fixed} of {count} bytes")
    return payload[fixed : fixed + count]
