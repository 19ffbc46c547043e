"""One Debian kernel of each suite from bullseye to sid boots with the card: both functions bound, both ports up.

Each kernel is found by its release name alone (the private apt configuration of ``mlx5image.suites`` finds
its suite), downloaded with apt, and built into an image from whatever layout its packages have (bullseye:
one package; trixie: merged /usr, compressed modules; sid: linux-image, linux-binary, linux-modules and
linux-base). One guest boot per kernel. The first build of each image is timed and printed (``-s`` shows
it); the README lists the figures. Run with ``make test-kernels`` (not part of ``make test``: the first run
downloads about 350 MB; 2 min 41 s from an empty cache, 92 s cached). ``$MLX5LAB_TEST_KERNELS``
(comma-separated releases) replaces the list.
"""

from __future__ import annotations

import os
import time

import pytest

from mlx5dev.card import CardConfig
from mlx5image.build import ensure_image
from mlx5image.errors import ImageError
from mlx5lab.vm.machine import Machine, MachineConfig

pytestmark = pytest.mark.kernels

# One per suite, the newest each suite had when this list was last checked (December 2026).
KERNELS = {
    "bullseye": "5.10.0-46-amd64",
    "bookworm": "6.1.0-57-amd64",
    "trixie": "6.12.118+deb13-amd64",
    "sid": "7.2.13+deb14-amd64",
}
SPEEDS = (100000, 25000)
BDFS = ("0000:01:00.0", "0000:01:00.1")


def _kernels() -> list[str]:
    env = os.environ.get("MLX5LAB_TEST_KERNELS")
    return [k.strip() for k in env.split(",") if k.strip()] if env else list(KERNELS.values())


@pytest.mark.timeout(900)
@pytest.mark.parametrize("release", _kernels())
def test_kernel_binds_both_functions_and_ports_come_up(release: str, tmp_path) -> None:
    started = time.monotonic()
    try:
        image = ensure_image(release, progress=lambda m: print(f"[{release}] {m}"))
    except ImageError as exc:
        pytest.fail(f"no image for {release}: {exc}", pytrace=False)
    print(f"[{release}] image ready in {time.monotonic() - started:.1f} s ({image.directory})")
    assert image.kernel_release == release
    with Machine(MachineConfig(image=image, card=CardConfig.from_speeds(list(SPEEDS)),
                               workdir=tmp_path / "run")) as m:
        boot = m.wait_ssh(timeout=240)
        print(f"[{release}] SSH after {boot:.1f} s")
        assert m.run("uname -r").stdout.strip() == release
        # /init brings the ports up once mlx5_core has created them; wait for both to report their link.
        script = ("for i in $(seq 60); do n=0; for d in /sys/bus/pci/drivers/mlx5_core/0000:*; do "
                  "for f in $d/net/*/operstate; do [ \"$(cat $f)\" = up ] && n=$((n+1)); done; done; "
                  "[ $n -ge 2 ] && break; sleep 1; done; "
                  "for d in /sys/bus/pci/drivers/mlx5_core/0000:*; do i=$(ls $d/net); "
                  "echo \"${d##*/} $i $(cat $d/net/$i/operstate) $(cat $d/net/$i/speed)\"; done")
        res = m.run(script, timeout=120)
        assert res.status == 0, res.stderr
        seen = {line.split()[0]: line.split()[1:] for line in res.stdout.splitlines() if line.strip()}
        dmesg = m.run("dmesg | grep -i mlx5 | tail -20").stdout
        assert sorted(seen) == list(BDFS), f"functions bound: {sorted(seen)}\n{dmesg}"
        for bdf, speed in zip(BDFS, SPEEDS, strict=True):
            _iface, state, mbps = seen[bdf]
            assert (state, int(mbps)) == ("up", speed), f"{bdf}: {seen[bdf]}\n{dmesg}"
    print(f"[{release}] verified in {time.monotonic() - started:.1f} s in total")
