#!/usr/bin/env bash
# Obtain a qemu-system-x86_64 that has the vfio-user-pci client (QEMU >= 10.1).
#
# Prints the path of the binary on its last line of stdout. Order:
#   1. $MLX5LAB_QEMU, if set (must offer vfio-user-pci, else error);
#   2. an installed qemu-system-x86_64 that offers vfio-user-pci;
#   3. a cached build under $CACHE/qemu/<version>/;
#   4. a fresh build from Debian's pinned `qemu` source package (deb-src of sid, private apt config).
# Progress goes to stderr. Idempotent; safe to re-run.
set -euo pipefail

QEMU_DEB_VERSION="1:10.2.2+ds-1"
QEMU_UPSTREAM="10.2.2"
QEMU_ORIG="qemu_10.2.2+ds.orig.tar.xz"
QEMU_ORIG_SHA256="be05230fe47a6937cd29f28f562932c8125f9c93c2a82c625198f7a4aa601dfb"

CACHE="${MLX5LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlx5lab}"
PREFIX="$CACHE/qemu/$QEMU_UPSTREAM"

log() { echo "[qemu] $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

has_vfio_user() { "$1" -device help 2>/dev/null | grep -q '"vfio-user-pci"'; }

if [ -n "${MLX5LAB_QEMU:-}" ]; then
    has_vfio_user "$MLX5LAB_QEMU" || die "MLX5LAB_QEMU=$MLX5LAB_QEMU does not offer -device vfio-user-pci (needs QEMU >= 10.1)"
    echo "$MLX5LAB_QEMU"; exit 0
fi
if sys=$(command -v qemu-system-x86_64) && has_vfio_user "$sys"; then
    echo "$sys"; exit 0
fi
if [ -x "$PREFIX/bin/qemu-system-x86_64" ] && has_vfio_user "$PREFIX/bin/qemu-system-x86_64"; then
    echo "$PREFIX/bin/qemu-system-x86_64"; exit 0
fi

# Debian's source package, through a private apt configuration in the cache: a deb-src line for sid
# that the host's own apt never sees (no entry under /etc/apt, no sid binaries, ever).
APT_DIR="$CACHE/qemu/apt"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/sources.list.d"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" \
    > "$APT_DIR/sources.list"
APT=(apt-get -q -o Dir::Etc::SourceList="$APT_DIR/sources.list" -o Dir::Etc::SourceParts="$APT_DIR/sources.list.d"
     -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)

WORK="$CACHE/qemu/build-$QEMU_UPSTREAM"
mkdir -p "$WORK"
cd "$WORK"
if [ ! -f "$QEMU_ORIG" ] || ! echo "$QEMU_ORIG_SHA256  $QEMU_ORIG" | sha256sum -c --status; then
    log "downloading Debian source qemu=$QEMU_DEB_VERSION (sid)"
    rm -f "$QEMU_ORIG"
    "${APT[@]}" update >&2 || die "apt-get update of Debian sid's sources failed (is Debian's archive reachable?)"
    "${APT[@]}" source --download-only "qemu=$QEMU_DEB_VERSION" >&2 \
        || die "could not download qemu=$QEMU_DEB_VERSION from Debian's sid sources; it may have left the archive. Set MLX5LAB_QEMU to a QEMU >= 10.1, or update QEMU_DEB_VERSION and its checksum in $0"
fi
echo "$QEMU_ORIG_SHA256  $QEMU_ORIG" | sha256sum -c --status || die "checksum mismatch for $WORK/$QEMU_ORIG"

rm -rf "qemu-$QEMU_UPSTREAM"
log "unpacking $QEMU_ORIG"
tar -xf "$QEMU_ORIG"
cd "qemu-$QEMU_UPSTREAM"

# The +ds tarball has no firmware blobs; firmware comes from Debian's packages at run time.
# pc-bios/meson.build unpacks edk2 blobs whenever bzip2 is found: skip that step.
grep -q 'unpack_edk2_blobs = bzip2.found()' meson.build || die "QEMU's meson.build changed: the edk2 blob step was not found"
sed -i 's/unpack_edk2_blobs = bzip2.found()/unpack_edk2_blobs = false/' meson.build

BUILD_VENV="$CACHE/qemu/build-venv"
if [ ! -x "$BUILD_VENV/bin/python" ]; then
    log "creating the build virtualenv (meson, pycotap)"
    python3 -m venv "$BUILD_VENV"
fi
"$BUILD_VENV/bin/pip" install -q 'meson==1.9.1' 'pycotap==1.3.1' >&2

log "configuring"
./configure --prefix="$PREFIX" --python="$BUILD_VENV/bin/python" \
    --target-list=x86_64-softmmu --without-default-features --enable-kvm --enable-tcg --enable-slirp \
    --disable-docs --disable-werror --disable-install-blobs >&2
log "building (about 5 minutes on 2 cores)"
ninja -C build -j"$(nproc)" qemu-system-x86_64 >&2
mkdir -p "$PREFIX/bin"
cp build/qemu-system-x86_64 "$PREFIX/bin/qemu-system-x86_64.tmp"
mv "$PREFIX/bin/qemu-system-x86_64.tmp" "$PREFIX/bin/qemu-system-x86_64"
has_vfio_user "$PREFIX/bin/qemu-system-x86_64" || die "built QEMU lacks vfio-user-pci"
cd "$WORK" && rm -rf "qemu-$QEMU_UPSTREAM"
log "built $PREFIX/bin/qemu-system-x86_64"
echo "$PREFIX/bin/qemu-system-x86_64"
