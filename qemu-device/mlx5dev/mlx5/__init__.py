"""The mlx5 (ConnectX) device model behind BAR0: init segment, command queue, firmware objects,
event queues, a minimal data path and the port. See ``device.Mlx5Function`` for the entry point."""

from .config import FunctionConfig
from .device import Mlx5Function
from .faults import Fault
from .trace import CommandTrace, read_trace

__all__ = ["CommandTrace", "Fault", "FunctionConfig", "Mlx5Function", "read_trace"]
