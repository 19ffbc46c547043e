"""DEVICE_SET_IRQS for MSI-X and the InterruptSink over the eventfds."""

from __future__ import annotations

import errno
import os
import select
import threading
import time

import pytest

from mlx5dev.vfio_user.protocol import (
    IRQ_SET_ACTION_MASK,
    IRQ_SET_ACTION_TRIGGER,
    IRQ_SET_ACTION_UNMASK,
    IRQ_SET_DATA_BOOL,
    IRQ_SET_DATA_EVENTFD,
    IRQ_SET_DATA_NONE,
    IrqIndex,
)

from .test_vfio_user_client import VfioUserError, open_fds, served

EVENTFD_TRIGGER = IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER
MSIX = IrqIndex.MSIX


def eventfds(n: int) -> list[int]:
    return [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(n)]


def readable(fd: int, timeout: float = 0.0) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def take(fd: int) -> int:
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


def close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def test_set_irqs_then_fire_makes_eventfd_readable() -> None:
    efds = eventfds(16)
    try:
        with served() as h:
            h.client.set_irqs(MSIX, 0, 16, EVENTFD_TRIGGER, efds)
            sink = h.server.interrupts
            sink.fire(3)
            assert readable(efds[3], 1.0)
            assert take(efds[3]) == 1
            assert not any(readable(fd) for fd in efds)
            sink.fire(15)
            sink.fire(15)
            assert take(efds[15]) == 2
            assert sink.delivered[15] == 2
    finally:
        close_all(efds)


def test_set_irqs_in_chunks_like_qemu() -> None:
    efds = eventfds(16)
    try:
        with served() as h:
            h.client.set_irqs(MSIX, 0, 8, EVENTFD_TRIGGER, efds[:8])
            h.client.set_irqs(MSIX, 8, 8, EVENTFD_TRIGGER, efds[8:])
            for v in range(16):
                h.server.interrupts.fire(v)
            assert [take(fd) for fd in efds] == [1] * 16
    finally:
        close_all(efds)


def test_count_without_fds_disables_those_vectors() -> None:
    efds = eventfds(4)
    try:
        with served() as h:
            h.client.set_irqs(MSIX, 0, 4, EVENTFD_TRIGGER, efds)
            h.client.set_irqs(MSIX, 1, 2, EVENTFD_TRIGGER)  # QEMU's "all fds invalid" chunk
            sink = h.server.interrupts
            for v in range(4):
                sink.fire(v)
            assert [take(fd) for fd in efds] == [1, 0, 0, 1]
            assert sink.dropped[1] == 1 and sink.dropped[2] == 1
    finally:
        close_all(efds)


def test_data_none_count_zero_disables_all() -> None:
    efds = eventfds(4)
    try:
        with served() as h:
            h.client.set_irqs(MSIX, 0, 4, EVENTFD_TRIGGER, efds)
            h.client.set_irqs(MSIX, 0, 0, IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER)
            assert h.server.interrupts.assigned() == {}
            h.server.interrupts.fire(0)
            assert take(efds[0]) == 0 and h.server.interrupts.dropped[0] == 1
            # INTx and MSI have no vectors; disabling them is accepted (QEMU does it on reset).
            h.client.set_irqs(IrqIndex.INTX, 0, 0, IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER)
            h.client.set_irqs(IrqIndex.MSI, 0, 0, IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER)
    finally:
        close_all(efds)


def test_vector_without_eventfd_is_counted_and_dropped() -> None:
    with served() as h:
        sink = h.server.interrupts
        sink.fire(0)
        sink.fire(5000)
        assert sink.dropped[0] == 1 and sink.dropped[5000] == 1


def test_client_trigger_with_data_none_and_bool() -> None:
    efds = eventfds(4)
    try:
        with served() as h:
            h.client.set_irqs(MSIX, 0, 4, EVENTFD_TRIGGER, efds)
            h.client.set_irqs(MSIX, 1, 1, IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER)
            h.client.set_irqs(MSIX, 0, 4, IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER, data=b"\1\0\0\1")
            assert [take(fd) for fd in efds] == [1, 1, 0, 1]
    finally:
        close_all(efds)


