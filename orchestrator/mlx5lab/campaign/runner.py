"""Running a campaign of any scenario: its image, its iterations, progress, and background triage."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from mlx5image.build import ensure_image
from mlx5image.variants import ensure_variant

from ..rundir import RunDir
from ..triage.background import BackgroundTriage
from .campaign import Campaign
from .outcome import IterationResult
from .pool import default_jobs
from .scenario import IterationPlan

Progress = Callable[[str], None]


def pinned_kernel(kernel: str | None, progress: Progress) -> str:
    """The kernel a campaign records: resolved now (a .deb by its path, else its release), so a resumed
    campaign runs the same kernel even if the distribution's default moved on in between."""
    if kernel and kernel.endswith(".deb"):
        return kernel
    return ensure_image(kernel, progress=progress).kernel_release


def print_progress(line: str) -> None:
    end = "\r" if sys.stderr.isatty() else "\n"
    print(line, file=sys.stderr, end=end, flush=True)


def run_campaign(campaign: Campaign, progress: Progress, *, triage: bool = True, jobs: int | None = None,
                 cluster: str | None = None) -> int:
    """Run every pending iteration of ``campaign``, ``jobs`` guests at a time here (None: what suits this
    machine, :func:`.pool.default_jobs`), or on the Dask cluster at ``cluster`` (as many at a time as its
    workers have guest slots, unless ``jobs`` says fewer); print progress and the final table; return the
    exit status (0 clean, 1 found, 3 infrastructure only). Each crash is triaged on a worker thread while
    the next iteration runs. Ctrl-C keeps every finished iteration and says how to resume."""
    spec = campaign.spec
    started, done = time.monotonic(), 0
    if cluster is None:
        jobs = default_jobs() if jobs is None else jobs
        scenario = spec.make_scenario()
        image = ensure_variant(ensure_image(spec.kernel, progress=progress), spec.variant, progress=progress)
        where = f"kernel {image.kernel_release}, {jobs} guest(s) at a time"

        def one(plan: IterationPlan, folder: RunDir) -> IterationResult:
            return scenario.run_iteration(image, plan, folder)
    else:
        from .cluster import ClusterRunner

        runner = ClusterRunner(cluster, spec, progress)
        one = runner.run_iteration
        jobs = runner.slots if jobs is None else min(jobs, runner.slots)
        where = f"Dask cluster {cluster}: {runner.slots} guest slot(s) on {runner.workers} worker(s)"
    progress(f"campaign {campaign.folder}: {spec.iterations} iterations of {spec.scenario}, variant "
             f"{spec.variant}, seed {spec.seed}, {where}")

    background = BackgroundTriage(on_done=lambda f, r: progress(f"triage {f.name}: {r.verdict}"[:300])) \
        if triage else None

    def on_result(c: Campaign, r: IterationResult) -> None:
        nonlocal done
        done += 1
        print_progress(c.progress_line(started, done) + (f"  last: {r.outcome} {r.title}"[:160]))
        if background is not None and r.outcome.is_finding:
            background.submit(c.iteration_dir(r.iteration))

    try:
        status = campaign.run(one, on_result, jobs=jobs)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        progress(f"interrupted: {len(campaign.results)} finished iterations kept; "
                 f"continue with: mlx5lab race --resume {campaign.folder}")
        raise
    finally:
        if background is not None:
            background.close()
        if cluster is not None:
            runner.close()
    print(file=sys.stderr)
    print(campaign.table())
    return status
