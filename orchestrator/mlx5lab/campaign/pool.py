"""Running a campaign's iterations N at a time: a local pool of guests, each its own card and folders.

Iterations run on the threads of a ``ThreadPoolExecutor``; each starts its QEMU and device server from its
pool thread, which lives until the pool shuts down (the children's parent-death signal, ``setpriv
--pdeathsig``, fires when the thread that started them exits, so a short-lived thread would kill its own
guest). Results are recorded by the calling thread, in the order they finish; every journal line is the
same as with one job because iteration i's plan depends on (seed, i) only. Ctrl-C cancels what has not
started, kills the running guests' QEMU (:func:`mlx5lab.vm.machine.kill_all_guests`) and records none of
them: their folders are set aside on ``--resume`` as any cut-off iteration's.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable, Iterable

from ..rundir import RunDir
from ..vm.machine import kill_all_guests
from .outcome import IterationResult
from .scenario import IterationPlan

GUEST_MEMORY_GIB = 4  # what one guest takes with its QEMU and device server (README: machine requirements)
GUEST_CORES = 2  # a guest has 2 vCPUs (vm/qemu.py); under TCG each is a host thread


class IterationLost(Exception):
    """An iteration that ran nowhere to its end for a reason outside the kernel (a Dask worker lost on
    every try): it is not a kernel result, so it is not recorded and ``--resume`` runs it again."""


def free_memory_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return 0.0


def default_jobs() -> int:
    """Guests this machine runs at once without starving them: one per two cores and per 4 GiB free."""
    cores = os.cpu_count() or 1
    return max(1, min(cores // GUEST_CORES, int(free_memory_gib() // GUEST_MEMORY_GIB)))


def parse_jobs(text: str) -> int:
    """``--jobs N`` or ``--jobs auto`` (:func:`default_jobs`)."""
    if text == "auto":
        return default_jobs()
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"--jobs is a number of guests or auto, not {text!r}") from None
    if n < 1:
        raise ValueError("--jobs needs at least 1")
    return n


RunOne = Callable[[IterationPlan, RunDir], IterationResult]
Started = Callable[[int], RunDir]  # makes iteration i's (empty) folder
Finished = Callable[[IterationResult], None]
Lost = Callable[[int, IterationLost], None]


def run_pool(pending: Iterable[int], plan: Callable[[int], IterationPlan], folder: Started, run_one: RunOne,
             finished: Finished, lost: Lost, jobs: int) -> None:
    """Run ``pending`` iterations ``jobs`` at a time; ``finished`` is called here, in this thread, for
    each result as it comes; an :class:`IterationLost` goes to ``lost``; any other exception stops the
    pool (what has not started is cancelled, running guests killed) and propagates."""
    with cf.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mlx5lab-guest") as pool:
        futures: dict[cf.Future[IterationResult], int] = {}
        try:
            for i in pending:  # the folder is made when the iteration starts, not when it is queued
                futures[pool.submit(lambda i=i: run_one(plan(i), folder(i)))] = i
            for fut in cf.as_completed(futures):
                try:
                    finished(fut.result())
                except IterationLost as exc:
                    lost(futures[fut], exc)
        except BaseException:
            for fut in futures:
                fut.cancel()
            kill_all_guests()
            raise