def test_replacing_and_disconnecting_close_server_copies() -> None:
    first, second = eventfds(2), eventfds(2)
    try:
        before = open_fds()
        with served() as h:
            h.client.set_irqs(MSIX, 0, 2, EVENTFD_TRIGGER, first)
            with_first = open_fds()
            h.client.set_irqs(MSIX, 0, 2, EVENTFD_TRIGGER, second)
            assert len(open_fds()) == len(with_first)  # the replaced copies were closed
            h.server.interrupts.fire(0)
            assert take(second[0]) == 1 and take(first[0]) == 0
            sink = h.server.interrupts
        assert sink.assigned() == {}
        assert open_fds() <= before
        sink.fire(0)
        assert take(second[0]) == 0
    finally:
        close_all(first + second)


@pytest.mark.parametrize(
    ("index", "start", "count", "flags", "nfds", "data"),
    [
        (MSIX, 0, 2, EVENTFD_TRIGGER, 1, b""),  # fd count mismatch
        (MSIX, 15, 2, EVENTFD_TRIGGER, 2, b""),  # beyond the 16 vectors
        (MSIX, 0xFFFFFFFF, 1, EVENTFD_TRIGGER, 1, b""),
        (MSIX, 0, 1, IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_MASK, 1, b""),
        (MSIX, 0, 1, IRQ_SET_DATA_NONE | IRQ_SET_ACTION_UNMASK, 0, b""),
        (MSIX, 0, 1, IRQ_SET_DATA_NONE | IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER, 0, b""),
        (MSIX, 0, 1, IRQ_SET_DATA_NONE, 0, b""),
        (MSIX, 0, 1, IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER | 0x100, 0, b""),
        (MSIX, 0, 1, IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER, 1, b""),  # fds without DATA_EVENTFD
        (MSIX, 0, 4, IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER, 0, b"\1"),  # short bool array
        (IrqIndex.INTX, 0, 1, EVENTFD_TRIGGER, 1, b""),
        (IrqIndex.ERR, 0, 1, EVENTFD_TRIGGER, 1, b""),
        (IrqIndex.REQ, 0, 1, EVENTFD_TRIGGER, 1, b""),
        (7, 0, 1, EVENTFD_TRIGGER, 1, b""),
    ],
)
def test_bad_set_irqs_refused_without_leaks(
    index: int, start: int, count: int, flags: int, nfds: int, data: bytes
) -> None:
    efds = eventfds(nfds)
    try:
        before = open_fds()
        with served() as h:
            with pytest.raises(VfioUserError) as e:
                h.client.set_irqs(index, start, count, flags, efds, data)
            assert e.value.errno == errno.EINVAL
            assert h.server.interrupts.assigned() == {}
        assert open_fds() <= before
    finally:
        close_all(efds)


def test_non_eventfd_refused() -> None:
    r, w = os.pipe()
    try:
        with served() as h:
            with pytest.raises(VfioUserError):
                h.client.set_irqs(MSIX, 0, 1, EVENTFD_TRIGGER, [w])
            assert h.server.interrupts.assigned() == {}
    finally:
        os.close(r)
        os.close(w)


def test_fire_from_threads_while_eventfds_change() -> None:
    efds = eventfds(16)
    try:
        with served() as h:
            stop = threading.Event()
            errors: list[BaseException] = []

            def fire() -> None:
                while not stop.is_set():
                    try:
                        for v in range(16):
                            h.server.interrupts.fire(v)
                        time.sleep(0)  # let the socket loop have the GIL
                    except BaseException as exc:
                        errors.append(exc)
                        return

            t = threading.Thread(target=fire)
            t.start()
            for _ in range(20):
                h.client.set_irqs(MSIX, 0, 16, EVENTFD_TRIGGER, efds)
                h.client.set_irqs(MSIX, 0, 0, IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER)
            stop.set()
            t.join(5)
            assert errors == []
    finally:
        close_all(efds)


def test_received_fds_are_close_on_exec() -> None:
    efds = eventfds(1)
    os.set_inheritable(efds[0], True)
    try:
        with served() as h:
            h.client.set_irqs(MSIX, 0, 1, EVENTFD_TRIGGER, efds)
            (server_copy,) = h.server.interrupts.assigned().values()
            assert not os.get_inheritable(server_copy)
    finally:
        close_all(efds)
