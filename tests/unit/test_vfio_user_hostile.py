"""Hostile clients: garbled, truncated, oversize and fd-stuffed messages.

The server must answer each request (error or not), or drop the connection when the stream cannot
be resynchronised, and always stay alive for the next client, without leaking fds or allocating
what a size field claims.
"""

from __future__ import annotations

import os
import socket
import struct
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlx5dev.pci import PciFunction, PciFunctionConfig, RegisterFileBar
from mlx5dev.vfio_user import VfioUserServer
from mlx5dev.vfio_user.protocol import (
    DEVICE_INFO,
    FLAG_ERROR,
    HEADER,
    HEADER_SIZE,
    MAX_PAYLOAD,
    REGION_ACCESS,
    TYPE_REPLY,
    Command,
    DeviceInfo,
    Header,
    RegionAccess,
    encode_message,
)

from .test_vfio_user_client import QEMU_CAPS, ServerClosed, VfioUserClient, open_fds, recv_message

PROBE_ID = 0xBEEF
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)
U64 = st.integers(0, (1 << 64) - 1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VfioUserServer]:
    path = tmp_path_factory.mktemp("hostile") / "vfu.sock"
    cfg = PciFunctionConfig()
    srv = VfioUserServer(path, lambda mem, irq: PciFunction(cfg, RegisterFileBar(cfg.bar0_size)))
    thread = srv.serve_in_thread()
    yield srv
    srv.close()
    thread.join(5)
    assert not thread.is_alive()


def connect(server: VfioUserServer) -> VfioUserClient:
    assert server.socket_path is not None
    return VfioUserClient.connect(server.socket_path)


