"""The mlx5 (ConnectX) device model behind BAR0, as the Debian 6.1 ``mlx5_core`` / ``mlx5e`` use it.

Entry point: :class:`Mlx5Function` (``device.py``), which implements ``interfaces.BarDevice``.

Layout of the package (one job per module):

- ``layout.py``, ``ifc/``: big-endian bit-field layouts declared once as data (commands, contexts,
  capabilities, registers; queue entry, mailbox block, EQE, CQE, init segment).
- ``consts.py``: opcodes, statuses, delivery statuses, event types, register ids.
- ``iseg.py``: init segment and health buffer. ``cmdq.py`` + ``mailbox.py``: command queue slots and
  mailbox chains. ``worker.py``: the thread that does every DMA and interrupt.
- ``dispatcher.py``: opcode -> handler table and generic checks; ``handlers/``: one handler per
  opcode, by area; ``registers/``: ACCESS_REG registers.
- ``state.py``: all mutable state of a function in one struct; ``objects.py``: object tables with id
  allocation; ``eq.py`` / ``cq.py``: event and completion queues; ``datapath.py``: SQ doorbells;
  ``port.py``: link, speed, admin state, MTU; ``capabilities.py``: QUERY_HCA_CAP pages.
- ``faults.py``: command fault injection; ``trace.py``: JSON-lines command trace and its reader.
"""

from .config import FunctionConfig
from .device import Mlx5Function
from .faults import Fault
from .trace import CommandTrace, read_trace

__all__ = ["CommandTrace", "Fault", "FunctionConfig", "Mlx5Function", "read_trace"]
