"""The one builder of modified ``mlx5_core`` modules: a recipe applied to the guest kernel's own source.

A :class:`Recipe` is a base (``stock``: Debian's driver, ``vulnerable``: the positive control's edits of
``vulnerable/edits.py``), then the developer's patches in order, or instead of Debian's source a
developer's own mlx5 tree (``module_src``). :func:`build_module` takes the mlx5 directories out of the
kernel's ``linux-source-<major.minor>`` package (the same Debian version as the guest kernel), applies the
recipe, builds ``mlx5_core.ko`` out of tree against that kernel's headers (``make -C <headers> M=<dir>``,
Documentation/kbuild/modules.rst), checks its vermagic is the guest kernel's, and keeps a stripped copy for
the guest and the one with debug info for triage.

Builds are cached in ``cache_dir()/modules/<release>/<label>-<digest>/``; the digest covers the recipe
(edits, the content of every patch and of the module tree, make variables, strip arguments) and, for
anything but the plain positive control, the kernel's package version (the plain positive control keeps
its earlier key and checks the version in its manifest). A folder without a valid manifest (a failed or
killed build, whose ``build.log`` stays for reading) is wiped by the next call.

Variant names carry a recipe through campaigns and resumes: ``vulnerable+patch:<sha16>+src:<sha16>``.
:func:`store_patch` and :func:`store_module_src` copy the inputs into ``cache_dir()/driver-inputs/`` by
content hash, so a resumed campaign rebuilds the same module even if the developer's file changed since.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .cache import cache_dir, cache_lock
from .debpkg import KernelPackage, resolve_kernel, sha256_file
from .debugkernel.image import package_of
from .debugkernel.recipe import DebugKernel, by_release
from .debugkernel.symbols import LOCALVERSION
from .errors import ImageError
from .hosttools import require_tool
from .vulnerable.debs import ensure_headers, extract_mlx5_tree, fetch_source
from .vulnerable.edits import VARIANT_B, VARIANT_B_NOPOISON, TextEdit, apply_edits, recipe_digest
from .vulnerable.kbuild import MAKE_VARS, STRIP_ARGS, kbuild, modinfo, strip_copy

MODULE = "mlx5_core"
_SCHEMA = 1
BASES: dict[str, tuple[TextEdit, ...]] = {"stock": (), "vulnerable": VARIANT_B,
                                          "vulnerable-nopoison": VARIANT_B_NOPOISON}
MELLANOX = "drivers/net/ethernet/mellanox"
# Files of a developer's tree that are not inputs (build products and editor droppings).
_IGNORED_SUFFIXES = (".o", ".ko", ".mod", ".mod.c", ".cmd", ".a", ".order", ".symvers", ".orig", ".rej", ".swp")


@dataclass(frozen=True)
class Recipe:
    """What turns the kernel's Debian mlx5 source into the module to build."""

    base: str = "stock"
    patches: tuple[Path, ...] = ()
    module_src: Path | None = None
    _src_digest: str = field(default="", compare=False, repr=False)

    @property
    def edits(self) -> tuple[TextEdit, ...]:
        return BASES[self.base]

    @property
    def plain(self) -> bool:
        return not self.patches and self.module_src is None

    @property
    def label(self) -> str:
        return self.base if self.plain else f"{self.base}-patched"

    def digest(self, kernel_version: str) -> str:
        """16 hex digits naming the build: recipe, patch contents, tree contents and kernel version."""
        if self.plain:  # the positive control's key from before patches existed
            return recipe_digest(self.edits, *MAKE_VARS, *STRIP_ARGS)[:16]
        extra = [f"kernel {kernel_version}"]
        extra += [f"patch {sha256_file(p)}" for p in self.patches]
        if self.module_src is not None:
            extra.append(f"src {self._src_digest or tree_digest(self.module_src)}")
        return recipe_digest(self.edits, *MAKE_VARS, *STRIP_ARGS, *extra)[:16]


@dataclass(frozen=True)
class BuiltModule:
    """A built module: ``ko`` goes into the guest, ``ko_debug`` is for triage."""

    ko: Path  # debug info stripped (modinfo and symbols intact)
    ko_debug: Path  # same module with DWARF
    patch_summary: list[str]  # one line per edit and per patch
    source_sha256: str  # of the linux-source .deb the module was built from
    vermagic: str
    build_log: Path
    recipe: str  # the digest