def wait_idle(server: VfioUserServer, baseline: set[int], timeout: float = 5.0) -> None:
    """Wait until the server dropped the last client's state and its fds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(server.dma_table) == 0 and not server.interrupts.assigned() and open_fds() <= baseline:
            return
        time.sleep(0.005)
    raise AssertionError(f"server kept state or fds: {sorted(open_fds() - baseline)}")


def well_formed_client_works(server: VfioUserServer) -> None:
    c = connect(server)
    try:
        c.version()
        assert c.region_read(7, 0, 4) == struct.pack("<HH", 0x15B3, 0x1017)
    finally:
        c.close()


def read_until_eof(sock: socket.socket) -> list[tuple[Header, bytes]]:
    """Every message the server sends until it closes; fails on a hang (socket timeout)."""
    out = []
    while True:
        try:
            m = recv_message(sock)
        except ServerClosed:
            return out
        except ConnectionResetError:
            return out
        for fd in m.fds:
            os.close(fd)
        out.append((m.header, m.payload))


# --- strategies -------------------------------------------------------------------------------------


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """A known command with a plausibly sized but randomly filled payload."""
    command = draw(st.sampled_from(list(Command)))
    fixed = {
        Command.VERSION: st.binary(max_size=8).map(lambda b: b"\0\0\0\0" + b),
        Command.DMA_MAP: st.tuples(U32, U32, U64, U64, U64).map(lambda t: struct.pack("<IIQQQ", *t)),
        Command.DMA_UNMAP: st.tuples(U32, U32, U64, U64).map(lambda t: struct.pack("<IIQQ", *t)),
        Command.DEVICE_GET_INFO: st.tuples(U32, U32, U32, U32).map(lambda t: struct.pack("<IIII", *t)),
        Command.DEVICE_GET_REGION_INFO: st.tuples(U32, U32, st.integers(0, 12), U32, U64, U64).map(
            lambda t: struct.pack("<IIIIQQ", *t)
        ),
        Command.DEVICE_GET_IRQ_INFO: st.tuples(U32, U32, st.integers(0, 8), U32).map(
            lambda t: struct.pack("<IIII", *t)
        ),
        Command.DEVICE_SET_IRQS: st.tuples(
            st.integers(20, 64),
            st.integers(0, 0x7F),
            st.integers(0, 5),
            st.integers(0, 20) | U32,
            st.integers(0, 20) | U32,
        ).map(lambda t: struct.pack("<IIIII", *t)),
        Command.REGION_READ: st.tuples(
            st.integers(0, 1 << 26) | U64, st.integers(0, 9), st.integers(0, 64) | U32
        ).map(lambda t: struct.pack("<QII", *t)),
        Command.REGION_WRITE: st.tuples(
            st.integers(0, 1 << 26) | U64, st.integers(0, 9), st.integers(0, 8)
        ).map(lambda t: struct.pack("<QII", *t) + bytes(t[2])),
    }.get(command, st.binary(max_size=32))
    payload = draw(fixed) + draw(st.binary(max_size=4))
    flags = draw(st.sampled_from([0, 0, 0, 0x10, 0x1, 0x20, 0x2]) | U32)
    return encode_message(draw(U16), command, flags, payload)


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """Any header fields and payload, but a size field that frames the message correctly."""
    payload = draw(st.binary(max_size=300))
    return encode_message(draw(U16), draw(st.integers(0, 20) | U16), draw(U32), payload, draw(U32))


@st.composite
def misframed(draw: st.DrawFn) -> bytes:
    """A header whose size disagrees with what follows, or raw bytes."""
    if draw(st.booleans()):
        return draw(st.binary(min_size=1, max_size=200))
    size = draw(st.integers(0, 15) | st.integers(16, 400) | st.integers(MAX_PAYLOAD, 0xFFFFFFFF))
    hdr = HEADER.pack(Header(draw(U16), draw(st.integers(0, 20)), size, draw(U32), 0))
    return hdr + draw(st.binary(max_size=300))


FD_KINDS = st.lists(st.sampled_from(["eventfd", "memfd", "pipe"]), max_size=3)


def make_fd(kind: str) -> int:
    if kind == "eventfd":
        return os.eventfd(0, os.EFD_NONBLOCK)
    if kind == "memfd":
        fd = os.memfd_create("hostile")
        os.ftruncate(fd, 1 << 16)
        return fd
    r, w = os.pipe()
    os.close(r)
    return w


def send_with_fds(client: VfioUserClient, data: bytes, kinds: list[str]) -> None:
    fds = [make_fd(k) for k in kinds]
    try:
        client.send_raw(data, fds)
    finally:
        for fd in fds:
            os.close(fd)


PROBE = encode_message(PROBE_ID, Command.DEVICE_GET_INFO, 0, DEVICE_INFO.pack(DeviceInfo(16, 0, 0, 0)))
SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def check_replies(replies: list[tuple[Header, bytes]]) -> None:
    for hdr, payload in replies:
        assert hdr.flags & 0xF == TYPE_REPLY, hdr
        assert hdr.size == HEADER_SIZE + len(payload)
        if hdr.flags & FLAG_ERROR:
            assert payload == b"", "error replies carry only the header"


@SETTINGS
@given(
    negotiate=st.booleans(),
    messages=st.lists(st.tuples(structured() | framed_garbage(), FD_KINDS), min_size=1, max_size=6),
)
def test_well_framed_garbage_is_answered_and_stream_stays_in_sync(
    server: VfioUserServer, negotiate: bool, messages: list[tuple[bytes, list[str]]]
) -> None:
    baseline = open_fds()
    c = connect(server)
    try:
        if negotiate:
            c.version()
        for data, kinds in messages:
            send_with_fds(c, data, kinds)
        c.send_raw(PROBE)
        c.sock.shutdown(socket.SHUT_WR)
        replies = read_until_eof(c.sock)
    finally:
        c.close()
    check_replies(replies)
    assert any(h.id == PROBE_ID and h.command == Command.DEVICE_GET_INFO for h, _ in replies), (
        "the probe after well-framed garbage must be answered"
    )
    wait_idle(server, baseline)


@SETTINGS
@given(
    negotiate=st.booleans(),
    messages=st.lists(
        st.tuples(structured() | framed_garbage() | misframed(), FD_KINDS), min_size=1, max_size=6
    ),
)
def test_any_garbage_is_answered_or_disconnected_and_server_survives(
    server: VfioUserServer, negotiate: bool, messages: list[tuple[bytes, list[str]]]
) -> None:
    baseline = open_fds()
    served_before = server.clients_served
    c = connect(server)
    try:
        if negotiate:
            c.version(QEMU_CAPS)
        for data, kinds in messages:
            try:
                send_with_fds(c, data, kinds)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server already hung up on a corrupt stream
        try:
            c.send_raw(PROBE)
            c.sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        replies = read_until_eof(c.sock)  # a hang fails here with a socket timeout
    finally:
        c.close()
    check_replies(replies)
    wait_idle(server, baseline)
    assert server.clients_served == served_before + 1  # this session ran to its end on a live server


def test_server_alive_after_hostile_runs(server: VfioUserServer) -> None:
    well_formed_client_works(server)


# --- sizes -----------------------------------------------------------------------------------------------


def test_header_smaller_than_a_header_disconnects(server: VfioUserServer) -> None:
    c = connect(server)
    c.send_raw(HEADER.pack(Header(1, Command.DEVICE_GET_INFO, 8, 0, 0)))
    assert read_until_eof(c.sock) == []
    c.close()
    well_formed_client_works(server)


def test_huge_size_field_does_not_allocate(server: VfioUserServer) -> None:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        c = connect(server)
        c.version()
        c.send_raw(HEADER.pack(Header(1, Command.REGION_WRITE, 0xFFFFFFFF, 0, 0)) + b"\0" * 4096)
        time.sleep(0.1)
        c.sock.shutdown(socket.SHUT_WR)
        assert read_until_eof(c.sock) == []  # EOF in the middle of the message: disconnect
        c.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak allocation {peak} bytes"
    well_formed_client_works(server)


def test_complete_oversize_message_is_drained_and_refused(server: VfioUserServer) -> None:
    c = connect(server)
    try:
        c.version()
        big = 2 << 20
        payload = REGION_ACCESS.pack(RegionAccess(0, 0, big)) + bytes(big)
        reply_id = c.send(Command.REGION_WRITE, payload)
        reply = c.wait_reply(reply_id)
        assert reply.header.flags & FLAG_ERROR and reply.header.error == 7  # E2BIG
        assert c.region_read(7, 0, 2) == b"\xb3\x15"  # still in sync
        c.send(Command.REGION_WRITE, payload, flags=0x10)  # posted: drained, no reply at all
        assert c.region_read(7, 0, 2) == b"\xb3\x15"
    finally:
        c.close()


def test_too_many_fds_refused_and_closed(server: VfioUserServer) -> None:
    baseline = open_fds()
    c = connect(server)
    try:
        c.version()
        fds = [os.eventfd(0) for _ in range(20)]
        try:
            from mlx5dev.vfio_user.protocol import IRQ_SET, IrqSet

            msg = encode_message(9, Command.DEVICE_SET_IRQS, 0, IRQ_SET.pack(IrqSet(20, 0x24, 2, 0, 20)))
            c.send_raw(msg, fds)
            reply = c.wait_reply(9)
            assert reply.header.flags & FLAG_ERROR
        finally:
            for fd in fds:
                os.close(fd)
        assert server.interrupts.assigned() == {}
    finally:
        c.close()
    wait_idle(server, baseline)


def test_unexpected_reply_from_client_is_ignored(server: VfioUserServer) -> None:
    c = connect(server)
    try:
        c.version()
        c.send_raw(encode_message(4242, Command.DMA_READ, TYPE_REPLY, b"\0" * 20))
        assert c.device_info().num_regions == 9
    finally:
        c.close()


def test_path_is_a_socket(server: VfioUserServer) -> None:
    assert server.socket_path is not None and Path(server.socket_path).is_socket()
