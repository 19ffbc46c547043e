"""What the debug kernel enables on top of ``x86_64_defconfig`` + ``kvm_guest.config``, and why."""

from __future__ import annotations

from .kconfig import Want

# The suffix of the kernel release (Makefile: KERNELRELEASE = VERSION.PATCHLEVEL.SUBLEVEL + LOCALVERSION),
# so its modules tree never collides with a Debian kernel's.
LOCALVERSION = "-mlx5lab-debug"

DETECTORS: tuple[Want, ...] = (
    Want("KASAN", "y", "lib/Kconfig.kasan: out-of-bounds and use-after-free reports"),
    Want("KASAN_GENERIC", "y", "lib/Kconfig.kasan: the software shadow mode x86_64 supports"),
    Want("KASAN_INLINE", "y", "lib/Kconfig.kasan: inline shadow checks, faster than outline under TCG"),
    Want("PROVE_LOCKING", "y", "lib/Kconfig.debug: lockdep"),
    Want("DETECT_HUNG_TASK", "y", "lib/Kconfig.debug: kernel/hung_task.c"),
    Want("SOFTLOCKUP_DETECTOR", "y", "lib/Kconfig.debug: kernel/watchdog.c"),
    Want("DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT", "y", "lib/Kconfig.debug: DWARF for drgn and the triage"),
    Want("DEBUG_INFO", "y", "selected by the DWARF choice above"),
    Want("KALLSYMS_ALL", "y", "kernel/kallsyms.c: data symbols in System.map-less stack decoding"),
)

GUEST: tuple[Want, ...] = (
    Want("PVH", "y", "arch/x86/Kconfig: the PVH ELF note QEMU's -kernel boots (mlx5image/vmlinux.py); "
                     "this build's image boots its bzImage instead (debugkernel/image.py: PVH_REASON)"),
    Want("VIRTIO_PCI", "y", "initramfs.BOOT_MODULES: the user-networking NIC's bus"),
    Want("VIRTIO_NET", "y", "initramfs.BOOT_MODULES: the user-networking NIC (SSH)"),
    Want("PCI_MSI", "y", "drivers/pci/msi: mlx5_core's EQs use MSI-X vectors (pci_irq.c)"),
    Want("SERIAL_8250_CONSOLE", "y", "image.CMDLINE console=ttyS0"),
    Want("DEVTMPFS", "y", "guest /init mounts devtmpfs"),
    Want("TMPFS", "y", "guest /init mounts tmpfs on /tmp, /run, /dev/shm"),
    Want("BLK_DEV_INITRD", "y", "the guest runs from its initramfs"),
    Want("RD_GZIP", "y", "initramfs.write_initramfs gzips the archive"),
    Want("UNIX98_PTYS", "y", "guest /init mounts devpts for the SSH server's terminals"),
    Want("DEBUG_FS", "y", "guest /init mounts debugfs; mlx5_core's debugfs (debugfs.c)"),
    Want("ACPI", "y", "drivers/misc/pvpanic/pvpanic-mmio.c binds QEMU's pvpanic by ACPI id QEMU0001"),
    Want("PVPANIC", "y", "drivers/misc/pvpanic: the guest's panic signal (machine.py: -device pvpanic)"),
    Want("PVPANIC_MMIO", "m", "initramfs.BOOT_MODULES pvpanic-mmio"),
    Want("PVPANIC_PCI", "m", "initramfs.BOOT_MODULES pvpanic-pci"),
    Want("FW_CFG_SYSFS", "m", "initramfs.BOOT_MODULES qemu_fw_cfg: writes vmcoreinfo for dump-guest-memory"),
    Want("KEXEC", "y", "arch/Kconfig: selects KEXEC_CORE, which selects CRASH_CORE"),
    Want("CRASH_CORE", "y", "drivers/firmware/qemu_fw_cfg.c: fw_cfg_write_vmcoreinfo is #ifdef CONFIG_CRASH_CORE"),
    Want("CRASH_DUMP", "y", "arch/x86/Kconfig: vmcore support, as Debian's kernel has it"),
    Want("MAGIC_SYSRQ", "y", "drivers/tty/sysrq.c: /proc/sysrq-trigger"),
    Want("MODULES", "y", "kernel/module: mlx5_core and the variants are modules"),
    Want("MODULE_UNLOAD", "y", "kernel/module: rmmod between out-of-tree builds"),
    Want("MODULE_SIG", "n", "unsigned out-of-tree variants load without taint complaints"),
    Want("BONDING", "m", "initramfs.STACKING_MODULES bonding"),
    Want("VLAN_8021Q", "m", "initramfs.STACKING_MODULES 8021q"),
)

MLX5: tuple[Want, ...] = (
    Want("NET_VENDOR_MELLANOX", "y", "drivers/net/ethernet/mellanox/Kconfig"),
    Want("PTP_1588_CLOCK", "y", "mlx5/core/Kconfig: MLX5_CORE depends on PTP_1588_CLOCK_OPTIONAL"),
    Want("MLXFW", "m", "mlx5/core/Kconfig: MLX5_CORE depends on MLXFW || !MLXFW; Debian has it"),
    Want("MLX5_CORE", "m", "initramfs.DRIVER_MODULES mlx5_core"),
    Want("MLX5_CORE_EN", "y", "mlx5/core/Kconfig: the Ethernet ports"),
    Want("NET_SWITCHDEV", "y", "mlx5/core/Kconfig: MLX5_ESWITCH depends on it"),
    Want("MLX5_ESWITCH", "y", "as Debian's config-6.1.0-*-amd64"),
    Want("MLX5_MPFS", "y", "as Debian's config-6.1.0-*-amd64"),
    Want("RFS_ACCEL", "y", "mlx5/core/Kconfig: MLX5_EN_ARFS depends on it"),
    Want("MLX5_EN_ARFS", "y", "as Debian's config-6.1.0-*-amd64"),
    Want("MLX5_EN_RXNFC", "y", "as Debian's config-6.1.0-*-amd64"),
    Want("DCB", "y", "mlx5/core/Kconfig: MLX5_CORE_EN_DCB depends on it"),
    Want("MLX5_CORE_EN_DCB", "y", "as Debian's config-6.1.0-*-amd64"),
    Want("NET_SCHED", "y", "net/sched/Kconfig: NET_CLS_ACT depends on it"),
    Want("NET_CLS_ACT", "y", "mlx5/core/Kconfig: MLX5_CLS_ACT depends on it"),
    Want("MLX5_CLS_ACT", "y", "as Debian's config-6.1.0-*-amd64"),
    Want("MLX5_SW_STEERING", "y", "as Debian's config-6.1.0-*-amd64"),
    Want("MLX5_INFINIBAND", "n", "initramfs.EXCLUDED_MODULES mlx5_ib"),
)

IDENTITY: tuple[Want, ...] = (
    Want("LOCALVERSION", f'"{LOCALVERSION}"', "the release suffix, see LOCALVERSION above"),
    Want("LOCALVERSION_AUTO", "n", "scripts/setlocalversion: no '+' or git hash in the release"),
)

WANTED: tuple[Want, ...] = (*DETECTORS, *GUEST, *MLX5, *IDENTITY)
