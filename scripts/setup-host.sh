#!/usr/bin/env bash
# Install the Debian packages mlx5lab needs on the host (idempotent; apt runs only if one is missing).
set -euo pipefail

PACKAGES=(
    # QEMU build (qemu-device/build-qemu.sh)
    build-essential ninja-build pkg-config python3-venv libglib2.0-dev libpixman-1-dev libslirp-dev
    libfdt-dev device-tree-compiler flex bison zlib1g-dev bzip2 xz-utils
    # QEMU firmware at run time (qboot.rom, SeaBIOS)
    qemu-system-data seabios
    # guest image (guest-images/): initramfs contents and tools
    busybox-static dropbear-bin ethtool iproute2 openssh-client cpio kmod
    # the fuzzer's report.html, rendered by tests/host/test_fuzz_report_html.py
    chromium
)

# `scripts/setup-host.sh debug-kernel`: what building the debug kernel needs beyond the above
# (guest-images/mlx5image/debugkernel: bc for kernel/time/timeconst.bc, libelf-dev for objtool,
# libssl-dev for scripts/sign-file and certs/extract-cert).
if [ "${1:-}" = debug-kernel ]; then
    PACKAGES=(build-essential bc flex bison libelf-dev libssl-dev xz-utils kmod)
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "error: missing Debian packages: ${missing[*]}" >&2
    echo "       install them as root: apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "[setup] installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2 || { echo "error: apt-get update failed (is Debian's archive reachable?)" >&2; exit 1; }
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || { echo "error: apt-get install ${missing[*]} failed" >&2; exit 1; }
