"""The fuzz loop without a guest: a simulated target stands in for the boots, so the journal, resume,
corpus, crash store, minimisation and reports of :mod:`mlx5lab.fuzz.manager` are checked in seconds."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mlx5lab.campaign.outcome import IterationResult, Outcome
from mlx5lab.crash import crash_report
from mlx5lab.fuzz import manager
from mlx5lab.fuzz.compile import compile_program, device_path_action, guest_path_shell
from mlx5lab.fuzz.ops import full_args, vocabulary
from mlx5lab.fuzz.program import Op, parse
from mlx5lab.fuzz.workdir import FuzzDir
from mlx5lab.rundir import RunDir

_GPF = ("[   9.1] general protection fault, probably for non-canonical address 0xdead000000006b10: 0000 [#1]\n"
        "[   9.1] CPU: 1 PID: 161 Comm: {comm} Tainted: G OE 6.1.0-57-amd64 #1 Debian 6.1.192-3\n"
        "[   9.1] RIP: 0010:dma_pool_alloc+0x1b/0x1d0\n[   9.1] Call Trace:\n[   9.1]  <TASK>\n"
        "[   9.1]  mlx5_alloc_cmd_msg+0x2e/0x100 [mlx5_core]\n[   9.1]  cmd_exec+0x1d8/0x7c0 [mlx5_core]\n"
        "[   9.1]  mlx5_cmd_do+0x1e/0x40 [mlx5_core]\n[   9.1]  mlx5_access_reg+0xf0/0x160 [mlx5_core]\n"
        "{route}[   9.1] Kernel panic - not syncing: Fatal exception\n")
# one fault, two ways into the driver (as the positive control has): a speed read's PTYS query, and the
# stats work that a statistics read queues
CRASH = _GPF.format(comm="mlx5lab-read",
                    route="[   9.1]  mlx5_query_port_ptys+0x78/0xa0 [mlx5_core]\n"
                    "[   9.1]  mlx5e_ethtool_get_link_ksettings+0x72/0x570 [mlx5_core]\n"
                    "[   9.1]  speed_show+0x70/0xd0\n")
CRASH_STATS = _GPF.format(comm="kworker/u4:3",
                          route="[   9.1]  mlx5e_stats_grp_802_3_update_stats+0x79/0xa0 [mlx5_core]\n"
                          "[   9.1]  mlx5e_update_stats_work+0x35/0x50 [mlx5_core]\n"
                          "[   9.1]  process_one_work+0x1c7/0x380\n")
PTYS_ENTRY, STATS_ENTRY = "mlx5e_ethtool_get_link_ksettings", "mlx5e_update_stats_work"
# a devlink port dump blocked on the lock a dead firmware's recovery holds (hung_task_panic=0: no panic)
HUNG = "".join(f"[  31.2] {line}\n" for line in (
    "INFO: task devlink:210 blocked for more than 10 seconds.",
    "      Tainted: G           OE      6.1.0-57-amd64 #1 Debian 6.1.192-3",
    '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
    "task:devlink         state:D stack:0     pid:210   ppid:1      flags:0x00004002", "Call Trace:", " <TASK>",
    " __schedule+0x34d/0x9e0", " schedule+0x5a/0xd0", " __mutex_lock.constprop.0+0x399/0x700",
    " devlink_nl_cmd_port_get_dumpit+0x3f/0x130", " netlink_dump+0x17a/0x340", " genl_rcv+0x24/0x40",
    " </TASK>"))
HANG_S, STOPPED_S = 80.0, 20.0  # a hang's try: to the program's timeout, or to its report (stop_at)


def simulated_run(self: manager.Fuzzer, program, index: int, plan_seed: int, stop_at: str = "",  # noqa: ANN001
                  folder: RunDir | None = None):
    """Crashes (GPF in dma_pool_alloc) iff the program reads speed or statistics in the background before a
    reboot: through the stats work when a statistics reader is there, else through the speed read's PTYS query;
    hangs (a hung devlink port dump, :data:`HUNG`) iff a ``device fw_dead`` comes before a devlink port read,
    for :data:`HANG_S`, or :data:`STOPPED_S` when ``stop_at`` is the hang's signature. Every program leaves a
    small device trace, different per path, for coverage; every call's (stop_at, outcome, duration) is kept
    in ``self.calls``; a try's run (``folder``) must be new."""
    run = folder if folder is not None else self.dir.run(index, program.hash())
    run.path.mkdir(parents=True, exist_ok=folder is None)
    ops = program.ops

    def first_bg(name: str) -> int | None:
        return next((i for i, o in enumerate(ops) if o.kind == "read" and o.name == name and o.background), None)

    def first(kind: str, name: str) -> int | None:
        return next((i for i, o in enumerate(ops) if o.kind == kind and o.name == name), None)

    reboot = first("path", "reboot")
    stats, speed = first_bg("statistics"), first_bg("speed")
    dead, port = first("device", "fw_dead"), first("read", "devlink-port")
    text, outcome, duration = None, Outcome.PANIC, 1.0
    if reboot is not None and stats is not None and stats < reboot:
        text = CRASH_STATS
    elif reboot is not None and speed is not None and speed < reboot:
        text = CRASH
    elif dead is not None and port is not None and dead < port:
        text, outcome = HUNG, Outcome.HANG
        duration = STOPPED_S if stop_at and stop_at == manager_signature(HUNG) else HANG_S
    crashed = text is not None
    run.console.write_text(text or "[   1.0] clean\n")
    run.card.path.mkdir(exist_ok=True)
    records = [{"kind": "cmd", "function": "fn0", "op": "ACCESS_REG" if o.kind == "read" else "TEARDOWN_HCA",
                "opcode": 0x805, "op_mod": 1, "status": 0, "status_name": "OK", "reg": o.name}
               for o in ops if o.kind in ("read", "path")]
    run.card.trace(0).write_text("".join(json.dumps(r) + "\n" for r in records))
    result = IterationResult(index, outcome if crashed else Outcome.CLEAN, duration_s=duration)
    if text is not None:
        (run.path / RunDir.OOPS).write_text(text)
    result.write(run)
    self.__dict__.setdefault("calls", []).append((stop_at, result.outcome, duration))
    return run, result


