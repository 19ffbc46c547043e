"""Fast unit tests of the guest image builder (no network, no QEMU, no kernel package)."""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from mlx5image import cache, debpkg, hosttools, keys, kmod, rootfs, vmlinux
from mlx5image.__main__ import main as cli_main
from mlx5image.assemble import kernel_config
from mlx5image.build import cmdline_for
from mlx5image.cpio import Entry, entries_from_tree, read_archive, write_archive
from mlx5image.elf import has_pvh_note, is_static_executable
from mlx5image.errors import ImageError
from mlx5image.initramfs import CONSOLE, write_initramfs

# --------------------------------------------------------------------------------------------- helpers


def make_elf(notes: list[tuple[bytes, int, bytes]] = (), interp: bool = False, body: bytes = b"") -> bytes:
    """A minimal little-endian ELF64 image with one PT_NOTE segment (and optionally a PT_INTERP)."""

    def note(owner: bytes, ntype: int, desc: bytes) -> bytes:
        name = owner + b"\0"
        return (struct.pack("<III", len(name), len(desc), ntype) + name + b"\0" * (-len(name) % 4)
                + desc + b"\0" * (-len(desc) % 4))

    note_blob = b"".join(note(*n) for n in notes)
    phdrs = [(4, note_blob)] + ([(3, b"/lib64/ld-linux-x86-64.so.2\0")] if interp else [])
    phoff, phentsize = 64, 56
    data_off = phoff + phentsize * len(phdrs)
    table, payload = b"", b""
    for ptype, blob in phdrs:
        off = data_off + len(payload)
        table += struct.pack("<IIQQQQQQ", ptype, 4, off, 0, 0, len(blob), len(blob), 4)
        payload += blob
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x1000000, phoff, 0, 0, 64, phentsize,
                                 len(phdrs), 64, 0, 0)
    return header + table + payload + body


PVH_NOTE = (b"Xen", 18, struct.pack("<I", 0x1000000))
KERNEL_ELF = make_elf([(b"GNU", 3, b"\x11" * 20), PVH_NOTE], body=os.urandom(4096) + b"\0" * 65536)


def kernel_xz(elf: bytes = KERNEL_ELF) -> bytes:
    """Compressed like the kernel's payload: xz with the x86 BCJ filter and CRC32, then the size."""
    filters = [{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2, "preset": 6}]
    return lzma.compress(elf, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters) + \
        struct.pack("<I", len(elf))


