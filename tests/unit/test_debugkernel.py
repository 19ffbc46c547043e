"""The debug kernel's configuration logic, names and cache key; the no-poison positive control's edits."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx5image.debugkernel import kconfig, recipe
from mlx5image.debugkernel.kconfig import Mismatch, Want, fragment, parse_config, unstuck
from mlx5image.debugkernel.symbols import LOCALVERSION, WANTED
from mlx5image.errors import ImageError
from mlx5image.vulnerable.edits import POISON, VARIANT_B, VARIANT_B_NOPOISON, apply_edits


def test_fragment_lines_and_unset_form() -> None:
    text = fragment([Want("KASAN", "y", ""), Want("MLX5_CORE", "m", ""), Want("MODULE_SIG", "n", ""),
                     Want("LOCALVERSION", '"-x"', "")])
    assert text == 'CONFIG_KASAN=y\nCONFIG_MLX5_CORE=m\n# CONFIG_MODULE_SIG is not set\nCONFIG_LOCALVERSION="-x"\n'


@pytest.mark.parametrize("bad", [Want("kasan", "y", ""), Want("CONFIG_KASAN", "", ""), Want("A B", "y", "")])
def test_fragment_rejects_bad_symbols(bad: Want) -> None:
    with pytest.raises(ValueError):
        fragment([bad])


def test_fragment_rejects_a_symbol_named_twice() -> None:
    with pytest.raises(ValueError, match="twice"):
        fragment([Want("KASAN", "y", ""), Want("KASAN", "n", "")])


def test_parse_config_reads_set_and_unset() -> None:
    cfg = parse_config('#\n# comment\nCONFIG_A=y\nCONFIG_B="s p"\n# CONFIG_C is not set\nCONFIG_D=0x10\n')
    assert cfg == {"A": "y", "B": '"s p"', "C": "n", "D": "0x10"}


def test_unstuck_names_every_symbol_that_did_not_stick() -> None:
    wants = [Want("A", "y", ""), Want("B", "m", ""), Want("C", "y", ""), Want("D", "n", ""), Want("E", "n", "")]
    got = unstuck(wants, parse_config("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_E=y\n"))
    assert got == [Mismatch("B", "m", "y"), Mismatch("C", "y", "n"), Mismatch("E", "n", "y")]
    assert "CONFIG_B: wanted m, got y" in str(got[0])
    assert "not offered" in str(unstuck([Want("Z", "y", "")], {})[0])


def test_wanted_fragment_is_consistent_and_met_by_its_own_assignments() -> None:
    text = fragment(WANTED)
    assert unstuck(WANTED, parse_config(text)) == []
    for needed in ("KASAN", "KASAN_GENERIC", "KASAN_INLINE", "PROVE_LOCKING", "DETECT_HUNG_TASK",
                   "SOFTLOCKUP_DETECTOR", "PVH", "VIRTIO_NET", "VIRTIO_PCI", "PCI_MSI", "NET_VENDOR_MELLANOX",
                   "MLX5_CORE", "MLX5_CORE_EN", "PTP_1588_CLOCK", "PVPANIC_MMIO", "FW_CFG_SYSFS", "CRASH_CORE",
                   "BONDING", "VLAN_8021Q"):
        assert needed in {w.symbol for w in WANTED}
    assert parse_config(text)["MLX5_CORE"] == "m"  # the image builder loads it as a module


def test_fragment_digest_changes_with_the_fragment() -> None:
    a = kconfig.fragment_digest(fragment(WANTED))
    b = kconfig.fragment_digest(fragment([*WANTED, Want("KCOV", "y", "")]))
    assert len(a) == 16 and a != b


def test_names_releases_and_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLX5LAB_CACHE", str(tmp_path))
    assert recipe.is_debug_name("debug-6.1.192") and not recipe.is_debug_name("6.1.0-57-amd64")
    assert not recipe.is_debug_name(None)
    assert recipe.release_of("6.1.192") == "6.1.192" + LOCALVERSION
    folder = recipe.folder_for("6.1.192")
    assert folder.parent == tmp_path / "debug-kernels"
    assert folder.name == f"{recipe.SOURCES['6.1.192']}-{kconfig.fragment_digest(fragment(WANTED))}"
    with pytest.raises(ImageError, match="known: debug-6.1.192"):
        recipe.upstream_of("debug-5.10.1")
    assert recipe.find("debug-6.1.192") is None  # nothing built in this cache
    assert recipe.by_release("6.1.0-57-amd64") is None


def test_load_needs_the_manifest_and_every_file(tmp_path: Path) -> None:
    folder = tmp_path / "6.1.192-3-0123456789abcdef"
    release = "6.1.192" + LOCALVERSION
    for rel in ("build/vmlinux", "build/System.map", "vmlinux.pvh"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text("x")
    (folder / "staging" / "lib" / "modules" / release).mkdir(parents=True)
    assert recipe.load(folder) is None
    (folder / recipe.MANIFEST).write_text(
        f'{{"schema": 1, "name": "debug-6.1.192", "release": "{release}", "source_version": "6.1.192-3", '
        '"build_seconds": 1200.0}')
    dk = recipe.load(folder)
    assert dk is not None and dk.release == release and dk.build_dir == folder / "build"
    (folder / "vmlinux.pvh").unlink()
    assert recipe.load(folder) is None


def test_nopoison_variant_differs_from_variant_b_only_in_the_poisoning(tmp_path: Path) -> None:
    assert [e.name for e in VARIANT_B_NOPOISON] == [e.name for e in VARIANT_B]
    differ = [(a, b) for a, b in zip(VARIANT_B, VARIANT_B_NOPOISON, strict=True) if a != b]
    assert [a.name for a, _ in differ] == ["b/helper"]
    old, new = differ[0]
    assert POISON in old.replacement and POISON not in new.replacement
    assert "dma_pool_destroy(dev->cmd.pool);" in new.replacement and new.anchor == old.anchor
    cmd = tmp_path / "mlx5" / "core" / "cmd.c"
    cmd.parent.mkdir(parents=True)
    cmd.write_text(old.anchor)
    apply_edits(tmp_path, [new])
    assert "mlx5lab_cmd_destroy_pool" in cmd.read_text() and POISON not in cmd.read_text()