def rewrite_clean(run: RunDir, index: int) -> IterationResult:
    """Make a simulated run folder a clean one (a crash that did not come back this time)."""
    run.console.write_text("[   1.0] clean\n")
    (run.path / RunDir.OOPS).unlink(missing_ok=True)
    result = IterationResult(index, Outcome.CLEAN, duration_s=1.0)
    result.write(run)
    return result


def manager_signature(console: str) -> str:
    report = crash_report(console)
    assert report is not None
    return report.signature


@pytest.fixture
def fuzzer_factory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(manager.Fuzzer, "_image", lambda self: None)
    monkeypatch.setattr(manager.Fuzzer, "run", simulated_run)

    def make(workdir_name: str = "fz", **kw) -> manager.Fuzzer:  # noqa: ANN003
        cfg = manager.FuzzConfig(workdir=tmp_path / workdir_name, **kw)
        return manager.Fuzzer(cfg, lambda _m: None)

    return make


SEED = ("read speed threads=4 &\nread duplex &\nsleep 0.5\npath unbind fn=1\npath bind fn=1\n"
        "path reboot force=true\nwait\n")


def test_loop_finds_records_minimises_and_resumes(fuzzer_factory) -> None:  # noqa: ANN001
    f = fuzzer_factory(programs=6, seed=3, seed_programs=(SEED,), minimize_tries=40, repro_runs=5)
    status = f.loop()
    assert status == 1  # a new bug
    bugs = f.store.bugs()
    assert [b.title for b in bugs] == ["general protection fault in dma_pool_alloc"]
    repro = bugs[0].repro
    assert repro is not None and repro.rate == 1.0
    minimal = parse((f.dir.crash(bugs[0].signature).repro).read_text())
    assert len(minimal.active_ops()) <= 3  # the reader and the reboot
    assert {(o.kind, o.name) for o in minimal.active_ops()} >= {("read", "speed"), ("path", "reboot")}
    journal = [json.loads(x) for x in f.dir.journal.read_text().splitlines()]
    assert [e["index"] for e in journal] == list(range(6)) and journal[0]["origin"] == "seed"
    # the minimisation's tries have folders of their own, named after the bug, beside the executions'
    names = {p.name for p in f.dir.runs_dir.iterdir()}
    tries = {n for n in names if n.startswith(f"min-{bugs[0].signature}-1-")}
    assert len(tries) == len(f.calls) - 6 > repro.tries  # every try (of the cuts and the rate) in a new one
    assert names - tries == {Path(e["run"]).name for e in journal}
    assert len(f.corpus) >= 1 and f.coverage.size > 0
    summary = json.loads(f.dir.summary.read_text())
    assert summary["bugs"][0]["new"] is True
    # a second night goes on from the journal and knows the bug
    g = fuzzer_factory(programs=2, seed=3, seed_programs=(SEED,), minimize_tries=0)
    assert g.index == 6
    assert g.loop() in (0, 1)
    again = json.loads(g.dir.summary.read_text())
    assert any(not b["new"] for b in again["bugs"])
    assert [json.loads(x)["index"] for x in g.dir.journal.read_text().splitlines()] == list(range(8))