def with_boot_header(payload: bytes, setup_sects: int = 3, payload_offset: int = 100) -> bytes:
    """A bzImage-shaped blob: setup sectors with an x86 boot header pointing at ``payload``."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x20F)
    struct.pack_into("<II", setup, 0x248, payload_offset, len(payload))
    # the decompressor stub: junk that happens to contain a fake XZ magic
    stub = b"\x90" * 40 + vmlinux.XZ_MAGIC + b"not really xz" + b"\xcc" * (payload_offset - 59)
    return bytes(setup) + stub + payload + b"\0" * 777


# ---------------------------------------------------------------------------------------------- cache


def test_cache_dir_prefers_mlx5lab_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX5LAB_CACHE", str(tmp_path / "a" / "b"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()


def test_cache_dir_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.delenv("MLX5LAB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "mlx5lab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "mlx5lab"
    assert (tmp_path / "home" / ".cache" / "mlx5lab").is_dir()


# ------------------------------------------------------------------------------------- vmlinux / ELF


def test_elf_note_parser():
    assert has_pvh_note(KERNEL_ELF)
    assert not has_pvh_note(make_elf([(b"GNU", 3, b"x" * 20)]))
    assert not has_pvh_note(make_elf([(b"Xen", 17, b"abcd")]))  # other Xen note type
    assert not has_pvh_note(b"MZ not an elf" * 10)


def test_static_detection():
    assert is_static_executable(make_elf())
    assert not is_static_executable(make_elf(interp=True))


def test_xz_finder_skips_fake_magic_and_tolerates_trailing_data():
    payload = kernel_xz()
    blob = b"\x00" * 512 + vmlinux.XZ_MAGIC + b"garbage" * 10 + payload + b"TRAILER" * 100
    offsets = vmlinux.find_xz_streams(blob)
    assert offsets == [512, 512 + 6 + 70]
    with pytest.raises(ValueError):
        vmlinux.decompress_xz(blob, offsets[0])
    assert vmlinux.decompress_xz(blob, offsets[1]) == KERNEL_ELF
    result = vmlinux.extract_vmlinux(blob)  # no boot header: found by scanning
    assert result.elf == KERNEL_ELF and result.compression == "xz" and result.reason == ""


def test_extract_uses_boot_header():
    blob = with_boot_header(kernel_xz())
    start, length = vmlinux.header_payload(blob)
    assert blob[start : start + 6] == vmlinux.XZ_MAGIC and length == len(kernel_xz())
    assert vmlinux.extract_vmlinux(blob).elf == KERNEL_ELF


def test_truncated_stream_is_rejected():
    payload = kernel_xz()
    with pytest.raises(ValueError, match="truncated"):
        vmlinux.decompress_xz(payload[: len(payload) // 2], 0)


def test_extract_reports_missing_pvh_note():
    blob = with_boot_header(kernel_xz(make_elf([(b"GNU", 3, b"x" * 20)], body=b"\0" * 1000)))
    result = vmlinux.extract_vmlinux(blob)
    assert result.elf is None and "PVH" in result.reason


def test_extract_gzip_payload_and_unsupported_zstd():
    gz = gzip.compress(KERNEL_ELF, mtime=0)
    result = vmlinux.extract_vmlinux(with_boot_header(gz))
    assert result.elf == KERNEL_ELF and result.compression == "gzip"
    zstd_like = b"\x28\xb5\x2f\xfd" + b"\x00" * 200
    result = vmlinux.extract_vmlinux(with_boot_header(zstd_like))
    assert result.elf is None and result.compression == "zstd" and "zstd" in result.reason


# --------------------------------------------------------------------------------- module resolver

FAKE_DEPENDS = {
    "mlx5_core": ["psample", "pci-hyperv-intf", "mlxfw"],
    "psample": [],
    "pci_hyperv_intf": [],
    "mlxfw": [],
    "virtio_net": ["virtio_ring", "virtio", "net_failover"],
    "virtio": ["virtio_ring"],
    "virtio_ring": [],
    "net_failover": ["failover"],
    "failover": [],
    "mlx5_ib": ["mlx5_core", "ib_core"],
    "ib_core": [],
}


def fake_modinfo(name: str) -> list[str]:
    return FAKE_DEPENDS[kmod.normalize(name)]


def test_resolver_orders_dependencies_first_and_once():
    order = kmod.resolve_dependencies(["virtio_net", "mlx5_core", "virtio"], fake_modinfo)
    assert sorted(order) == sorted(["virtio_ring", "virtio", "failover", "net_failover", "virtio_net",
                                    "psample", "pci-hyperv-intf", "mlxfw", "mlx5_core"])
    for mod, deps in FAKE_DEPENDS.items():
        if mod in order:
            for dep in deps:
                assert order.index(dep) < order.index(mod), (dep, mod)


def test_resolver_treats_dash_and_underscore_alike():
    depends = {"a": ["b-c"], "b_c": ["d"], "d": []}
    assert kmod.resolve_dependencies(["a", "b_c"], lambda n: depends[kmod.normalize(n)]) == ["d", "b-c", "a"]


def test_resolver_refuses_excluded_and_cycles():
    with pytest.raises(ValueError, match="mlx5_ib"):
        kmod.resolve_dependencies(["mlx5_ib"], fake_modinfo, exclude=["mlx5_ib"])
    with pytest.raises(ValueError, match="excluded"):
        kmod.resolve_dependencies(["x"], lambda n: {"x": ["mlx5-ib"]}.get(n, []), exclude=["mlx5_ib"])
    with pytest.raises(kmod.CycleError):
        kmod.resolve_dependencies(["a"], lambda n: {"a": ["b"], "b": ["a"]}[n])


def test_modinfo_value_parsers():
    assert kmod.split_list("psample,pci-hyperv-intf,mlxfw") == ["psample", "pci-hyperv-intf", "mlxfw"]
    assert kmod.split_list("") == []
    assert kmod.parse_softdeps("pre: crc32c\npost: a b") == ["crc32c", "a", "b"]


# ------------------------------------------------------------------------------------------------ cpio

ENTRIES = [
    Entry("bin", stat.S_IFDIR | 0o755),
    Entry("bin/busybox", stat.S_IFREG | 0o755, b"\x7fELF" + b"x" * 1001),
    Entry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
    Entry("dev", stat.S_IFDIR | 0o755),
    CONSOLE,
    Entry("root", stat.S_IFDIR | 0o700),
    Entry("root/.ssh", stat.S_IFDIR | 0o700),
    Entry("root/.ssh/authorized_keys", stat.S_IFREG | 0o600, b"ssh-ed25519 AAAA test\n"),
    Entry("empty", stat.S_IFREG | 0o644),
]


def test_cpio_round_trip_in_python(tmp_path):
    out = tmp_path / "a.cpio"
    with open(out, "wb") as f:
        write_archive(f, ENTRIES)
    data = out.read_bytes()
    assert len(data) % 4 == 0
    assert read_archive(data) == ENTRIES


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio not installed")
def test_cpio_tool_reads_our_archive(tmp_path):
    out = tmp_path / "a.cpio"
    with open(out, "wb") as f:
        write_archive(f, ENTRIES)
    with open(out, "rb") as archive:
        listing = subprocess.run(["cpio", "-itv", "--quiet"], stdin=archive, capture_output=True,
                                 text=True, check=True).stdout.splitlines()
    assert [line.split()[-1] if "->" not in line else line.split()[-3] for line in listing] == \
        [e.path for e in ENTRIES]
    perms = {line.split()[-1]: line.split()[0] for line in listing if "->" not in line}
    assert perms["root/.ssh/authorized_keys"] == "-rw-------"
    assert perms["root"] == "drwx------"
    assert perms["dev/console"].startswith("crw-------")
    assert all(line.split()[2:4] == ["root", "root"] for line in listing)


def test_tree_to_initramfs(tmp_path):
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tree / "bin").mkdir()
    (tree / "bin" / "busybox").write_bytes(b"bb")
    (tree / "bin" / "sh").symlink_to("busybox")
    (tree / "sbin").symlink_to("bin")
    entries = write_initramfs(tree, tmp_path / "i.cpio.gz")
    parsed = read_archive(gzip.decompress((tmp_path / "i.cpio.gz").read_bytes()))
    assert parsed == entries
    assert [e.path for e in parsed] == ["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "etc",
                                        "etc/passwd", "sbin"]
    assert [e.path for e in entries_from_tree(tree)] == ["bin", "bin/busybox", "bin/sh", "etc", "etc/passwd",
                                                         "sbin"]


# ---------------------------------------------------------------------------------- host tool output

LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd5b1f0000)
\tlibtomcrypt.so.1 => /lib/x86_64-linux-gnu/libtomcrypt.so.1 (0x00007f83a06a9000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f83a044e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f83a07c9000)
"""


