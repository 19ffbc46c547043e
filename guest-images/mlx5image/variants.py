"""Image variants: the stock image plus an overlay initramfs.

The kernel unpacks concatenated cpio archives in order, later files replacing earlier ones, so a
variant is the stock initramfs followed by a small overlay: the race reader (``/bin/mlx5-reader``) in
every variant, and for ``vulnerable`` the positive control's rebuilt ``mlx5_core.ko`` in place of
Debian's. Variants are cached next to the image, keyed by the hashes of what went into them.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import stat
from collections.abc import Callable

from .cache import cache_lock
from .cpio import Entry, write_archive
from .errors import ImageError
from .image import GuestImage

VARIANTS = ("stock", "vulnerable", "vulnerable-nopoison")
MLX5_CORE_REL = "kernel/drivers/net/ethernet/mellanox/mlx5/core/mlx5_core.ko"
READER_GUEST_PATH = "bin/mlx5-reader"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dirs_for(path: str) -> list[Entry]:
    parts = path.split("/")[:-1]
    return [Entry("/".join(parts[: i + 1]), stat.S_IFDIR | 0o755) for i in range(len(parts))]


def overlay_entries(release: str, reader: bytes, module: bytes | None) -> list[Entry]:
    entries = [*_dirs_for(READER_GUEST_PATH), Entry(READER_GUEST_PATH, stat.S_IFREG | 0o755, reader)]
    if module is not None:
        rel = f"lib/modules/{release}/{MLX5_CORE_REL}"
        entries += _dirs_for(rel) + [Entry(rel, stat.S_IFREG | 0o644, module)]
        # The image ships every module uncompressed (assemble.decompress_modules), so this path is the
        # one its modules.dep names even on kernels whose packages carry .ko.xz files.
    return entries


def ensure_variant(image: GuestImage, variant: str, *, progress: Callable[[str], None] = print) -> GuestImage:
    """``image`` with the race reader and, for ``vulnerable``, the positive control's mlx5_core.

    ``variant`` is ``stock``, ``vulnerable`` or either with a driver recipe's inputs
    (``stock+patch:<hash>``, ``vulnerable+patch:<hash>+src:<hash>``; :func:`mlx5image.driver.variant_name`),
    whose ``mlx5_core`` is built by :func:`mlx5image.driver.build_module`.
    """
    from .driver import build_module, recipe_of

    base_name = variant.split("+", 1)[0]
    if base_name not in VARIANTS:
        raise ImageError(f"unknown image variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    recipe = recipe_of(variant)
    from .reader import build_reader

    reader_path = build_reader()
    reader = reader_path.read_bytes()
    module = module_debug = None
    identity: dict[str, object] = {"variant": variant, "reader_sha256": _sha256(reader)}
    if variant != "stock":
        vm = build_module(image.kernel_release, recipe, progress=progress)
        module, module_debug = vm.ko.read_bytes(), vm.ko_debug
        identity.update(module_sha256=_sha256(module), module_debug=str(vm.ko_debug),
                        vermagic=vm.vermagic, patch=vm.patch_summary, source_sha256=vm.source_sha256)
    base = image.initrd.read_bytes()
    key = _sha256(json.dumps(identity, sort_keys=True).encode() + _sha256(base).encode())[:16]
    folder = image.directory / "variants" / f"{variant.replace(':', '-')}-{key}"
    initrd, manifest = folder / "initramfs.cpio.gz", folder / "variant.json"
    folder.mkdir(parents=True, exist_ok=True)
    with cache_lock(folder / ".lock"):
        if not (initrd.is_file() and manifest.is_file()):
            progress(f"assembling the {variant} variant of the guest image")
            raw = io.BytesIO()
            write_archive(raw, overlay_entries(image.kernel_release, reader, module))
            overlay = gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
            tmp = initrd.with_name(f".{initrd.name}.{os.getpid()}.tmp")
            tmp.write_bytes(base + overlay)
            tmp.replace(initrd)
            identity["initrd_sha256"] = _sha256(base + overlay)
            tmp = manifest.with_name(f".{manifest.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(identity, indent=2) + "\n")
            tmp.replace(manifest)
    return dataclasses.replace(image, initrd=initrd, variant=variant, variant_manifest=manifest,
                               mlx5_debug_ko=module_debug)
