"""A campaign's reports: summary.json, junit.xml and the table printed at the end."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

from ..rundir import RunDir, atomic_write, atomic_write_json
from .outcome import Outcome

if TYPE_CHECKING:
    from .campaign import Campaign


def crash_titles(campaign: Campaign) -> dict[str, int]:
    titles = Counter(f"{r.title} [{r.signature or '-'}]" for r in campaign.ordered_results()
                     if r.outcome.is_finding and r.title)
    return dict(titles)


def summary(campaign: Campaign) -> dict[str, Any]:
    entries = [r.summary_entry() for r in campaign.ordered_results()]
    return {"campaign": str(campaign.folder), "spec": campaign.spec.to_json(), "counts": dict(campaign.counts()),
            "finished": len(entries), "planned": campaign.spec.iterations, "exit_status": campaign.exit_status(),
            "crash_titles": crash_titles(campaign), "iterations": entries}


def junit(campaign: Campaign) -> str:
    spec = campaign.spec
    results = campaign.ordered_results()
    c = campaign.counts()
    kind = "race" if spec.scenario == "reboot-race" else spec.scenario  # the reboot race keeps its old names
    classname = f"{kind}.{spec.variant}"
    suite = ET.Element("testsuite", name=f"mlx5lab-{kind}-{spec.variant}", tests=str(len(results)),
                       failures=str(sum(c[o.value] for o in Outcome if o.is_finding)), errors=str(c[Outcome.INFRA]))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=classname, name=f"iteration-{r.iteration:04d}",
                             time=f"{r.duration_s:.3f}")
        if r.outcome.is_finding:
            fail = ET.SubElement(case, "failure", message=f"{r.outcome}: {r.title}", type=r.outcome.value)
            fail.text = f"evidence in {campaign.folder / r.dir}"
        elif r.outcome is Outcome.INFRA:
            ET.SubElement(case, "error", message=r.detail or "infrastructure failure", type="infra")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def write_reports(campaign: Campaign) -> None:
    atomic_write_json(campaign.dir.summary, summary(campaign))
    atomic_write(campaign.dir.junit, junit(campaign))


def table(campaign: Campaign) -> str:
    spec = campaign.spec
    c = campaign.counts()
    scenario = "" if spec.scenario == "reboot-race" else f"scenario {spec.scenario}, "
    rows = [f"campaign {campaign.folder}",
            f"  {scenario}variant {spec.variant}, kernel {spec.kernel or 'default'}, seed {spec.seed}, "
            f"{len(campaign.results)}/{spec.iterations} iterations",
            "  " + "  ".join(f"{o.value} {c[o.value]}" for o in Outcome)]
    for title, n in sorted(crash_titles(campaign).items(), key=lambda kv: -kv[1]):
        rows.append(f"  {n:3d} x {title}")
    vmcores = [d.vmcore for d in campaign.dir.iterations() if d.vmcore.is_file()]
    if vmcores:
        rows.append(f"  vmcores: {len(vmcores)} in {campaign.folder}/{campaign.dir.ITERATION_GLOB}/{RunDir.VMCORE}")
    return "\n".join(rows)
