"""Every field of the ``mlx5_ifc`` layouts checked against the guest kernel's own sources.

The layouts in ``mlx5dev.mlx5.ifc`` (``cmds``, ``contexts``, ``caps``, ``regs``) carry the names of the
``struct mlx5_ifc_<name>_bits`` of ``include/linux/mlx5/mlx5_ifc*.h``; their size and every field's bit
offset and width must match. ``mbox_in`` and ``mbox_out`` are declared in
``drivers/net/ethernet/mellanox/mlx5/core/cmd.c`` instead. The headers are Debian's
``linux-headers-<release>`` of the guest image's kernel (installed by `make setup`, which builds the positive
control against them), found through that package's Makefile, which includes the ``-common`` tree that
holds ``include/``; ``cmd.c`` comes from the same kernel's ``linux-source`` package. ``MLX5_IFC_DIR``
names another folder of ``mlx5_ifc*.h`` files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mlx5dev.mlx5.ifc import caps, cmds, contexts, regs
from mlx5dev.mlx5.layout import Layout

if TYPE_CHECKING:
    from .conftest import Unavailable

_TOK = re.compile(r"\w+|[{};\[\]]")
Members = list[tuple[str, object, int]]  # (field, None | struct name | anonymous (kind, members), count)


def parse_ifc(files: list[Path]) -> dict[str, tuple[str, Members]]:
    """A small parser of the ``mlx5_ifc`` bit-unit structs: name -> (struct|union, members)."""
    text = "\n".join(p.read_text() for p in files)
    text = re.sub(r"/\*.*?\*/|//[^\n]*|^#[^\n]*", "", text, flags=re.S | re.M)
    toks = _TOK.findall(text)

    def dims(i: int) -> tuple[int, int]:
        n = 1
        while toks[i] == "[":
            if toks[i + 1] == "]":
                n, i = 0, i + 2
                continue
            try:
                n *= int(toks[i + 1], 0)
            except ValueError:
                n = 0  # a dimension given by a macro: flexible for our purposes
            i += 3
        return n, i

    def body(i: int, kind: str) -> tuple[tuple[str, Members], int]:
        i += 1
        members: Members = []
        while toks[i] != "}":
            if toks[i] == "u8":
                name = toks[i + 1]
                n, i = dims(i + 2)
                members.append((name, None, n))
            else:
                if toks[i + 1] == "{":
                    typ, i = body(i + 1, toks[i])
                else:
                    typ, i = re.sub(r"^mlx5_ifc_|_bits$", "", toks[i + 1]), i + 2
                name = toks[i]
                n, i = dims(i + 1)
                members.append((name, typ, n))
            assert toks[i] == ";", toks[i - 3 : i + 3]
            i += 1
        return (kind, members), i + 1

    defs: dict[str, tuple[str, Members]] = {}
    i = 0
    while i < len(toks) - 2:
        if toks[i] in ("struct", "union") and toks[i + 1].startswith("mlx5_ifc_") and toks[i + 2] == "{":
            name = re.sub(r"^mlx5_ifc_|_bits$", "", toks[i + 1])
            defs[name], i = body(i + 2, toks[i])
        else:
            i += 1
    return defs


class Ifc:
    def __init__(self, files: list[Path]) -> None:
        self.defs = parse_ifc(files)

    def _get(self, t: object) -> tuple[str, Members]:
        return t if isinstance(t, tuple) else self.defs[t]  # type: ignore[return-value,index]

    def size(self, t: object) -> int:
        kind, members = self._get(t)
        sizes = [self.size(tt) * n if tt else n for _f, tt, n in members]
        return (max(sizes) if sizes else 0) if kind == "union" else sum(sizes)

    def fields(self, t: object, base: int = 0, prefix: str = "") -> dict[str, tuple[int, int]]:
        """Flattened ``a.b.c`` -> (bit offset, width) for every member, nested ones included."""
        kind, members = self._get(t)
        out: dict[str, tuple[int, int]] = {}
        off = base
        for name, tt, n in members:
            width = self.size(tt) * n if tt else n
            out[prefix + name] = (off, width)
            if tt and n == 1:
                out.update(self.fields(tt, off, prefix + name + "."))
            if kind != "union":
                off += width
        return out


IFC_LAYOUTS = list(
    {
        id(obj): obj
        for mod in (cmds, contexts, caps, regs)
        for obj in vars(mod).values()
        if isinstance(obj, Layout)
    }.values()
)


def headers_include(release: str) -> Path:
    """``include/`` of Debian's headers for ``release``: the -common tree its Makefile includes."""
    arch = Path("/usr/src") / f"linux-headers-{release}"
    makefile = arch / "Makefile"
    m = re.search(r"^include\s+(\S+)/Makefile\s*$", makefile.read_text(), re.M) if makefile.is_file() else None
    return (Path(m.group(1)) if m else arch) / "include"


@pytest.fixture(scope="module")
def ifc_headers(release: str, unavailable: Unavailable) -> list[Path]:
    """The guest kernel's ``mlx5_ifc*.h`` files."""
    override = os.environ.get("MLX5_IFC_DIR")
    folder = Path(override) if override else headers_include(release) / "linux" / "mlx5"
    files = sorted(folder.glob("mlx5_ifc*.h"))
    if folder / "mlx5_ifc.h" not in files:
        unavailable(f"mlx5_ifc.h not found in {folder} (package linux-headers-{release}): run `make setup` "
                    "or set MLX5_IFC_DIR")
    return files


@pytest.fixture(scope="module")
def ifc(ifc_headers: list[Path], mellanox_source: Path) -> Ifc:
    return Ifc([*ifc_headers, mellanox_source / "mlx5" / "core" / "cmd.c"])


def test_headers_are_the_guest_kernels(release: str, ifc_headers: list[Path]) -> None:
    """The guest kernel's headers, not whichever linux-headers-* is installed or sorts last."""
    abi = "-".join(release.split("-")[:2])  # 6.1.0-57-amd64 -> 6.1.0-57
    folder = os.environ.get("MLX5_IFC_DIR") or f"/usr/src/linux-headers-{abi}-"
    assert str(ifc_headers[0]).startswith(folder), ifc_headers[0]


def test_the_parser_sees_what_it_checks(ifc: Ifc) -> None:
    assert {"mbox_in", "mbox_out", "cmd_hca_cap", "ptys_reg", "create_eq_in"} <= set(ifc.defs)
    assert ifc.size("mbox_in") == ifc.size("mbox_out") == 0x80
    assert ifc.fields("mbox_in")["op_mod"] == (0x30, 0x10)


@pytest.mark.parametrize("layout", IFC_LAYOUTS, ids=[lay.name for lay in IFC_LAYOUTS])
def test_layout_matches_mlx5_ifc(ifc: Ifc, layout: Layout) -> None:
    assert layout.name in ifc.defs, f"{layout.name} is not an mlx5_ifc struct"
    assert layout.size * 8 == ifc.size(layout.name), "struct size"
    want = ifc.fields(layout.name)
    for name, fld in layout.fields.items():
        assert name in want, f"{layout.name}.{name} not in mlx5_ifc.h"
        assert (fld.bit, fld.width) == want[name], f"{layout.name}.{name}"
