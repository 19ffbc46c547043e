"""A campaign's iterations on a Dask cluster (``distributed``): the workers boot the guests, this machine
keeps the campaign folder and the journal.

Each iteration is one task, ``run_remote(spec, i)``, that needs one ``guest`` resource (workers are
started with ``--nthreads 1 --resources guest=N``, N guests per worker). The worker prepares its own cache
on first use (QEMU, guest image, variant: what ``make setup`` would build, and it says so in the task's
answer), runs iteration i into a temporary folder, and answers with the result and the folder as a
gzipped tarball, which :class:`ClusterRunner` unpacks into the campaign's iteration folder. A worker lost
mid-task makes the scheduler run the task again elsewhere (``distributed.scheduler.allowed-failures``);
a task that lost every worker it tried (``KilledWorker``) is :class:`.pool.IterationLost`: never a kernel
result, not recorded, run again by ``--resume``.
"""

from __future__ import annotations

import functools
import io
import os
import socket
import subprocess
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import Mlx5LabError
from ..rundir import RunDir
from .outcome import IterationResult
from .pool import IterationLost
from .scenario import IterationPlan
from .spec import CampaignSpec

GUEST_RESOURCE = "guest"
CONNECT_TIMEOUT_S = 30
Progress = Callable[[str], None]


# -- the worker's side ----------------------------------------------------------------------------------
_PREPARE_LOCK = threading.Lock()


@functools.cache
def _qemu_ready() -> str:
    """Build QEMU into this worker's cache if it has none (the project's own build script); what it did."""
    from ..vm.qemu import find_qemu

    try:
        return f"QEMU {find_qemu()}"
    except (FileNotFoundError, Mlx5LabError):
        script = Path(__file__).resolve().parents[3] / "qemu-device" / "build-qemu.sh"
        if not script.is_file():
            raise Mlx5LabError(f"no QEMU on worker {socket.gethostname()} and no {script} to build it: install "
                               "this project from a checkout and run `make setup` there") from None
        subprocess.run([str(script)], check=True, stdout=subprocess.DEVNULL)
        return f"QEMU built by {script}: {find_qemu()}"


def _prepare(spec: CampaignSpec, notes: list[str]) -> Any:  # noqa: ANN401 - a GuestImage
    from mlx5image.build import ensure_image
    from mlx5image.variants import ensure_variant

    with _PREPARE_LOCK:  # a worker with several guest slots prepares once
        notes.append(_qemu_ready())
        return ensure_variant(ensure_image(spec.kernel, progress=notes.append), spec.variant,
                              progress=notes.append)


def _regular(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return info if info.isreg() or info.isdir() else None  # no sockets, links or devices


def pack(folder: Path) -> bytes:
    """``folder``'s regular files and subfolders as a gzipped tarball."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=".", filter=_regular)
    return buf.getvalue()


def unpack(data: bytes, folder: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")  # regular files and folders under ``folder`` only


def run_remote(spec_json: dict[str, Any], iteration: int) -> dict[str, Any]:
    """On a worker: iteration ``iteration`` of the campaign ``spec_json``; its result and folder."""
    spec = CampaignSpec.from_json(spec_json)
    notes: list[str] = []
    image = _prepare(spec, notes)
    with tempfile.TemporaryDirectory(prefix=f"mlx5lab-iter-{iteration:04d}-") as tmp:
        run = RunDir(Path(tmp) / "iter")
        run.path.mkdir()
        result = spec.make_scenario().run_iteration(image, spec.plan(iteration), run)
        result.write(run)
        return {"result": result.to_json(), "folder": pack(run.path), "notes": notes,
                "worker": f"{socket.gethostname()}:{os.getpid()}"}


# -- the submitting side --------------------------------------------------------------------------------
class ClusterRunner:
    """Sends iterations to the cluster at ``address`` and brings each one's folder back."""

    def __init__(self, address: str, spec: CampaignSpec | None, progress: Progress) -> None:
        from distributed import Client

        self.spec, self.progress = spec, progress
        try:
            self.client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            raise Mlx5LabError(f"no Dask scheduler answers at {address}: {exc}") from exc
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        self.workers = len(workers)
        self.slots = int(sum(w.get("resources", {}).get(GUEST_RESOURCE, 0) for w in workers.values()))
        if not self.slots:
            self.client.close()
            raise Mlx5LabError(f"the cluster at {address} has {self.workers} worker(s) and no '{GUEST_RESOURCE}' "
                               f"slot: start workers with `dask worker {address} --nthreads 1 --resources "
                               f"{GUEST_RESOURCE}=1` (one guest per worker thread)")
        self._seen_workers: set[str] = set()

    def run_iteration(self, plan: IterationPlan, folder: RunDir) -> IterationResult:
        """Iteration ``plan.iteration`` of the campaign this runner was made for, into ``folder``."""
        assert self.spec is not None, "a ClusterRunner made without a campaign runs specs given to run_spec"
        return self.run_spec(self.spec, plan, folder)

    def run_spec(self, spec: CampaignSpec, plan: IterationPlan, folder: RunDir) -> IterationResult:
        """Iteration ``plan.iteration`` of ``spec`` (the fuzzer sends each program as a one-off spec of the
        fuzz-program scenario) on a worker, its folder unpacked into ``folder``."""
        from distributed import KilledWorker

        fut = self.client.submit(run_remote, spec.to_json(), plan.iteration, pure=False,
                                 resources={GUEST_RESOURCE: 1},
                                 key=f"mlx5lab-iter-{plan.iteration:04d}-{uuid.uuid4().hex[:8]}")
        try:
            answer = fut.result()
        except KilledWorker as exc:
            raise IterationLost(f"every worker that ran it was lost ({exc})") from exc
        finally:
            fut.release()
        worker = answer["worker"]
        if worker not in self._seen_workers:
            self._seen_workers.add(worker)
            self.progress(f"worker {worker}: " + "; ".join(answer["notes"][-3:]))
        unpack(answer["folder"], folder.path)
        return IterationResult.from_json(answer["result"])

    def close(self) -> None:
        self.client.close()
