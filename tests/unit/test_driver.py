"""The driver builder's recipe (hashing, variant names), patch application and failure reports, and the
kernel-layout resolution of the image builder. No compiler, no apt, no kernel package."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlx5image import debpkg, driver
from mlx5image.driver import Recipe, apply_patch, recipe_of, strip_level, tree_digest, variant_name
from mlx5image.errors import ImageError
from mlx5image.vulnerable.edits import VARIANT_B, recipe_digest
from mlx5image.vulnerable.kbuild import MAKE_VARS, STRIP_ARGS, compiler_errors, kbuild

MAIN_C = "static int probe_one(void)\n{\n\tint err;\n\n\terr = 0;\n\treturn err;\n}\n"
GOOD = """--- a/drivers/net/ethernet/mellanox/mlx5/core/main.c
+++ b/drivers/net/ethernet/mellanox/mlx5/core/main.c
@@ -2,5 +2,6 @@
 {
 \tint err;
\x20
+\tpr_info("mlx5lab: probe\\n");
 \terr = 0;
 \treturn err;
"""
BAD = GOOD.replace(" \terr = 0;", " \terr = 1;")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLX5LAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tree(root: Path) -> Path:
    core = root / "mlx5" / "core"
    core.mkdir(parents=True)
    (core / "main.c").write_text(MAIN_C)
    (core / "Makefile").write_text("obj-m += mlx5_core.o\n")
    return root


# -- recipe hashing -----------------------------------------------------------------------------------


def test_plain_positive_control_keeps_its_key() -> None:
    assert Recipe("vulnerable").digest("6.1.192-3") == recipe_digest(VARIANT_B, *MAKE_VARS, *STRIP_ARGS)[:16]
    assert Recipe("vulnerable").digest("6.1.192-3") == Recipe("vulnerable").digest("6.1.192-4")
    assert Recipe("vulnerable").label == "vulnerable" and Recipe("stock", ()).plain


def test_digest_covers_kernel_patch_contents_order_and_base(tmp_path: Path) -> None:
    a, b, a2 = tmp_path / "a.patch", tmp_path / "b.patch", tmp_path / "copy-of-a.patch"
    a.write_text(GOOD)
    b.write_text(BAD)
    a2.write_text(GOOD)
    one = Recipe("stock", (a,)).digest("6.1.192-3")
    assert one == Recipe("stock", (a2,)).digest("6.1.192-3")  # contents, not names
    assert one != Recipe("stock", (a,)).digest("6.1.192-4")  # the kernel
    assert one != Recipe("vulnerable", (a,)).digest("6.1.192-3")  # the base's edits
    assert one != Recipe("stock", (b,)).digest("6.1.192-3")
    assert Recipe("stock", (a, b)).digest("v") != Recipe("stock", (b, a)).digest("v")  # the order
    assert Recipe("stock", (a,)).label == "stock-patched"
    a.write_text(GOOD + " \n")
    assert Recipe("stock", (a,)).digest("6.1.192-3") != one


def test_tree_digest_ignores_build_products(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    first = tree_digest(root)
    (root / "mlx5" / "core" / "main.o").write_bytes(b"obj")
    (root / "mlx5" / "core" / ".main.o.cmd").write_text("cmd")
    assert tree_digest(root) == first
    (root / "mlx5" / "core" / "main.c").write_text(MAIN_C + "\n")
    assert tree_digest(root) != first


def test_variant_names_round_trip_through_the_inputs_store(cache: Path, tmp_path: Path) -> None:
    patch = tmp_path / "fix.patch"
    patch.write_text(GOOD)
    kernel_tree = tmp_path / "linux"
    _tree(kernel_tree / driver.MELLANOX)
    name = variant_name("vulnerable", [patch], kernel_tree)
    assert name.startswith("vulnerable+patch:") and "+src:" in name
    patch.write_text(BAD)  # the developer edits the file: the stored copy is what the name means
    recipe = recipe_of(name)
    assert recipe.base == "vulnerable" and recipe.patches[0].read_text() == GOOD
    assert recipe.module_src is not None and (recipe.module_src / "mlx5" / "core" / "main.c").is_file()
    assert recipe_of("stock") == Recipe("stock")
    with pytest.raises(ImageError, match="missing from the cache"):
        recipe_of("stock+patch:0123456789abcdef")
    with pytest.raises(ImageError, match="base must be one of"):
        recipe_of("other+patch:0123456789abcdef")
    with pytest.raises(ImageError, match="not an mlx5 source tree"):
        variant_name("stock", [], tmp_path)


# -- patches -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "level"), [
    ("b/drivers/net/ethernet/mellanox/mlx5/core/main.c", 5),
    ("linux-6.1/drivers/net/ethernet/mellanox/mlx5/core/en_main.c", 5),
    ("b/mlx5/core/main.c", 1),
    ("mlx5/core/main.c", 0),
    ("b/drivers/net/ethernet/mellanox/mlxfw/mlxfw.h", 5),
])
def test_strip_level(target: str, level: int) -> None:
    assert strip_level(target) == level


def test_patch_applies(tmp_path: Path) -> None:
    root = _tree(tmp_path / "mellanox")
    patch = tmp_path / "good.patch"
    patch.write_text(GOOD)
    summary = apply_patch(patch, root, "good.patch")
    assert "mlx5/core/main.c" in summary
    assert 'pr_info("mlx5lab: probe\\n");' in (root / "mlx5" / "core" / "main.c").read_text()


def test_failing_patch_shows_its_rejected_hunks(tmp_path: Path) -> None:
    root = _tree(tmp_path / "mellanox")
    patch = tmp_path / "bad.patch"
    patch.write_text(BAD)
    with pytest.raises(ImageError) as info:
        apply_patch(patch, root, "bad.patch")
    msg = str(info.value)
    assert "patch bad.patch does not apply" in msg and "1 out of 1 hunk FAILED" in msg
    assert "rejected hunks:" in msg and "--- mlx5/core/main.c.rej" in msg
    assert '+\tpr_info("mlx5lab: probe\\n");' in msg and "-\terr = 1;" not in msg


def test_patch_outside_the_driver_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "mellanox")
    patch = tmp_path / "core.patch"
    patch.write_text(GOOD.replace("drivers/net/ethernet/mellanox/mlx5/core/main.c", "kernel/reboot.c"))
    with pytest.raises(ImageError, match="kernel/reboot.c, which is outside drivers/net/ethernet/mellanox"):
        apply_patch(patch, root, "core.patch")
    patch.write_text("not a diff\n")
    with pytest.raises(ImageError, match="changes no file"):
        apply_patch(patch, root, "core.patch")


# -- build errors --------------------------------------------------------------------------------------

GCC_LOG = """  CC [M]  /x/mlx5/core/main.o
/x/mlx5/core/main.c: In function 'probe_one':
/x/mlx5/core/main.c:12:9: error: 'undefined_thing' undeclared (first use in this function)
   12 |         undefined_thing = 1;
      |         ^~~~~~~~~~~~~~~
make[2]: *** [scripts/Makefile.build:250: /x/mlx5/core/main.o] Error 1
"""


def test_compiler_errors_are_quoted() -> None:
    errors = compiler_errors(GCC_LOG)
    assert errors[0] == "/x/mlx5/core/main.c:12:9: error: 'undefined_thing' undeclared (first use in this function)"
    assert "undefined_thing = 1;" in errors[1] and "^~~" in errors[2]
    assert all("make[2]" not in e for e in errors)


def test_build_error_shows_the_compiler_message_and_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make = bin_dir / "make"
    make.write_text("#!/bin/sh\ncat <<'EOF'\n" + GCC_LOG + "EOF\nexit 2\n")
    make.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    log = tmp_path / "build.log"
    with pytest.raises(ImageError) as info:
        kbuild(tmp_path, tmp_path, "mlx5_core", log, lambda _m: None)
    msg = str(info.value)
    assert f"see {log}" in msg and "compiler errors:\n/x/mlx5/core/main.c:12:9: error: 'undefined_thing'" in msg


# -- kernel layouts ------------------------------------------------------------------------------------


def test_split_kernel_parts_from_depends() -> None:
    sid = ("dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.2.13+deb14-amd64 "
           "(= 7.2.13-1), linux-binary-7.2.13+deb14-amd64 (= 7.2.13-1), linux-modules-7.2.13+deb14-amd64 (= 7.2.13-1)")
    assert debpkg.kernel_parts("7.2.13+deb14-amd64", sid) == [
        "linux-base-7.2.13+deb14-amd64", "linux-binary-7.2.13+deb14-amd64", "linux-modules-7.2.13+deb14-amd64"]
    assert debpkg.kernel_parts("6.12.118+deb13-amd64", "kmod, initramfs-tools (>= 0.120+deb8u2)") == []


@pytest.mark.parametrize("layout", ["boot", "usr-lib-modules"])
def test_kernel_files_are_found_in_either_layout(tmp_path: Path, layout: str) -> None:
    rel = "9.9.9-1-amd64"
    moddir = tmp_path / "usr" / "lib" / "modules" / rel
    (moddir / "kernel").mkdir(parents=True)
    if layout == "boot":
        (tmp_path / "boot").mkdir()
        (tmp_path / "boot" / f"vmlinuz-{rel}").write_bytes(b"k")
        (tmp_path / "boot" / f"config-{rel}").write_text("CONFIG_X=y\n")
    else:
        (moddir / "vmlinuz").write_bytes(b"k")
        (moddir / "config").write_text("CONFIG_X=y\n")
    files = debpkg.locate(tmp_path, rel, ["x.deb"])
    assert files.vmlinuz.read_bytes() == b"k" and files.config.is_file()
    assert (tmp_path / "lib" / "modules" / rel / "kernel").is_dir()  # lib -> usr/lib for kmod -b


def test_missing_kernel_parts_are_named(tmp_path: Path) -> None:
    rel = "7.2.13+deb14-amd64"
    (tmp_path / "usr" / "lib" / "modules" / rel).mkdir(parents=True)
    (tmp_path / "usr" / "lib" / "modules" / rel / "config").write_text("")
    with pytest.raises(ImageError) as info:
        debpkg.locate(tmp_path, rel, ["linux-image-7.2.13+deb14-amd64_7.2.13-1_amd64.deb"])
    msg = str(info.value)
    assert "vmlinuz (looked for boot/vmlinuz-7.2.13+deb14-amd64" in msg and "the modules" in msg
    assert f"linux-binary-{rel}, linux-modules-{rel}" in msg and "config" not in msg.split("lack")[1].split(".")[0]


def test_a_split_kernel_given_by_path_needs_its_parts(tmp_path: Path) -> None:
    if subprocess.run(["which", "dpkg-deb"], capture_output=True).returncode != 0:
        pytest.fail("dpkg-deb is needed (Debian's dpkg)")
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: linux-image-7.2.13+deb14-amd64\nVersion: 7.2.13-1\nArchitecture: amd64\nMaintainer: x <x@x>\n"
        "Depends: linux-binary-7.2.13+deb14-amd64 (= 7.2.13-1), linux-modules-7.2.13+deb14-amd64 (= 7.2.13-1)\n"
        "Description: test\n")
    deb = tmp_path / "image.deb"
    subprocess.run(["dpkg-deb", "-b", pkg, deb], check=True, capture_output=True)
    with pytest.raises(ImageError, match="needs linux-binary-7.2.13\\+deb14-amd64, linux-modules-7.2.13"):
        debpkg.resolve_kernel(str(deb), lambda _m: None)


class _FakeTree:
    """What initramfs.select_modules asks of a kernel's module tree, for a kernel with ``have``."""

    def __init__(self, root: Path, have: set[str]) -> None:
        self.release, self.moddir, self.have = "5.10.0-46-amd64", root, have

    def exists(self, name: str) -> bool:
        return name.replace("-", "_") in self.have

    def depends_with_softdeps(self, name: str) -> list[str]:
        return []

    def is_builtin(self, name: str) -> bool:
        return False

    def path(self, name: str) -> Path:
        return self.moddir / f"{name}.ko"


GUEST_MODULES = {"virtio_pci", "virtio_net", "qemu_fw_cfg", "mlx5_core", "bonding", "8021q"}


def test_modules_a_kernel_lacks_are_replaced_or_named(tmp_path: Path) -> None:
    from mlx5image.initramfs import select_modules

    old = select_modules(_FakeTree(tmp_path, GUEST_MODULES | {"pvpanic"}))  # 5.10: one pvpanic module
    assert "pvpanic" in old.boot and "pvpanic-pci" not in old.order
    new = select_modules(_FakeTree(tmp_path, GUEST_MODULES | {"pvpanic_mmio", "pvpanic_pci"}))
    assert new.boot == ["virtio_pci", "virtio_net", "pvpanic-mmio", "pvpanic-pci", "qemu_fw_cfg"]
    with pytest.raises(ImageError, match="has no module pvpanic-mmio or pvpanic, bonding \\(neither"):
        select_modules(_FakeTree(tmp_path, GUEST_MODULES - {"bonding"}))


@pytest.mark.parametrize(("argv", "expected"), [
    (["race", "--variant", "vulnerable"], "vulnerable+patch:{p}"),
    (["fuzz", "--workdir", "w", "--programs", "1"], "stock+patch:{p}"),
    (["image", "--variant", "stock", "--variant", "vulnerable"], ["stock+patch:{p}", "vulnerable+patch:{p}"]),
    (["image"], ["stock+patch:{p}"]),
])
def test_patch_options_fold_into_the_variant(cache: Path, tmp_path: Path, argv: list[str],
                                             expected: str | list[str]) -> None:
    from mlx5lab.cli import build_parser, common

    patch = tmp_path / "fix.patch"
    patch.write_text(GOOD)
    key = driver.store_patch(patch)
    args = build_parser().parse_args([*argv, "--patch", str(patch)])
    common.fold_driver_options(args)
    want = [e.format(p=key) for e in expected] if isinstance(expected, list) else expected.format(p=key)
    assert args.variant == want
    plain = build_parser().parse_args(argv)
    common.fold_driver_options(plain)
    assert "+" not in str(plain.variant)
