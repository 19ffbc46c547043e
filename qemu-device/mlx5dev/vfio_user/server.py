"""Entry point of the transport: serve one emulated PCI function on a UNIX socket.

Wiring (the factory is called once, at construction; its result outlives client connections)::

    from mlx5dev.pci import PciFunction, PciFunctionConfig
    from mlx5dev.vfio_user import VfioUserServer

    def make_function(memory, interrupts):          # GuestMemory, InterruptSink
        bar = MyBarDevice(memory, interrupts)        # implements interfaces.BarDevice
        return PciFunction(PciFunctionConfig(), bar)

    server = VfioUserServer(Path("/tmp/mlx5.sock"), make_function)  # listening from here on
    server.serve_forever()          # or serve_one(); stop() from any thread; close() at the end

One client at a time: a second connection while one is served is accepted and closed at once.
When a client goes, its DMA windows are unmapped and its fds closed; the device keeps its state
(the next QEMU resets it with DEVICE_RESET).

Everything runs on the thread calling ``serve_*`` (the socket loop). The device must not block in
its region handlers: ``BarDevice.mmio_write`` returns at once, and message-based DMA (fd-less
windows) from the socket-loop thread raises ``DMAError`` instead of deadlocking.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from ..interfaces import GuestMemory, InterruptSink
from .device import VfioPciDevice
from .dma import DmaMapTable, VfioGuestMemory
from .dma_rw import DmaRwLayout
from .irq import MsixEventfds
from .session import ClientSession

log = logging.getLogger("mlx5dev.vfio_user")

FunctionFactory = Callable[[GuestMemory, InterruptSink], VfioPciDevice]

_WAKE, _LISTEN, _CLIENT = "wake", "listen", "client"


class VfioUserServer:
    """A vfio-user server for one PCI function (see the module docstring for wiring)."""

    def __init__(
        self,
        socket_path: Path | str | None,
        function_factory: FunctionFactory,
        *,
        reply_timeout: float = 5.0,
        dma_rw_layout: DmaRwLayout = DmaRwLayout.QEMU,
    ) -> None:
        """Build the function and start listening on ``socket_path`` (None: no listener, for
        :meth:`serve_connection` only). A stale socket file is replaced; a live one is an error."""
        self.socket_path = Path(socket_path) if socket_path is not None else None
        self.reply_timeout = reply_timeout
        self.dma_rw_layout = dma_rw_layout
        self.dma_table = DmaMapTable()
        #: The GuestMemory handed to the factory (DMA windows of whichever client is connected).
        self.memory = VfioGuestMemory(self.dma_table)
        #: The InterruptSink handed to the factory (MSI-X eventfds of the connected client).
        self.interrupts = MsixEventfds()
        self.device = function_factory(self.memory, self.interrupts)
        self.clients_served = 0
        self._stopping = threading.Event()
        self._serve_lock = threading.Lock()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._listener = self._listen(self.socket_path) if self.socket_path is not None else None
        # One selector for the server's lifetime (used by one socket loop at a time, under _serve_lock).
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._wake, selectors.EVENT_READ, _WAKE)
        if self._listener is not None:
            self._sel.register(self._listener, selectors.EVENT_READ, _LISTEN)
        self._closed = False

    # -- public API --------------------------------------------------------------------------------

    def serve_one(self) -> bool:
        """Wait for a client and serve it until it disconnects. False if stopped before one came."""
        if self._listener is None:
            raise RuntimeError("server has no listening socket")
        with self._serve_lock:
            while not self._stopping.is_set():  # checked under the lock: close() may have run
                for key, _ in self._sel.select():
                    if key.data == _WAKE:
                        self._drain_wake()
                    elif key.data == _LISTEN:
                        conn = self._accept()
                        if conn is not None:
                            self._run_session(conn)
                            return True
            return False

    def serve_forever(self) -> None:
        """Serve clients one after another until :meth:`stop`."""
        while self.serve_one():
            pass

    def serve_connection(self, conn: socket.socket) -> None:
        """Serve an already connected socket (e.g. one end of a socketpair) until it disconnects."""
        with self._serve_lock:
            if self._stopping.is_set():
                conn.close()
                return
            self._run_session(conn)

    def serve_in_thread(self, forever: bool = True) -> threading.Thread:
        """Run :meth:`serve_forever` (or :meth:`serve_one`) on a new daemon thread."""
        target = self.serve_forever if forever else self.serve_one
        thread = threading.Thread(target=target, name="vfio-user-server", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Make ``serve_*`` return soon (disconnecting the current client). Any thread; idempotent."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake, 1)

    def close(self) -> None:
        """Stop, wait for the socket loop to finish, remove the socket file."""
        if self._closed:
            return
        self.stop()
        if not self._serve_lock.acquire(timeout=10):
            log.warning("socket loop did not stop within 10 s; closing anyway")
        else:
            self._serve_lock.release()
        self._closed = True
        self._sel.close()
        if self._listener is not None:
            self._listener.close()
            if self.socket_path is not None:
                with contextlib.suppress(OSError):
                    self.socket_path.unlink()
        os.close(self._wake)

    def __enter__(self) -> VfioUserServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------

    @staticmethod
    def _listen(path: Path) -> socket.socket:
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise FileExistsError(f"{path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # stale socket from a previous run
            else:
                raise FileExistsError(f"{path}: another server is listening there")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            sock.listen(4)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        log.info("listening on %s", path)
        return sock

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake)

    def _accept(self) -> socket.socket | None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            log.warning("accept failed: %s", exc)
            return None
        return conn

    def _run_session(self, conn: socket.socket) -> None:
        sel = self._sel
        session = ClientSession(
            conn,
            self.device,
            self.dma_table,
            self.memory,
            self.interrupts,
            reply_timeout=self.reply_timeout,
            dma_rw_layout=self.dma_rw_layout,
        )
        self.clients_served += 1
        log.info("client #%d connected", self.clients_served)
        sel.register(conn, selectors.EVENT_READ, _CLIENT)
        try:
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.data == _CLIENT:
                        if not session.on_readable():
                            return
                    elif key.data == _WAKE:
                        self._drain_wake()
                    elif key.data == _LISTEN:
                        extra = self._accept()
                        if extra is not None:
                            log.warning("refused a second client: one client at a time")
                            extra.close()
            log.info("server stopping; disconnecting the client")
        except Exception:
            log.exception("unexpected error in the socket loop; disconnecting the client")
        finally:
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(conn)
            try:
                session.close()
            except Exception:
                log.exception("error while dropping client state")
