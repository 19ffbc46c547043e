"""The debug kernel (KASAN, lockdep, hung-task and soft-lockup detectors) built from Debian's source."""

from .recipe import DebugKernel, by_release, ensure, find, is_debug_name
from .symbols import LOCALVERSION

__all__ = ["LOCALVERSION", "DebugKernel", "by_release", "ensure", "find", "is_debug_name"]
