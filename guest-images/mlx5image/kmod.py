"""Kernel module metadata via kmod's ``modinfo``/``depmod`` run against an extracted module tree.

Dependencies are never hand-listed: :func:`resolve_dependencies` follows ``modinfo -F depends`` (and soft
dependencies, when present) from a few root modules.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ImageError
from .hosttools import run

BUILTIN = "(builtin)"


def normalize(name: str) -> str:
    """Module names treat '-' and '_' alike; compare on the underscore form."""
    return name.replace("-", "_")


def split_list(value: str) -> list[str]:
    """Split a ``depends`` value ("a,b,c") into names."""
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_softdeps(value: str) -> list[str]:
    """Names in a ``softdep`` value ("pre: a b post: c", possibly several lines)."""
    return [tok for tok in value.split() if tok not in ("pre:", "post:")]


class CycleError(ValueError):
    pass


def resolve_dependencies(
    roots: Iterable[str],
    depends_of: Callable[[str], Sequence[str]],
    *,
    exclude: Collection[str] = (),
) -> list[str]:
    """All modules needed to load ``roots``, dependencies before dependents, each once.

    ``depends_of(name)`` returns the direct dependencies of a module. Names are compared modulo '-'/'_'.
    A module in ``exclude`` that something needs raises ValueError (it would make the set unloadable).
    """
    excluded = {normalize(n) for n in exclude}
    order: list[str] = []
    done: set[str] = set()
    active: list[str] = []

    def visit(name: str, needed_by: str | None) -> None:
        key = normalize(name)
        if key in done:
            return
        if key in excluded:
            raise ValueError(f"module {name} is excluded but {needed_by or 'the root set'} needs it")
        if key in (normalize(a) for a in active):
            raise CycleError("module dependency cycle: " + " -> ".join([*active, name]))
        active.append(name)
        for dep in depends_of(name):
            visit(dep, name)
        active.pop()
        done.add(key)
        order.append(name)

    for root in roots:
        visit(root, None)
    return order


@dataclass
class ModuleTree:
    """The modules of one kernel release under ``root/lib/modules/<release>`` (needs modules.dep)."""

    root: Path
    release: str
    _cache: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    @property
    def moddir(self) -> Path:
        return self.root / "lib" / "modules" / self.release

    def field(self, module: str, name: str) -> str:
        """One ``modinfo -F`` field; ImageError if the module is not in this kernel at all."""
        key = (normalize(module), name)
        if key not in self._cache:
            proc = run(
                ["modinfo", "-b", self.root, "-k", self.release, "-F", name, module],
                what=f"modinfo {module}",
                check=False,
            )
            if proc.returncode != 0:
                raise ImageError(
                    f"kernel {self.release} has no module '{module}'; use a Debian kernel package that "
                    "builds it (linux-image-<release>-amd64)."
                )
            self._cache[key] = proc.stdout.strip()
        return self._cache[key]

    def is_builtin(self, module: str) -> bool:
        return self.field(module, "filename") == BUILTIN

    def path(self, module: str) -> Path:
        """Absolute path of the module's .ko (callers check :meth:`is_builtin` first)."""
        return Path(self.field(module, "filename"))

    def depends(self, module: str) -> list[str]:
        return split_list(self.field(module, "depends"))

    def softdeps(self, module: str) -> list[str]:
        return parse_softdeps(self.field(module, "softdep"))

    def exists(self, module: str) -> bool:
        try:
            self.field(module, "filename")
        except ImageError:
            return False
        return True

    def depends_with_softdeps(self, module: str) -> list[str]:
        """Hard dependencies plus those soft dependencies this kernel actually has."""
        return self.depends(module) + [m for m in self.softdeps(module) if self.exists(m)]


def depmod(root: Path, release: str) -> None:
    """Generate modules.dep and friends for ``root/lib/modules/<release>``."""
    run(["depmod", "-b", root, release], what=f"depmod for {release}")
