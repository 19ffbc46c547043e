"""A host backend for one port: the card's cable ends in a TAP interface of the host instead of its partner.

TAP (``/dev/net/tun`` with ``IFF_TAP``, ``Documentation/networking/tuntap.rst`` in the kernel) is the
host kernel's own way to give a userspace NIC an Ethernet interface: the host (or a network namespace the
interface is moved into, or a bridge joining it to a second card's TAP and so to a second guest) reaches
the guest's port with ordinary tools, and it is what QEMU's own ``-netdev tap`` uses. Every frame the
port sends is one ``write`` on the TAP file; every ``read`` is one frame for the port (``IFF_NO_PI``: no
packet-information header). The interface is created down; whoever uses it brings it up.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import select
import struct
import threading
from collections.abc import Callable

log = logging.getLogger("mlx5dev.tap")

TUNSETIFF = 0x400454CA  # include/uapi/linux/if_tun.h: _IOW('T', 202, int)
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFNAMSIZ = 16
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
MAX_FRAME = 65536


class TapError(Exception):
    """The TAP interface could not be made (no /dev/net/tun, no permission, a bad or busy name)."""


class TapPort:
    """One TAP interface: :meth:`send` writes a frame to the host, a reader thread hands the host's frames
    to ``deliver``."""

    def __init__(self, name: str, deliver: Callable[[bytes], None]) -> None:
        if not NAME.match(name):
            raise TapError(f"TAP interface name {name!r}: 1 to 15 of letters, digits, '_', '.', '-'")
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise TapError(f"cannot open /dev/net/tun for TAP {name}: {e.strerror}") from None
        try:
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
        except OSError as e:
            os.close(self.fd)
            raise TapError(f"cannot create TAP {name}: {e.strerror}"
                           f"{' (root or CAP_NET_ADMIN needed)' if e.errno == errno.EPERM else ''}") from None
        self.name = name
        self.deliver = deliver
        self.sent = self.received = self.send_errors = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read_loop, name=f"tap-{name}", daemon=True)
        self._thread.start()

    def send(self, frame: bytes) -> None:
        """A frame from the port to the host; lost (counted) if the interface is down or gone."""
        try:
            os.write(self.fd, frame)
            self.sent += 1
        except OSError:
            self.send_errors += 1

    def _read_loop(self) -> None:
        while not self._closed.is_set():
            try:
                ready, _w, _x = select.select([self.fd], [], [], 0.2)  # a bounded wait: close() is seen
                if not ready:
                    continue
                frame = os.read(self.fd, MAX_FRAME)
            except OSError as e:
                if self._closed.is_set() or e.errno in (errno.EBADF, errno.EBADFD, errno.EAGAIN):
                    return
                log.warning("TAP %s: read failed: %s", self.name, e)
                return
            if not frame:
                return
            self.received += 1
            self.deliver(frame)

    def status(self) -> dict[str, object]:
        return {"name": self.name, "sent": self.sent, "received": self.received, "send_errors": self.send_errors}

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)  # the interface goes away with its last file
