"""Snapshot boots without a guest: what a template depends on, the two command lines, the campaign's choice."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlx5dev.card import CardConfig
from mlx5image.build import GuestImage
from mlx5lab.campaign.spec import CampaignSpec
from mlx5lab.cli.bench import boot_modes
from mlx5lab.vm import snapshot
from mlx5lab.vm.card import CardServer
from mlx5lab.vm.machine import Machine, MachineConfig
from mlx5lab.vm.snapshot import Template, copy_ram, template_inputs, template_key


def fake_image(tmp: Path) -> GuestImage:
    for name in ("vmlinux", "initrd"):
        (tmp / name).write_bytes(b"x" * 10)
    return GuestImage(kernel_release="6.1.0-57-amd64", package_version="6.1.192-3", kernel=tmp / "vmlinux",
                      pvh=True, initrd=tmp / "initrd", ssh_key=tmp / "key", manifest=tmp / "m.json",
                      modules_dir=tmp, cmdline="console=ttyS0", vmlinuz=tmp / "vmlinux", directory=tmp)


def test_template_key_follows_every_input(tmp_path: Path) -> None:
    img, qemu = fake_image(tmp_path), tmp_path / "qemu"
    qemu.write_bytes(b"q")
    base = dict(cmdline="console=ttyS0 oops=panic", memory_mb=1024, cpus=2, accel="tcg")
    key = template_key(template_inputs(qemu, img, **base))
    assert key == template_key(template_inputs(qemu, img, **base))  # stable
    for change in ({"cmdline": "console=ttyS0"}, {"memory_mb": 512}, {"cpus": 1}, {"accel": "kvm"}):
        assert template_key(template_inputs(qemu, img, **{**base, **change})) != key, change
    (tmp_path / "initrd").write_bytes(b"another variant's modules")  # a variant is another initrd
    assert template_key(template_inputs(qemu, img, **base)) != key


def test_snapshot_machine_restores_and_leaves_the_card_to_hot_plug(tmp_path: Path) -> None:
    img = fake_image(tmp_path)
    card = CardConfig.from_speeds([100000, 25000])
    classic = Machine(MachineConfig(image=img, card=card, workdir=tmp_path / "c"))
    classic.card = CardServer(card, tmp_path / "c" / "card")
    args = classic.qemu_args(Path("/usr/bin/qemu"))
    assert "-incoming" not in args and sum("vfio-user-pci" in a for a in args) == 2
    assert any(a.startswith("memory-backend-memfd") for a in args)

    snap = Machine(MachineConfig(image=img, card=card, workdir=tmp_path / "s", boot="snapshot"))
    snap.card = CardServer(card, tmp_path / "s" / "card")
    snap._ram_copy = tmp_path / "ram"
    args = snap.qemu_args(Path("/usr/bin/qemu"))
    assert args[args.index("-incoming") + 1] == "defer"
    assert not any("vfio-user-pci" in a for a in args)  # the card is hot-plugged after the restore
    assert any(a.startswith("pcie-root-port,id=mlx5rp") for a in args)  # into the port the template saved
    assert "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off" in args  # native PCIe hot-plug (pciehp)
    assert f"memory-backend-file,id=mem,size=1024M,mem-path={tmp_path / 'ram'},share=on" in args
    assert any("append=on" in a for a in args)  # the console goes on from the template's

    devices = snap.card.function_devices()  # what device_add is given, function 0 multifunction
    assert [d["addr"] for d in devices] == ["0.0", "0.1"] and devices[0]["multifunction"] is True
    assert "multifunction" not in devices[1] and json.dumps(devices[1])  # QMP takes it as JSON


def test_ram_copy_keeps_holes(tmp_path: Path) -> None:
    tpl = Template(tmp_path)
    with tpl.ram.open("wb") as f:
        f.seek(256 << 20)
        f.write(b"end")
    copy_ram(tpl, tmp_path / "copy")
    st = (tmp_path / "copy").stat()
    assert st.st_size == (256 << 20) + 3 and st.st_blocks * 512 < (1 << 20)  # sparse, not 256 MiB written


def test_campaign_records_its_boot_mode_and_rejects_others() -> None:
    spec = CampaignSpec(kernel=None, variant="stock", iterations=2, seed=1, boot="snapshot")
    assert spec.plan(1).boot == "snapshot" and CampaignSpec.from_json(spec.to_json()).boot == "snapshot"
    old = {k: v for k, v in spec.to_json().items() if k != "boot"}  # campaign.json of before the option
    assert CampaignSpec.from_json(old).plan(2).boot == "classic"
    with pytest.raises(ValueError, match="boot mode"):
        CampaignSpec(kernel=None, variant="stock", iterations=2, seed=1, boot="warm")
    assert boot_modes("classic,snapshot") == ["classic", "snapshot"]


def test_a_killed_process_ram_copy_is_swept_and_a_live_one_kept(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "ram_dir", lambda: tmp_path)
    dead = tmp_path / f"{snapshot.RAM_COPY_PREFIX}4194305-abc"  # above the largest pid_max: no such process
    live = tmp_path / f"{snapshot.RAM_COPY_PREFIX}{os.getpid()}-def"
    other = tmp_path / "unrelated-1-2"
    for p in (dead, live, other):
        p.write_bytes(b"x")
    new = snapshot.ram_copy_path(0x1F)
    assert not dead.exists() and live.exists() and other.exists()
    assert new.parent == tmp_path and new.name == f"{snapshot.RAM_COPY_PREFIX}{os.getpid()}-1f"
