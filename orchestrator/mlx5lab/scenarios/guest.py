"""What every scenario's iteration does around its own part: boot the card, check it came up, record.

:func:`run_guest_iteration` owns the iteration's life: a Machine in the iteration folder, a result that is
``infra`` until the scenario decides otherwise, and whatever breaks afterwards only adds to ``detail`` (a
kernel result is never turned into ``infra`` by a later failure of a status query or a dump).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable

from mlx5dev.card import CardConfig
from mlx5image.build import GuestImage

from .. import Mlx5LabError
from ..campaign.evidence import keep_crash, kernel_identity
from ..campaign.outcome import IterationResult, Outcome
from ..campaign.scenario import IterationPlan
from ..rundir import RunDir
from ..vm.console import PORTS_MARKER
from ..vm.machine import Machine, MachineConfig

Body = Callable[[Machine, IterationResult], None]


def run_guest_iteration(image: GuestImage, plan: IterationPlan, run: RunDir, card: CardConfig,
                        body: Body, *, cmdline: str = "", boot_timeout: float = 90.0) -> IterationResult:
    """Boot ``image`` with ``card`` in ``run``, wait for SSH and every port, then call ``body(m, result)``.

    ``body`` decides the outcome (and keeps a crash's evidence with :func:`keep_crash`). The result,
    with the device traces and the console named in ``files``, is written to result.json at the end.
    """
    result = IterationResult(iteration=plan.iteration, outcome=Outcome.INFRA, delay_s=plan.delay_s,
                             identity=kernel_identity(image))
    t0 = time.monotonic()
    cfg = MachineConfig(image=image, card=card, workdir=run.path, extra_cmdline=cmdline, boot=plan.boot)
    phases: dict[str, float] = {}
    try:
        with Machine(cfg) as m:
            phases["start_s"] = time.monotonic() - t0
            try:
                if boot_card(m, run, result, len(card.functions), boot_timeout):
                    # a snapshot boot's guest markers are its template's boot: its own steps are host times
                    phases.update(m.phases if m.snapshot else guest_phases(m.console_text()))
                    t_body = time.monotonic()
                    body(m, result)
                    phases["body_s"] = time.monotonic() - t_body
            finally:
                if m.card is not None:
                    result.files.update({f"trace_fn{i}": run.relative(m.card.trace_file(i))
                                         for i in range(len(card.functions))})
                t_close = time.monotonic()
        phases["teardown_s"] = time.monotonic() - t_close
    except Exception as exc:  # noqa: BLE001 - whatever broke, the iteration ends with a recorded result
        note = f"{type(exc).__name__}: {exc}"
        if result.outcome is Outcome.INFRA and not result.detail:
            result.detail = note
        else:
            result.detail = f"{result.detail}; after the verdict: {note}".lstrip("; ")
    result.duration_s = round(time.monotonic() - t0, 3)
    result.timings.update({f"phase_{k}": round(v, 3) for k, v in phases.items()})
    result.files["console"] = run.CONSOLE
    result.write(run)
    return result


# The guest init's markers (guest-images/mlx5image/init) carry the guest's uptime: where a boot's time goes.
GUEST_PHASES = (("MLX5LAB-INIT", "guest_init_s"), ("MLX5LAB-MLX5", "guest_mlx5_loaded_s"),
                ("MLX5LAB-PORTS", "guest_ports_up_s"), ("SSH-READY", "guest_ssh_ready_s"))


def guest_phases(console: str) -> dict[str, float]:
    """Guest uptime at each boot marker of the first boot in ``console``."""
    out: dict[str, float] = {}
    for line in console.splitlines():
        for marker, key in GUEST_PHASES:
            if line.startswith(marker + " ") and key not in out:
                with contextlib.suppress(IndexError, ValueError):
                    out[key] = float(line.split()[1])
    return out


def boot_card(m: Machine, run: RunDir, result: IterationResult, functions: int, timeout: float) -> bool:
    """Wait for SSH and for every mlx5 port; False (with the outcome and detail set) if the guest did not
    come up. A panic while booting is a kernel result, with its evidence."""
    try:
        result.timings["ssh_ready_s"] = round(m.wait_ssh(timeout=timeout), 3)
    except (TimeoutError, ConnectionError, OSError, Mlx5LabError) as exc:
        if m.qmp is not None and m.qmp.events.wait_for({"GUEST_PANICKED"}, timeout=0) is not None:
            result.outcome, result.detail = Outcome.PANIC, "the guest panicked while booting"
            keep_crash(m, run, result, "panic while booting (no console report)")
        else:
            result.detail = f"SSH never came up: {exc}"
        return False
    own = m.console_text()[m.console_offset:]
    ports_line = next((x for x in own.splitlines() if PORTS_MARKER in x), "")
    if len(marker_ports(ports_line)) == functions:
        return True
    # The serial console is shared with printk, which can cut into the marker's line (seen: a "Link up"
    # in the middle of the interface list). The guest itself is then asked which ports are up.
    seen = ports_line or f"no {PORTS_MARKER} line"
    try:
        up = m.run(MLX5_PORTS_UP, timeout=30).stdout.split()
    except (TimeoutError, ConnectionError, OSError, EOFError, Mlx5LabError) as exc:
        result.detail = f"the card did not come up: {seen} (and asking the guest failed: {exc})"
        return False
    if len(up) == functions:
        return True
    result.detail = (f"the card did not come up: {seen}; the guest has {len(up)} of {functions} mlx5 ports up"
                     f"{': ' + ' '.join(up) if up else ''}")
    return False


PRINTK_STAMP = re.compile(r"\[\s*\d+\.\d+\]")
# one line per mlx5 netdev that is up (IFF_UP in its flags): what the marker lists
MLX5_PORTS_UP = ("for n in /sys/class/net/*; do [ \"$n/device/driver\" -ef /sys/bus/pci/drivers/mlx5_core ] && "
                 "[ $(( $(cat $n/flags) & 1 )) = 1 ] && echo ${n##*/}; done 2>/dev/null; true")


def marker_ports(line: str) -> list[str]:
    """The interfaces a ``MLX5LAB-PORTS <uptime> <if>...`` line names, up to any kernel message that the
    console put in the middle of it."""
    if PORTS_MARKER not in line:
        return []
    rest = PRINTK_STAMP.split(line[line.index(PORTS_MARKER):], maxsplit=1)[0]
    return rest.split()[2:]