def test_parse_ldd():
    assert rootfs.parse_ldd(LDD_OUTPUT) == [Path("/lib/x86_64-linux-gnu/libtomcrypt.so.1"),
                                           Path("/lib/x86_64-linux-gnu/libc.so.6"),
                                           Path("/lib64/ld-linux-x86-64.so.2")]
    with pytest.raises(ImageError, match="dropbear-bin"):
        rootfs.parse_ldd("\tlibfoo.so.1 => not found\n")


def test_apt_and_config_parsers():
    stanza = "Package: linux-image-6.1.0-56-amd64\nVersion: 6.1.192-2\nDescription: x\n more\n\nPackage: y\n"
    assert debpkg.parse_stanza(stanza) == {"Package": "linux-image-6.1.0-56-amd64", "Version": "6.1.192-2",
                                           "Description": "x"}
    assert debpkg.release_of_package("linux-image-6.1.0-56-amd64") == "6.1.0-56-amd64"
    assert debpkg.release_of_package("linux-image-6.1.0-56-amd64-unsigned") == "6.1.0-56-amd64"
    for bad in ("linux-image-amd64", "linux-image-6.1.0-56-amd64-dbg", "linux-headers-6.1.0-56-amd64"):
        with pytest.raises(ImageError):
            debpkg.release_of_package(bad)
    cfg = kernel_config("# comment\nCONFIG_PVH=y\n# CONFIG_FOO is not set\nCONFIG_X=\"a=b\"\n")
    assert cfg == {"CONFIG_PVH": "y", "CONFIG_X": '"a=b"'}


