"""Evidence kept for an iteration that crashed or hung: vmcore, oops, console, device traces, identity."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlx5image.build import GuestImage

from ..vm.machine import Machine

log = logging.getLogger("mlx5lab.evidence")
VMCORE_NAME = "vmcore.kdump"


def dump_vmcore(m: Machine, path: Path, timeout: float = 120.0) -> float:
    """Save guest memory in kdump-zlib format (drgn opens it with vmcoreinfo); return seconds taken.

    Needs the guest's ``-device vmcoreinfo`` and its ``qemu_fw_cfg`` module, both always present.
    """
    assert m.qmp is not None
    t0 = time.monotonic()
    path.unlink(missing_ok=True)
    m.qmp.execute("dump-guest-memory", {"paging": False, "protocol": f"file:{path}", "format": "kdump-zlib"},
                  timeout=timeout)
    os.chmod(path, 0o644)  # QEMU creates dumps 0400
    return time.monotonic() - t0


def kernel_identity(image: GuestImage) -> dict[str, Any]:
    ident: dict[str, Any] = {
        "kernel_release": image.kernel_release,
        "package_version": image.package_version,
        "variant": image.variant,
        "image_manifest": str(image.manifest),
    }
    if image.variant_manifest is not None:
        ident["variant_manifest"] = json.loads(image.variant_manifest.read_text())
    return ident


@dataclass
class IterationResult:
    iteration: int
    outcome: str  # clean | panic | hang | infra
    detail: str = ""
    delay_s: float = 0.0
    title: str = ""  # crash title in the style of kernel fuzzers ("general protection fault in dma_pool_alloc")
    signature: str = ""  # groups identical crashes across iterations and campaigns
    duration_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)
    device: list[dict[str, Any]] = field(default_factory=list)

    def write(self, folder: Path) -> Path:
        path = folder / "result.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        tmp.replace(path)
        return path
