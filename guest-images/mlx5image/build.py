"""``ensure_image``: build (once) and return the guest image for a Debian kernel.

An image lives in ``cache_dir()/images/<kernel-release>/``. It is built in a temporary sibling directory
and renamed into place, so an interrupted build never leaves a half image; a per-release lock makes
concurrent callers wait for one build instead of racing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .assemble import assemble
from .cache import cache_dir, cache_lock
from .debpkg import KernelPackage, resolve_kernel, sha256_file
from .errors import ImageError
from .image import GuestImage, cmdline_for, image_from_manifest
from .keys import Keys, ensure_keys
from .manifest import MANIFEST_NAME, load_manifest
from .rootfs import guest_scripts

__all__ = ["GuestImage", "ImageError", "builder_fingerprint", "cmdline_for", "ensure_image"]

# Bump to force a rebuild of every cached image (e.g. when a host tool's output format changes).
BUILDER_VERSION = 1


VARIANT_MODULES = {"reader.py", "variants.py", "driver.py"}  # and the vulnerable/ subpackage (not globbed)


def builder_fingerprint(keys: Keys) -> str:
    """Changes whenever a rebuild is needed for reasons other than the kernel package.

    Covers the builder's own source (so a changed /init or layout never hides behind a cached image),
    including the command line, the guest scripts (``rootfs.GUEST_SCRIPTS``) and both SSH keys.
    """
    h = hashlib.sha256()
    for part in (str(BUILDER_VERSION), keys.client_public, keys.host_public):
        h.update(part.encode() + b"\0")
    package = Path(__file__).parent
    # debugkernel/image.py assembles debug kernels' images; the rest of that subpackage is the kernel
    # recipe, whose output is named by the image's package version (the recipe's cache folder).
    for src in sorted([*package.glob("*.py"), package / "init", package / "debugkernel" / "image.py"]):
        if src.name in VARIANT_MODULES:
            continue  # variants are overlays with their own cache keys (variants.py)
        h.update(str(src.relative_to(package)).encode() + b"\0" + src.read_bytes() + b"\0")
    for name, script in sorted(guest_scripts().items()):
        h.update(f"reader/{name}".encode() + b"\0" + script + b"\0")
    return h.hexdigest()



def _cached(folder: Path, pkg: KernelPackage, fingerprint: str, keys: Keys) -> GuestImage | None:
    """The image in ``folder`` if it is complete and built from the same package and builder inputs."""
    data = load_manifest(folder / MANIFEST_NAME)
    if data is None or data.get("builder_fingerprint") != fingerprint:
        return None
    try:
        k = data["kernel"]
        if k["package"] != pkg.package or k["version"] != pkg.version:
            return None
        if pkg.deb is not None and k["deb_sha256"] != sha256_file(pkg.deb):
            return None
        if pkg.expected_sha256 and k["deb_sha256"] != pkg.expected_sha256:
            return None
        image = image_from_manifest(folder, data, keys.client_private)
    except (KeyError, TypeError):
        return None
    needed = (image.kernel, image.vmlinuz, image.initrd, image.modules_dir)
    return image if all(p.exists() for p in needed) else None


def ensure_image(kernel: str | None = None, *, progress: Callable[[str], None] = print) -> GuestImage:
    """Return the guest image for ``kernel``, building it first if it is not cached.

    ``kernel``: None for the kernel Debian's linux-image-amd64 depends on, a release such as
    ``6.1.0-56-amd64``, a path to a linux-image .deb, or a built debug kernel's name (``debug-6.1.192``,
    :mod:`mlx5image.debugkernel`). Raises :class:`ImageError` (one sentence saying
    what to do) when a package, file or host tool is missing.
    """
    from .debugkernel import image as debug_image

    root = cache_dir()
    debug = debug_image.require(kernel) if kernel and debug_image.is_debug_kernel(kernel) else None
    pkg = debug_image.package_of(debug) if debug else resolve_kernel(kernel, progress, root / "apt-memo.json")
    keys = ensure_keys(root / "keys")
    fingerprint = builder_fingerprint(keys)
    images = root / "images"
    images.mkdir(exist_ok=True)
    folder = images / pkg.release
    with cache_lock(images / f".{pkg.release}.lock"):
        image = _cached(folder, pkg, fingerprint, keys)
        if image is not None:
            return image
        for stale in images.iterdir():  # left by a killed build (we hold the lock: nobody else builds)
            if _is_leftover(stale.name, pkg.release):
                shutil.rmtree(stale, ignore_errors=True)
        progress(f"building guest image for {pkg.package} {pkg.version} in {folder}")
        tmp = Path(tempfile.mkdtemp(dir=images, prefix=f".tmp-{pkg.release}-"))
        tmp.chmod(0o755)
        try:
            if debug is not None:
                debug_image.assemble_debug(debug, tmp, keys, fingerprint, progress)
            else:
                assemble(pkg, tmp, root / "debs", keys, fingerprint, progress)
            _swap_into_place(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        image = _cached(folder, pkg, fingerprint, keys)
    if image is None:
        raise ImageError(f"the image built in {folder} is incomplete; delete that folder and retry.")
    return image


def _is_leftover(name: str, release: str) -> bool:
    """Is ``name`` a scratch folder of ``release`` (".tmp-<release>-<suffix>" or ".old-<release>-<pid>")?"""
    for prefix in (f".tmp-{release}-", f".old-{release}-"):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            return bool(rest) and "-" not in rest
    return False


def _swap_into_place(tmp: Path, folder: Path) -> None:
    """Replace ``folder`` by ``tmp`` with renames only (readers see the old or the new image)."""
    old = None
    if folder.exists():
        old = folder.with_name(f".old-{folder.name}-{os.getpid()}")
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