def test_cmdline():
    pvh, bz = cmdline_for(True), cmdline_for(False)
    for arg in ("console=ttyS0", "net.ifnames=0", "ipv6.disable=1", "modprobe.blacklist=mlx5_ib",
                "rcupdate.rcu_cpu_stall_timeout=300"):
        assert arg in pvh.split()
    assert "quiet" not in pvh.split() and "nokaslr" not in pvh.split() and "nokaslr" in bz.split()


def test_apt_state_stamp_tracks_changes(tmp_path):
    (tmp_path / "lists").mkdir()
    f = tmp_path / "lists" / "x_Packages"
    f.write_text("a")
    first = debpkg.apt_state_stamp((str(tmp_path / "lists"),))
    assert first == debpkg.apt_state_stamp((str(tmp_path / "lists"),))
    f.write_text("ab")
    assert first != debpkg.apt_state_stamp((str(tmp_path / "lists"),))


def test_missing_tool_names_the_package(monkeypatch):
    monkeypatch.setattr(hosttools, "find_tool", lambda name: None)
    with pytest.raises(ImageError, match="apt-get install -y kmod"):
        hosttools.require_tool("modinfo")


def test_cli_reports_missing_deb_without_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLX5LAB_CACHE", str(tmp_path))
    assert cli_main(["--kernel", str(tmp_path / "nope.deb")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------ keys

needs_dropbear = pytest.mark.skipif(hosttools.find_tool("dropbearkey") is None, reason="dropbear-bin missing")


@needs_dropbear
@pytest.mark.parametrize("with_ssh_keygen", [True, False])
def test_keys_are_made_once_and_load_in_paramiko(tmp_path, monkeypatch, with_ssh_keygen):
    paramiko = pytest.importorskip("paramiko")
    if with_ssh_keygen and hosttools.find_tool("ssh-keygen") is None:
        pytest.skip("ssh-keygen missing")
    if not with_ssh_keygen:
        real = keys.find_tool
        monkeypatch.setattr(keys, "find_tool", lambda name: None if name == "ssh-keygen" else real(name))
    first = keys.ensure_keys(tmp_path / "keys")
    second = keys.ensure_keys(tmp_path / "keys")
    assert first == second
    assert stat.S_IMODE(first.client_private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    loaded = paramiko.Ed25519Key.from_private_key_file(str(first.client_private))
    assert first.client_public.split()[:2] == [loaded.get_name(), loaded.get_base64()]
    assert first.host_public.startswith("ssh-ed25519 ")


# ------------------------------------------------------------------------------------------- /init

INIT = Path(rootfs.__file__).with_name("init")


def test_init_script_syntax_and_markers():
    text = INIT.read_text()
    for needle in ("MLX5LAB-INIT", "SSH-READY", "modprobe mlx5_core", "0x15b3", "10.0.2.15/24", "10.0.2.2",
                   "hung_task_timeout_secs", "setsid dropbear", "exec /bin/init"):
        assert needle in text
    assert text.index("MLX5LAB-INIT") < text.index("mount -t sysfs")  # printed as early as possible
    assert os.access(INIT, os.X_OK)
    shell = shutil.which("busybox")
    argv = [shell, "sh", "-n", str(INIT)] if shell else ["sh", "-n", str(INIT)]
    subprocess.run(argv, check=True)


def test_leftover_scratch_folders_are_recognised_per_release():
    from mlx5image.build import _is_leftover

    assert _is_leftover(".tmp-6.1.0-56-amd64-ab_c12xy", "6.1.0-56-amd64")
    assert _is_leftover(".old-6.1.0-56-amd64-4242", "6.1.0-56-amd64")
    assert not _is_leftover("6.1.0-56-amd64", "6.1.0-56-amd64")
    assert not _is_leftover(".tmp-6.1.0-56-amd64-rt-abcdefgh", "6.1.0-56-amd64")  # another release's build
    assert not _is_leftover(".6.1.0-56-amd64.lock", "6.1.0-56-amd64")
