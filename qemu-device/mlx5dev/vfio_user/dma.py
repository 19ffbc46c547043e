"""Client DMA windows (DMA_MAP / DMA_UNMAP) and the :class:`~mlx5dev.interfaces.GuestMemory` over them.

A window either comes with a file descriptor (guest RAM backed by a shared memfd/file: we mmap it
and copy directly) or without one (ROM, VGA, RAM without ``share=on``: every access becomes a
DMA_READ/DMA_WRITE message to the client, done by a :class:`RemoteDma`).

Thread safety: one lock guards the window table; copies from/to mapped windows happen under it, so
once :meth:`DmaMapTable.remove` returns no access to that window is in flight ("release all
references before replying" to DMA_UNMAP). Message-based accesses run without the lock.
"""

from __future__ import annotations

import bisect
import errno
import logging
import mmap
import os
import stat
import threading
from dataclasses import dataclass
from typing import Protocol

from ..interfaces import DMAError
from .protocol import DMA_MAP_FLAG_READ, DMA_MAP_FLAG_WRITE, MAX_DMA_MAPS

log = logging.getLogger("mlx5dev.vfio_user")

_U64 = 1 << 64


class DmaMapError(Exception):
    """A DMA_MAP / DMA_UNMAP request is refused; ``errno`` goes into the error reply."""

    def __init__(self, errno_value: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno_value


class RemoteDma(Protocol):
    """Message-based access to fd-less windows (implemented by the client session)."""

    def dma_read(self, addr: int, length: int) -> bytes: ...

    def dma_write(self, addr: int, data: bytes) -> None: ...


@dataclass
class DmaWindow:
    iova: int
    size: int
    flags: int
    #: Mapping of the client's fd, or None for a message-based window.
    mm: mmap.mmap | None = None
    #: Offset of ``iova`` inside ``mm`` (the fd offset rounded down to a page).
    mm_delta: int = 0

    @property
    def end(self) -> int:
        return self.iova + self.size

    def describe(self) -> str:
        kind = "fd" if self.mm is not None else "msg"
        rw = ("r" if self.flags & DMA_MAP_FLAG_READ else "-") + (
            "w" if self.flags & DMA_MAP_FLAG_WRITE else "-"
        )
        return f"[{self.iova:#x}, {self.end:#x}) {rw} {kind}"


def _map_fd(fd: int, offset: int, size: int, writable: bool) -> tuple[mmap.mmap, int]:
    """mmap ``size`` bytes of ``fd`` at ``offset``; refuse what the file cannot back (SIGBUS otherwise)."""
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise DmaMapError(errno.EBADF, f"fstat of the map fd failed: {exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise DmaMapError(errno.EINVAL, f"map fd is not a regular file/memfd (mode {st.st_mode:#o})")
    if offset + size > st.st_size:
        raise DmaMapError(
            errno.EINVAL, f"map [{offset:#x}, +{size:#x}) exceeds the fd's size {st.st_size:#x}"
        )
    aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
    delta = offset - aligned
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    try:
        mm = mmap.mmap(fd, delta + size, flags=mmap.MAP_SHARED, prot=prot, offset=aligned)
    except (OSError, ValueError, OverflowError) as exc:
        code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EINVAL
        raise DmaMapError(code, f"mmap failed: {exc}") from exc
    return mm, delta


class DmaMapTable:
    """Non-overlapping DMA windows sorted by IOVA."""

    def __init__(self, max_maps: int = MAX_DMA_MAPS) -> None:
        self.lock = threading.Lock()
        self._starts: list[int] = []
        self._windows: list[DmaWindow] = []
        self._max_maps = max_maps

    def __len__(self) -> int:
        return len(self._windows)

    def windows(self) -> list[DmaWindow]:
        with self.lock:
            return list(self._windows)

    def add(self, iova: int, size: int, flags: int, fd: int | None, offset: int) -> DmaWindow:
        """Record a window. ``fd`` stays owned by the caller (mmap keeps its own reference)."""
        if flags & ~(DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE):
            raise DmaMapError(errno.EINVAL, f"unknown DMA_MAP flags {flags:#x}")
        if size == 0 or iova + size > _U64:
            raise DmaMapError(errno.EINVAL, f"bad window iova={iova:#x} size={size:#x}")
        if fd is None and offset != 0:
            log.debug("DMA_MAP without fd has offset %#x; ignored", offset)
        with self.lock:
            if len(self._windows) >= self._max_maps:
                raise DmaMapError(errno.ENOSPC, f"more than {self._max_maps} DMA windows")
            i = bisect.bisect_right(self._starts, iova)
            prev = self._windows[i - 1] if i > 0 else None
            nxt = self._windows[i] if i < len(self._windows) else None
            if (prev is not None and prev.end > iova) or (nxt is not None and nxt.iova < iova + size):
                clash = prev if prev is not None and prev.end > iova else nxt
                assert clash is not None
                raise DmaMapError(errno.EEXIST, f"overlaps existing window {clash.describe()}")
            window = DmaWindow(iova, size, flags)
            if fd is not None:
                window.mm, window.mm_delta = _map_fd(fd, offset, size, bool(flags & DMA_MAP_FLAG_WRITE))
            self._starts.insert(i, iova)
            self._windows.insert(i, window)
            return window

    def remove(self, iova: int, size: int) -> list[DmaWindow]:
        """Drop every window inside ``[iova, iova+size)``; a window only partly inside is an error.

        Nothing inside is not an error (as with kernel VFIO): the client may unmap a window we refused.
        """
        end = min(iova + size, _U64)
        with self.lock:
            lo = bisect.bisect_right(self._starts, iova)
            if lo > 0 and self._windows[lo - 1].end > iova:
                lo -= 1
            hi = lo
            while hi < len(self._windows) and self._windows[hi].iova < end:
                hi += 1
            hit = self._windows[lo:hi]
            for w in hit:
                if w.iova < iova or w.end > end:
                    raise DmaMapError(errno.EINVAL, f"unmap [{iova:#x}, {end:#x}) splits {w.describe()}")
            del self._windows[lo:hi]
            del self._starts[lo:hi]
            for w in hit:
                if w.mm is not None:
                    w.mm.close()
            return hit

    def clear(self) -> int:
        with self.lock:
            n = len(self._windows)
            for w in self._windows:
                if w.mm is not None:
                    w.mm.close()
            self._windows.clear()
            self._starts.clear()
            return n

    def find(self, addr: int) -> DmaWindow | None:
        """Window containing ``addr``; call with :attr:`lock` held."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and self._windows[i].end > addr:
            return self._windows[i]
        return None


class VfioGuestMemory:
    """:class:`~mlx5dev.interfaces.GuestMemory` over the current client's DMA windows.

    Outlives client connections: with no client attached every access raises :class:`DMAError`.
    """

    def __init__(self, table: DmaMapTable) -> None:
        self._table = table
        self._remote: RemoteDma | None = None

    def attach(self, remote: RemoteDma | None) -> None:
        self._remote = remote

    @staticmethod
    def _check(addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > _U64:
            raise DMAError(f"bad DMA range addr={addr:#x} length={length:#x}")

    def read(self, addr: int, length: int) -> bytes:
        self._check(addr, length)
        out = bytearray(length)
        pos = 0
        while pos < length:
            cur = addr + pos
            with self._table.lock:
                w = self._table.find(cur)
                if w is None:
                    raise DMAError(f"DMA read of unmapped guest address {cur:#x} (+{length - pos:#x})")
                if not w.flags & DMA_MAP_FLAG_READ:
                    raise DMAError(f"DMA read of non-readable window {w.describe()}")
                n = min(length - pos, w.end - cur)
                if w.mm is not None:
                    off = w.mm_delta + cur - w.iova
                    out[pos : pos + n] = w.mm[off : off + n]
                    pos += n
                    continue
            out[pos : pos + n] = self._remote_or_fail().dma_read(cur, n)
            pos += n
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        length = len(data)
        self._check(addr, length)
        view = memoryview(data)
        pos = 0
        while pos < length:
            cur = addr + pos
            with self._table.lock:
                w = self._table.find(cur)
                if w is None:
                    raise DMAError(f"DMA write to unmapped guest address {cur:#x} (+{length - pos:#x})")
                if not w.flags & DMA_MAP_FLAG_WRITE:
                    raise DMAError(f"DMA write to read-only window {w.describe()}")
                n = min(length - pos, w.end - cur)
                if w.mm is not None:
                    off = w.mm_delta + cur - w.iova
                    w.mm[off : off + n] = view[pos : pos + n]
                    pos += n
                    continue
            self._remote_or_fail().dma_write(cur, bytes(view[pos : pos + n]))
            pos += n

    def _remote_or_fail(self) -> RemoteDma:
        remote = self._remote
        if remote is None:
            raise DMAError("no vfio-user client attached")
        return remote
