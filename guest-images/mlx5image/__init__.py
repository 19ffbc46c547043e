"""mlx5lab guest images: a Debian kernel plus a busybox/dropbear initramfs, built once and cached."""

from .build import GuestImage, cmdline_for, ensure_image
from .cache import cache_dir
from .errors import ImageError

__all__ = ["GuestImage", "ImageError", "cache_dir", "cmdline_for", "ensure_image"]