# -- inputs by content ------------------------------------------------------------------------------


def inputs_dir() -> Path:
    return cache_dir() / "driver-inputs"


def tree_digest(root: Path) -> str:
    """SHA-256 over the relative names and contents of a source tree's files (build products ignored)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(_IGNORED_SUFFIXES)
                       and not p.name.startswith(".")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def store_patch(path: Path) -> str:
    """Copy ``path`` into the inputs store; return its 16-digit name."""
    if not path.is_file():
        raise ImageError(f"no such patch file: {path}")
    key = sha256_file(path)[:16]
    dest = inputs_dir() / "patches" / f"{key}.patch"
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)
    return key


def store_module_src(path: Path) -> str:
    """Snapshot a developer's mlx5 tree into the inputs store; return its 16-digit name."""
    root = find_mellanox_root(path)
    key = tree_digest(root)[:16]
    dest = inputs_dir() / "src" / key
    if not dest.is_dir():
        tmp = dest.with_name(f".{key}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(root, tmp, ignore=shutil.ignore_patterns(*(f"*{s}" for s in _IGNORED_SUFFIXES), ".*"))
        os.replace(tmp, dest)
    return key


def find_mellanox_root(path: Path) -> Path:
    """The ``drivers/net/ethernet/mellanox`` directory of a kernel tree, or that directory itself."""
    for candidate in (path / MELLANOX, path):
        if (candidate / "mlx5" / "core" / "Makefile").is_file():
            return candidate
    raise ImageError(f"{path} is not an mlx5 source tree: neither {path / MELLANOX}/mlx5/core/Makefile nor "
                     f"{path}/mlx5/core/Makefile exists; pass a kernel tree or its {MELLANOX} directory.")


def variant_name(base: str, patches: Sequence[Path] = (), module_src: Path | None = None) -> str:
    """The variant name of ``base`` with these inputs (stored in the inputs store as a side effect)."""
    if base not in BASES:
        raise ImageError(f"unknown base {base!r}; choose one of {', '.join(BASES)}")
    name = base + "".join(f"+patch:{store_patch(Path(p))}" for p in patches)
    if module_src is not None:
        name += f"+src:{store_module_src(Path(module_src))}"
    return name


_PART = re.compile(r"^(patch|src):([0-9a-f]{16})$")


def recipe_of(variant: str) -> Recipe:
    """The recipe a variant name stands for; ImageError if it names inputs the store does not have."""
    base, *parts = variant.split("+")
    if base not in BASES:
        raise ImageError(f"unknown image variant {variant!r}; its base must be one of {', '.join(BASES)}")
    patches: list[Path] = []
    src: Path | None = None
    src_key = ""
    for part in parts:
        m = _PART.match(part)
        if m is None:
            raise ImageError(f"variant {variant!r}: '{part}' is neither patch:<hash> nor src:<hash>")
        kind, key = m.groups()
        path = inputs_dir() / ("patches" if kind == "patch" else "src") / (f"{key}.patch" if kind == "patch" else key)
        if not path.exists():
            raise ImageError(f"variant {variant!r}: {path} is missing from the cache; give the --patch or "
                             "--module-src again.")
        if kind == "patch":
            patches.append(path)
        else:
            src, src_key = path, key
    return Recipe(base, tuple(patches), src, src_key)


# -- patches ------------------------------------------------------------------------------------------


def patch_targets(text: str) -> list[str]:
    """The files a unified diff changes (its ``+++`` lines, timestamps dropped; /dev/null skipped)."""
    out = []
    for line in text.splitlines():
        if line.startswith("+++ "):
            name = line[4:].split("\t", 1)[0].strip()
            if name != "/dev/null":
                out.append(name)
    return out


def strip_level(target: str) -> int:
    """``-p`` that turns ``target`` into a path below the mellanox directory.

    'a/drivers/net/ethernet/mellanox/mlx5/core/main.c' -> 5; 'b/mlx5/core/main.c' -> 1;
    'mlx5/core/main.c' -> 0. ValueError for a file outside the mlx5 driver.
    """
    parts = PurePosixPath(target).parts
    for i in range(len(parts) - 1):
        if parts[i] == "mellanox" and i >= 3 and "/".join(parts[i - 3:i + 1]) == MELLANOX:
            return i + 1
    for i, part in enumerate(parts):
        if part in ("mlx5", "mlxfw") and i <= 1:
            return i
    raise ValueError(target)


def apply_patch(patch: Path, mellanox: Path, shown_as: str) -> str:
    """Apply one patch to the mellanox tree; ImageError with the rejected hunks if it does not apply."""
    text = patch.read_text(errors="replace")
    targets = patch_targets(text)
    if not targets:
        raise ImageError(f"patch {shown_as} changes no file (no '+++' line); give a unified diff "
                         "(git format-patch or diff -u).")
    levels = set()
    for t in targets:
        try:
            levels.add(strip_level(t))
        except ValueError:
            raise ImageError(f"patch {shown_as} changes {t}, which is outside {MELLANOX}; only mlx5_core is "
                             "rebuilt (the kernel itself is Debian's).") from None
    if len(levels) != 1:
        raise ImageError(f"patch {shown_as}: its files use different path prefixes ({', '.join(targets)}).")
    level = levels.pop()
    before = set(mellanox.rglob("*.rej"))
    proc = subprocess.run([str(require_tool("patch")), f"-p{level}", "--batch", "--forward", "-d", str(mellanox),
                           "-i", str(patch)], capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"))
    if proc.returncode != 0:
        rejects = sorted(set(mellanox.rglob("*.rej")) - before)
        hunks = "\n".join(f"--- {r.relative_to(mellanox)}\n{r.read_text(errors='replace')}" for r in rejects)
        raise ImageError(f"patch {shown_as} does not apply to the kernel's mlx5 source ({mellanox}):\n"
                         f"{proc.stdout.strip()}\n{proc.stderr.strip()}\n"
                         + (f"rejected hunks:\n{hunks}" if hunks else "").rstrip())
    return f"patch {shown_as}: " + ", ".join(targets)


def debug_kernel_of(release: str) -> DebugKernel | None:
    """The built debug kernel of ``release`` (:mod:`mlx5image.debugkernel`); None for Debian's kernels.
    A debug kernel's release that is not built is an error, not a lookup in apt."""
    if not release.endswith(LOCALVERSION):
        return None
    dk = by_release(release)
    if dk is None:
        raise ImageError(f"{release} is a debug kernel release, but that kernel is not built; run "
                         "'make debug-kernel' and retry.")
    return dk


# -- the build ------------------------------------------------------------------------------------------


def _from_manifest(folder: Path, manifest: str, digest: str, version: str) -> BuiltModule | None:
    try:
        data = json.loads((folder / manifest).read_text())
        if data["schema"] != _SCHEMA or data["recipe"] != digest or data["kernel_version"] != version:
            return None
        mod = BuiltModule(ko=folder / data["ko"], ko_debug=folder / data["ko_debug"],
                          patch_summary=list(data["patch_summary"]), source_sha256=data["source"]["sha256"],
                          vermagic=data["vermagic"], build_log=folder / data["build_log"], recipe=digest)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return mod if mod.ko.is_file() and mod.ko_debug.is_file() else None


def _remove_objects(tree: Path) -> None:
    """Drop the build's object files (~1 GB with debug info); sources, logs and the .ko copies stay."""
    for path in tree.rglob("*"):
        if path.is_file() and path.suffix in (".o", ".ko"):
            path.unlink()


def build(pkg: KernelPackage, recipe: Recipe, digest: str, out: Path, log: Path,
          progress: Callable[[str], None]) -> dict[str, Any]:
    """Build into the empty folder ``out``; return the manifest fields."""
    started = time.monotonic()
    release, version = pkg.release, pkg.version
    debug = debug_kernel_of(release)
    if pkg.apt_options:
        # Debian's headers name the compiler the kernel was built with (the headers package depends on
        # gcc-N-for-host of the kernel's own suite) and ship kbuild tools linked against that suite's libc,
        # so a module with the kernel's vermagic is built on a host of the kernel's suite.
        raise ImageError(f"building mlx5_core for {release} needs linux-headers-{release} installed on this "
                         f"host, but it is a Debian {pkg.suite or 'other-suite'} kernel that the host's apt does "
                         "not carry (nor its compiler); build on a host of that suite, or use a kernel of this "
                         "host's suite.")
    if debug is not None:  # its build tree is its headers; its source is the one it was built from
        headers = debug.build_dir
        src = fetch_source(release, debug.source_version, cache_dir() / "debs", progress)
    else:
        headers = ensure_headers(release, version, progress)
        src = fetch_source(release, version, cache_dir() / "debs", progress, pkg.apt_options)
    mellanox = extract_mlx5_tree(src.path, out / "src", progress)
    summary: list[str] = []
    if recipe.module_src is not None:
        core = mellanox / "mlx5" / "core"
        shutil.rmtree(core)
        shutil.copytree(recipe.module_src / "mlx5" / "core", core)
        if (recipe.module_src / "mlxfw").is_dir():
            shutil.rmtree(mellanox / "mlxfw")
            shutil.copytree(recipe.module_src / "mlxfw", mellanox / "mlxfw")
        tree = recipe._src_digest or tree_digest(recipe.module_src)[:16]
        summary.append(f"module source: {recipe.module_src} (tree {tree})")
    if recipe.edits:
        diff = apply_edits(mellanox, recipe.edits)
        (out / "variant-b.diff").write_text(diff)
        summary += [e.summary for e in recipe.edits]
        progress(f"applied {len(recipe.edits)} {recipe.base} edits (diff: {out / 'variant-b.diff'})")
    for i, patch in enumerate(recipe.patches, 1):
        kept = out / f"patch-{i}.patch"
        shutil.copyfile(patch, kept)
        summary.append(apply_patch(kept, mellanox, str(kept)))
        progress(summary[-1])
    built = kbuild(headers, mellanox / "mlx5" / "core", MODULE, log, progress)
    vermagic = modinfo(built, "vermagic")
    if vermagic.split()[:1] != [release]:
        raise ImageError(f"the built {MODULE}.ko has vermagic '{vermagic}', not for {release}; check that "
                         f"{headers} belongs to the guest kernel.")
    ko_debug = out / f"{MODULE}.debug.ko"
    os.replace(built, ko_debug)
    ko = strip_copy(ko_debug, out / f"{MODULE}.ko")
    _remove_objects(out / "src")
    return {
        "schema": _SCHEMA, "recipe": digest, "kernel_release": release, "kernel_version": version,
        "base": recipe.base, "patches": [sha256_file(p) for p in recipe.patches],
        "source": {"package": src.package, "version": src.version, "deb": src.path.name, "sha256": src.sha256},
        "headers": str(headers), "vermagic": vermagic, "depends": modinfo(ko, "depends"),
        "patch_summary": summary,
        "ko": ko.name, "ko_sha256": sha256_file(ko), "ko_debug": ko_debug.name, "build_log": log.name,
        "build_seconds": round(time.monotonic() - started, 1),
    }


def build_module(kernel_release: str, recipe: Recipe, *, progress: Callable[[str], None] = print,
                 builder: Callable[..., dict[str, Any]] | None = None) -> BuiltModule:
    """Return ``mlx5_core`` built by ``recipe`` for ``kernel_release``, building it once.

    Needs root the first time if ``linux-headers-<release>`` is not installed. ``builder`` replaces
    :func:`build` (tests). Raises :class:`ImageError` saying what to do.
    """
    root = cache_dir()
    debug = debug_kernel_of(kernel_release)
    pkg = package_of(debug) if debug else resolve_kernel(kernel_release, progress, root / "apt-memo.json")
    digest = recipe.digest(pkg.version)
    base = root / "modules" / kernel_release
    base.mkdir(parents=True, exist_ok=True)
    folder = base / f"{recipe.label}-{digest}"
    manifest = f"{recipe.base}.json"
    with cache_lock(base / f".{recipe.label}.lock"):
        cached = _from_manifest(folder, manifest, digest, pkg.version)
        if cached is not None:
            return cached
        # Built in place, not renamed afterwards, so the debug module's DWARF paths name the sources
        # that stay here; the manifest, written last, marks the folder complete.
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        progress(f"building the {recipe.label} {MODULE} for {kernel_release} ({pkg.version}) in {folder}")
        data = (builder or build)(pkg, recipe, digest, folder, folder / "build.log", progress)
        path = folder / manifest
        tmp = path.with_name(f".{manifest}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
        module = _from_manifest(folder, manifest, digest, pkg.version)
    if module is None:
        raise ImageError(f"the module built in {folder} is incomplete; delete that folder and retry.")
    progress(f"{recipe.label} {MODULE}: {module.ko} (vermagic {module.vermagic})")
    return module