def test_same_seed_same_programs(fuzzer_factory, tmp_path: Path) -> None:  # noqa: ANN001
    f = fuzzer_factory(programs=4, seed=9, minimize_tries=0)
    f.loop()
    first = [json.loads(x)["program"] for x in f.dir.journal.read_text().splitlines()]
    other = manager.Fuzzer(manager.FuzzConfig(workdir=tmp_path / "other", programs=4, seed=9, minimize_tries=0),
                           lambda _m: None)
    other.loop()
    assert first == [json.loads(x)["program"] for x in FuzzDir(tmp_path / "other").journal.read_text().splitlines()]


def journal_of(folder: Path) -> list[tuple[int, str, str]]:
    return [(e["index"], e["program"], e["outcome"])
            for e in map(json.loads, FuzzDir(folder).journal.read_text().splitlines())]


def test_two_jobs_run_at_once_and_their_programs_do_not_depend_on_which_finished_first(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import threading
    import time

    running, most = set(), [0]
    lock = threading.Lock()

    def slow_run(self: manager.Fuzzer, program, index: int, plan_seed: int):  # noqa: ANN001, ANN202
        with lock:
            running.add(index)
            most[0] = max(most[0], len(running))
        time.sleep(self.delays.random() * 0.05)  # a different finishing order on every run
        try:
            return simulated_run(self, program, index, plan_seed)
        finally:
            with lock:
                running.discard(index)

    monkeypatch.setattr(manager.Fuzzer, "_image", lambda self: None)
    monkeypatch.setattr(manager.Fuzzer, "run", slow_run)
    journals = []
    for n, order_seed in enumerate((1, 2, 3)):
        monkeypatch.setattr(manager.Fuzzer, "delays", random.Random(order_seed), raising=False)
        f = manager.Fuzzer(manager.FuzzConfig(workdir=tmp_path / f"fz{n}", programs=10, seed=4, jobs=2,
                                              minimize_tries=0, seed_programs=(SEED,)), lambda _m: None)
        assert f.jobs == 2
        f.loop()
        journals.append(journal_of(tmp_path / f"fz{n}"))
    assert most[0] == 2  # two programs did run at once
    assert journals[0] == journals[1] == journals[2]
    assert [i for i, _, _ in journals[0]] == list(range(10)) and journals[0][0][2] == "panic"


def test_a_failure_mid_pool_keeps_what_finished_and_sets_aside_what_ran(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    def failing_run(self: manager.Fuzzer, program, index: int, plan_seed: int):  # noqa: ANN001, ANN202
        if index == 3:
            self.dir.run(index, program.hash()).path.mkdir(parents=True)
            raise KeyboardInterrupt
        return simulated_run(self, program, index, plan_seed)

    monkeypatch.setattr(manager.Fuzzer, "_image", lambda self: None)
    monkeypatch.setattr(manager.Fuzzer, "run", failing_run)
    f = manager.Fuzzer(manager.FuzzConfig(workdir=tmp_path / "fz", programs=8, seed=4, jobs=2, minimize_tries=0),
                       lambda _m: None)
    with pytest.raises(KeyboardInterrupt):
        f.loop()
    assert [i for i, _, _ in journal_of(tmp_path / "fz")] == [0, 1, 2]
    names = sorted(p.name for p in f.dir.runs_dir.iterdir())
    unrecorded = [n for n in names if int(n[:6]) >= 3]
    assert unrecorded and all(".interrupted-" in n for n in unrecorded), names
    assert f.dir.summary.is_file()  # the reports of what finished were written
    monkeypatch.setattr(manager.Fuzzer, "run", simulated_run)
    g = manager.Fuzzer(manager.FuzzConfig(workdir=tmp_path / "fz", programs=2, seed=4, jobs=2, minimize_tries=0),
                       lambda _m: None)
    assert g.index == 3
    g.loop()
    assert [i for i, _, _ in journal_of(tmp_path / "fz")] == [0, 1, 2, 3, 4]


def test_every_path_and_device_event_compiles() -> None:
    vocab = vocabulary()
    for name in vocab.names("path"):
        spec = vocab.spec("path", name)
        args = full_args(Op("path", name), vocab)
        if spec.side == "guest":
            assert guest_path_shell(name, args)
        else:
            assert device_path_action(name, args).requests
    rng = random.Random(5)
    for name in vocab.names("device"):
        op = Op("device", name, tuple(vocab.spec("device", name).sample(rng).items())) \
            if vocab.spec("device", name).sample else Op("device", name)
        compiled = compile_program(parse(f"{op.text()}\nwait\n"))
        assert compiled.script.splitlines()[1] == "dev 0" and 0 in compiled.actions
    c = compile_program(parse("read speed threads=3 duration=1 fn=1 &\nsleep 0.2\npath unbind fn=0\nwait\n"))
    assert c.script.splitlines()[1:] == ["op 0 bg 'mlx5lab-read speed -t 3 -d 1 -i $(ifnames 1)'", "pause 0.2",
                                         "op 2 fg 'for f in 0; do echo $(bdf $f) > "
                                         "/sys/bus/pci/drivers/mlx5_core/unbind; done'", "waitall"]


def test_a_bugs_first_finding_is_triaged_into_the_store_and_the_reports(fuzzer_factory) -> None:  # noqa: ANN001
    seeds = (SEED, SEED.replace("threads=4", "threads=2"))  # two findings of one bug
    f = fuzzer_factory(programs=2, seed=3, seed_programs=seeds, minimize_tries=0)
    f.loop()
    (bug,) = f.store.bugs()
    assert bug.count == 2
    assert bug.triage is not None
    assert bug.triage["title"] == "general protection fault in dma_pool_alloc"
    assert bug.triage["signature"] == bug.signature  # triage and the store group the crash alike
    assert bug.triage["verdict_source"] == "console" and bug.triage["verdict"]
    assert bug.triage["vmcore_skipped"] == "no vmcore in this folder"
    assert bug.triage["run"] == bug.runs[0]  # the first finding, once
    crash = f.dir.crash(bug.signature)
    assert json.loads(crash.triage_json.read_text())["title"] == bug.triage["title"]
    assert "dma_pool_alloc" in crash.triage_md.read_text()
    md = f.dir.report_md.read_text()
    assert f"- triage (console): {bug.triage['verdict']}" in md
    assert f"- triage title: general protection fault in dma_pool_alloc (signature `{bug.signature}`)" in md
    assert "vmcore not read: no vmcore in this folder" in md
    entry = json.loads(f.dir.summary.read_text())["bugs"][0]
    assert entry["triage"]["verdict"] == bug.triage["verdict"]
    assert "vmcore not read" in f.dir.report_html.read_text()


def test_a_vmcore_verdict_is_the_bugs_verdict(fuzzer_factory, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from mlx5lab.triage import background
    from mlx5lab.triage.result import TriageResult

    def fake_triage(folder: Path, *, vmcore: bool = True) -> TriageResult:
        assert vmcore
        return TriageResult(folder=folder, title="general protection fault in dma_pool_alloc",
                            signature="s", verdict="use after free of the command pool (poisoned)",
                            verdict_source="vmcore")

    monkeypatch.setattr(background, "triage_iteration", fake_triage)
    f = fuzzer_factory(programs=1, seed=3, seed_programs=(SEED,), minimize_tries=0)
    f.loop()
    (bug,) = f.store.bugs()
    assert bug.triage is not None and bug.triage["verdict_source"] == "vmcore"
    assert "- triage (vmcore): use after free of the command pool (poisoned)" in f.dir.report_md.read_text()
    html = f.dir.report_html.read_text()
    assert "<b>Triage</b> (vmcore): use after free of the command pool (poisoned)" in html


def test_with_a_corpus_the_generated_share_holds(fuzzer_factory) -> None:  # noqa: ANN001
    """Once a corpus exists, programs are generated afresh at GENERATE_SHARE and mutated otherwise: the
    orderings a generated program is shaped for must not be crowded out by mutations of the corpus."""
    f = fuzzer_factory(programs=1, seed=5)
    rng = random.Random(11)
    assert f.choose(rng, index=0)[1] == "generate"  # no corpus yet: always generated
    f.corpus.add("device fw_dead &\nread devlink-port\nwait\n", [], "generate", when=1.0)
    origins = [f.choose(rng, index=1)[1] for _ in range(2000)]
    share = origins.count("generate") / len(origins)
    assert set(origins) == {"generate", "mutate"}
    assert abs(share - manager.GENERATE_SHARE) < 0.04, share
    assert manager.GENERATE_SHARE >= 0.5


def test_minimising_keeps_the_driver_entry_the_finding_came_through(fuzzer_factory) -> None:  # noqa: ANN001
    from mlx5lab.fuzz.store import Finding

    stats, ptys = crash_report(CRASH_STATS), crash_report(CRASH)
    assert stats is not None and ptys is not None
    assert stats.signature == ptys.signature  # one fault, one bug ...
    assert (stats.detail.entry, ptys.detail.entry) == (STATS_ENTRY, PTYS_ENTRY)  # ... two ways in
    assert "mlx5_query_port_ptys" in ptys.detail.route and "mlx5_query_port_ptys" not in stats.detail.route
    both = parse("read speed &\nread statistics &\npath reboot force=true\nwait\n")  # crashes through the stats
    for entry, kept, dropped in ((STATS_ENTRY, "statistics", "speed"), (None, "speed", "statistics")):
        f = fuzzer_factory(programs=0, seed=1, minimize_tries=20, repro_runs=3)
        f.store.record(Finding(stats.signature, stats.title, stats.kind_text, both.text(), None, 1.0,
                               tuple(stats.detail.route)))
        f.minimize_bug(stats.signature, both, entry)
        minimal = parse(f.dir.crash(stats.signature).repro.read_text())
        names = {o.name for o in minimal.active_ops()}
        # without the entry, dropping the statistics reader still crashes (through the speed read) and is kept
        assert kept in names and dropped not in names, (entry, minimal.text())


def test_a_hangs_tries_end_at_its_report_and_a_panics_do_not_ask(fuzzer_factory) -> None:  # noqa: ANN001
    hang_seed = "device fw_dead &\nread devlink-port fn=1 duration=5\nread carrier\nsleep 1\nwait\n"
    f = fuzzer_factory(programs=2, seed=2, seed_programs=(hang_seed, SEED), minimize_tries=30, repro_runs=3)
    assert f.loop() == 1
    hung = f.store.get(manager_signature(HUNG))
    assert hung is not None and hung.repro is not None and hung.repro.rate == 1.0
    assert {(o.kind, o.name) for o in parse(hung.dir.repro.read_text()).active_ops()} == {
        ("device", "fw_dead"), ("read", "devlink-port")}
    first, *tries = f.calls
    assert first == ("", Outcome.HANG, HANG_S)  # the night's own program runs to its timeout
    hang_tries = [c for c in tries if c[1] is Outcome.HANG]
    # every try of the hang's minimisation, its rate's runs too, ends at the hang's report ...
    assert hang_tries and all(c == (hung.signature, Outcome.HANG, STOPPED_S) for c in hang_tries)
    # ... while the panic's program and tries ask for nothing: a panic ends its run by itself
    panics = [c for c in tries if c[1] is Outcome.PANIC]
    assert len(panics) > 1 and all(c[0] == "" for c in panics)


def test_a_bug_without_a_reproducer_is_minimised_again_from_a_later_finding(fuzzer_factory,  # noqa: ANN001
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A program with a duplex reader crashes only on its first run (a rare timing): its minimisation keeps
    nothing; the next finding of the bug is minimised instead, up to MAX_REPRO_ATTEMPTS minimisations."""
    from mlx5lab.fuzz.store import MAX_REPRO_ATTEMPTS

    seen: set[str] = set()

    def flaky_run(self: manager.Fuzzer, program, index: int, plan_seed: int, stop_at: str = "",  # noqa: ANN001, ANN202
                  folder: RunDir | None = None):
        run, result = simulated_run(self, program, index, plan_seed, stop_at, folder)
        if any(o.name == "duplex" for o in program.ops) and program.hash() in seen:
            result = rewrite_clean(run, index)
        seen.add(program.hash())
        return run, result

    monkeypatch.setattr(manager.Fuzzer, "run", flaky_run)
    once = [f"read speed &\nread duplex threads={n} &\npath reboot force=true\nwait\n" for n in (1, 2, 3, 4)]
    steady = "read speed &\npath reboot force=true\nwait\n"
    f = fuzzer_factory(programs=3, seed=1, seed_programs=(once[0], steady, steady), minimize_tries=20, repro_runs=3)
    f.loop()
    (bug,) = f.store.bugs()
    assert bug.count == 3 and bug.repro_attempts == 2  # the first kept nothing, the second did, the third none
    assert bug.repro is not None and bug.repro.rate == 1.0
    assert "duplex" not in bug.dir.repro.read_text()

    seen.clear()
    g = fuzzer_factory(programs=4, seed=1, seed_programs=tuple(once), minimize_tries=20, repro_runs=3,
                       workdir_name="capped")
    g.loop()
    (bug,) = g.store.bugs()
    assert bug.count == 4 and bug.repro is None and bug.repro_attempts == MAX_REPRO_ATTEMPTS  # the 4th: none
    assert json.loads(g.dir.summary.read_text())["bugs"][0]["repro_attempts"] == MAX_REPRO_ATTEMPTS
    said = "no reproducer: 3 minimisations kept none; no more tries (at most 3)"
    assert said in g.dir.report_md.read_text() and said in g.dir.report_html.read_text()
