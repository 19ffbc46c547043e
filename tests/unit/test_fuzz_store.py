"""The fuzz work folder's crash store, corpus and JSON-lines logs, without a guest: dedup by signature,
bounded logs, the first vmcore, new against known across nights, kills mid-record, corpus dedup."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mlx5lab.campaign.outcome import Outcome
from mlx5lab.fuzz import store as store_mod
from mlx5lab.fuzz.store import (
    MAX_REPRO_ATTEMPTS,
    Corpus,
    CrashStore,
    Execution,
    Finding,
    Journal,
    Night,
    Nights,
    Stats,
    StatsSample,
    kept_logs,
)
from mlx5lab.fuzz.workdir import FuzzDir, program_hash
from mlx5lab.rundir import RunDir

DATA = Path(__file__).parent.parent / "data" / "oops"
PROG = "# mlx5lab-program v1\nread speed &\nsleep 0.35\npath unbind fn=1\nwait\n"


def make_run(fd: FuzzDir, index: int, program: str = PROG, *, vmcore: bytes | None = b"core",
             console: str | None = None) -> RunDir:
    run = fd.run(index, program_hash(program))
    run.path.mkdir(parents=True)
    run.console.write_text(console if console is not None else f"console of run {index}\n")
    run.oops.write_text(f"oops of run {index}\n")
    if vmcore is not None:
        run.vmcore.write_bytes(vmcore + str(index).encode())
    return run


def finding(run: RunDir | None, t: float, sig: str = "aaaa000011112222", program: str = PROG,
            title: str = "general protection fault in dma_pool_alloc") -> Finding:
    return Finding(signature=sig, title=title, kind="general protection fault", program=program,
                   run=run.path if run else None, time=t)


@pytest.fixture
def fd(tmp_path: Path) -> FuzzDir:
    return FuzzDir(tmp_path / "fuzz").create()


def test_program_hash_is_sha256_prefix() -> None:
    import hashlib

    assert program_hash(PROG) == hashlib.sha256(PROG.encode()).hexdigest()[:16]


def test_same_signature_is_one_bug(fd: FuzzDir) -> None:
    s = CrashStore(fd)
    other = PROG.replace("speed", "duplex")
    bug, new = s.record(finding(make_run(fd, 0), 100.0))
    assert new and bug.count == 1
    bug, new = s.record(finding(make_run(fd, 1, other), 200.0, program=other))
    assert not new and bug.count == 2
    bug, new = s.record(finding(make_run(fd, 2), 150.0, sig="bbbb000011112222", title="KASAN: use-after-free"))
    assert new
    bugs = s.bugs()
    assert [b.signature for b in bugs] == ["aaaa000011112222", "bbbb000011112222"]
    a = s.get("aaaa000011112222")
    assert a is not None
    assert (a.first_seen, a.last_seen, a.count) == (100.0, 200.0, 2)
    assert a.programs == [program_hash(PROG), program_hash(other)]
    assert a.runs == ["runs/" + fd.run_name(0, program_hash(PROG)), "runs/" + fd.run_name(1, program_hash(other))]
    crash = fd.crash("aaaa000011112222")
    assert crash.title.read_text() == "general protection fault in dma_pool_alloc\n"
    assert crash.program(program_hash(other)).read_text() == other
    meta = json.loads(crash.meta.read_text())
    assert {"title", "kind", "signature", "first_seen", "last_seen", "count", "programs", "repro", "new"} <= set(meta)
    assert meta["repro"] is None


def test_logs_keep_the_first_and_the_latest(fd: FuzzDir) -> None:
    s = CrashStore(fd, max_logs=3)
    for i in range(7):
        s.record(finding(make_run(fd, i), 100.0 + i))
    bug = s.get("aaaa000011112222")
    assert bug is not None and bug.count == 7
    assert bug.logs == [0, 5, 6]
    crash = fd.crash("aaaa000011112222")
    assert crash.kept_logs() == [0, 5, 6]
    assert crash.log(0).read_text() == "console of run 0\n"
    assert crash.oops(6).read_text() == "oops of run 6\n"
    assert not crash.log(1).exists()


def test_kept_logs_rule() -> None:
    assert kept_logs([], 0, 5) == [0]
    assert kept_logs([0, 1, 2, 3, 4], 5, 5) == [0, 2, 3, 4, 5]
    assert kept_logs([0], 1, 1) == [0]
    assert kept_logs([3], 4, 2) == [3, 4]


def test_first_vmcore_is_kept_and_later_ones_not(fd: FuzzDir) -> None:
    s = CrashStore(fd)
    first = make_run(fd, 0, vmcore=b"first")
    s.record(finding(first, 1.0))
    s.record(finding(make_run(fd, 1, vmcore=b"second"), 2.0))
    crash = fd.crash("aaaa000011112222")
    assert crash.vmcore.read_bytes() == b"first0"
    assert first.vmcore.read_bytes() == b"first0"  # the run folder keeps its own (a link or a copy)
    bug = s.get("aaaa000011112222")
    assert bug is not None and bug.vmcore_run == "runs/" + first.path.name


def test_vmcore_comes_from_the_first_finding_that_has_one(fd: FuzzDir) -> None:
    s = CrashStore(fd)
    s.record(finding(make_run(fd, 0, vmcore=None), 1.0))
    assert not fd.crash("aaaa000011112222").vmcore.exists()
    s.record(finding(make_run(fd, 1, vmcore=b"late"), 2.0))
    s.record(finding(make_run(fd, 2, vmcore=b"later"), 3.0))
    assert fd.crash("aaaa000011112222").vmcore.read_bytes() == b"late1"


def test_vmcore_is_copied_across_file_systems(fd: FuzzDir, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(src: object, dst: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(store_mod.os, "link", no_link)
    CrashStore(fd).record(finding(make_run(fd, 0, vmcore=b"x"), 1.0))
    assert fd.crash("aaaa000011112222").vmcore.read_bytes() == b"x0"


def test_new_and_known_across_two_nights(fd: FuzzDir) -> None:
    nights = Nights(fd)
    # night 1: 1000..2000
    s1 = CrashStore(fd, night_start=1000.0)
    _, new = s1.record(finding(make_run(fd, 0), 1100.0))
    assert new
    nights.append(Night(start=1000.0, end=2000.0, seed=1, programs=1, new_bugs=["aaaa000011112222"]))
    # night 2: 3000..
    since = nights.baseline(3000.0)
    assert since == 2000.0
    s2 = CrashStore(fd, night_start=3000.0)
    s2.record(finding(make_run(fd, 1), 3100.0))
    s2.record(finding(make_run(fd, 2), 3200.0, sig="cccc000011112222", title="WARNING in mlx5_cmd_exec"))
    new_bugs, known = s2.split(since)
    assert [b.signature for b in new_bugs] == ["cccc000011112222"]
    assert [b.signature for b in known] == ["aaaa000011112222"]
    assert [b.signature for b in s2.new_since(since)] == ["cccc000011112222"]
    a, c = s2.get("aaaa000011112222"), s2.get("cccc000011112222")
    assert a is not None and c is not None and not a.new and c.new
    # a night cut off by a kill wrote no line: its bugs stay new for the next night
    assert nights.baseline(5000.0) == 2000.0
    assert nights.baseline(500.0) == 0.0


def test_kill_mid_copy_leaves_a_loadable_store_and_a_retry_counts_once(fd: FuzzDir,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    s = CrashStore(fd)
    s.record(finding(make_run(fd, 0), 1.0))
    run = make_run(fd, 1, console="x" * 100_000)
    real = shutil.copyfileobj

    def half_then_die(src, dst, length: int = 0) -> None:  # noqa: ANN001 - shutil's signature
        dst.write(src.read(50_000))
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(store_mod.shutil, "copyfileobj", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        s.record(finding(run, 2.0))
    crash = fd.crash("aaaa000011112222")
    loaded = CrashStore(fd).get("aaaa000011112222")
    assert loaded is not None and loaded.count == 1  # the cut-off record was never counted
    assert not crash.log(1).exists()  # no half log under a real name
    assert not list(crash.path.glob(".*.tmp"))

    monkeypatch.setattr(store_mod.shutil, "copyfileobj", real)
    bug, new = CrashStore(fd).record(finding(run, 2.0))
    assert not new and bug.count == 2
    assert crash.log(1).read_text() == "x" * 100_000
    bug, _ = CrashStore(fd).record(finding(run, 2.0))  # recorded again: still once
    assert bug.count == 2


def test_kill_after_the_commit_counts_once(fd: FuzzDir, monkeypatch: pytest.MonkeyPatch) -> None:
    s = CrashStore(fd, max_logs=2)
    for i in range(2):
        s.record(finding(make_run(fd, i), float(i)))

    def die(*_a: object) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(CrashStore, "_drop_logs", staticmethod(die))
    run = make_run(fd, 2)
    with pytest.raises(SystemExit):
        s.record(finding(run, 2.0))
    monkeypatch.undo()
    bug = CrashStore(fd).get("aaaa000011112222")
    assert bug is not None and bug.count == 3 and bug.logs == [0, 2]
    bug, _ = CrashStore(fd).record(finding(run, 2.0))
    assert bug.count == 3


def test_stray_files_of_a_hard_kill_are_ignored(fd: FuzzDir) -> None:
    s = CrashStore(fd)
    crash = fd.crash("dddd000011112222")
    crash.path.mkdir(parents=True)
    (crash.path / ".log-0.console.abc.tmp").write_text("half")
    crash.log(0).write_text("an uncommitted log")  # written, then killed before meta.json
    assert s.bugs() == [] and s.get("dddd000011112222") is None
    bug, new = s.record(finding(make_run(fd, 0), 5.0, sig="dddd000011112222"))
    assert new and bug.count == 1
    assert crash.log(0).read_text() == "console of run 0\n"
    assert not list(crash.path.glob(".*.tmp"))


def test_set_repro(fd: FuzzDir) -> None:
    s = CrashStore(fd)
    s.record(finding(make_run(fd, 0), 1.0))
    repro = "# mlx5lab-program v1\npath unbind fn=1\n"
    bug = s.set_repro("aaaa000011112222", repro, 0.8, (0.49, 0.94), 10)
    assert bug.repro is not None and bug.repro.program == program_hash(repro)
    again = CrashStore(fd).get("aaaa000011112222")
    assert again is not None and again.repro == bug.repro and again.count == 1
    assert fd.crash("aaaa000011112222").repro.read_text() == repro
    with pytest.raises(KeyError):
        s.set_repro("ffff", repro, 1.0, (1.0, 1.0), 1)


def test_minimisations_are_counted_and_a_bug_without_a_reproducer_gets_three(fd: FuzzDir) -> None:
    s = CrashStore(fd)
    s.record(finding(make_run(fd, 0), 1.0))
    sig = "aaaa000011112222"
    assert s.get(sig).repro_attempts == 0 and s.get(sig).needs_repro
    for n in range(1, MAX_REPRO_ATTEMPTS + 1):
        assert s.start_repro(sig).repro_attempts == n
    again = CrashStore(fd).get(sig)  # persisted in meta.json
    assert again is not None and again.repro_attempts == MAX_REPRO_ATTEMPTS and not again.needs_repro
    s.record(finding(make_run(fd, 1), 2.0, sig="bbbb000011112222"))
    s.start_repro("bbbb000011112222")
    s.set_repro("bbbb000011112222", "# mlx5lab-program v1\npath unbind fn=1\n", 0.9, (0.6, 0.98), 10)
    assert not s.get("bbbb000011112222").needs_repro  # kept one: no more
    with pytest.raises(KeyError):
        s.start_repro("ffff")
    # a meta.json written before the count existed loads as never minimised
    meta = fd.crash(sig).meta
    data = json.loads(meta.read_text())
    del data["repro_attempts"]
    meta.write_text(json.dumps(data))
    assert CrashStore(fd).get(sig).repro_attempts == 0


def test_finding_from_a_run_folder(fd: FuzzDir) -> None:
    run = make_run(fd, 0, console=(DATA / "kasan-uaf.console.log").read_text())
    run.oops.unlink()
    f = Finding.from_run(run, PROG, 7.0)
    assert f is not None
    assert f.title == (DATA / "kasan-uaf.title").read_text().strip()
    assert len(f.signature) == 16 and f.run == run.path and f.time == 7.0
    clean = make_run(fd, 1, console="nothing here\n")
    clean.oops.write_text("")
    assert Finding.from_run(clean, PROG) is None


def test_corpus_add_dedup_reload(fd: FuzzDir) -> None:
    c = Corpus(fd)
    keys = [("cmd", "up", "ACCESS_REG/PTYS", 0, "OK"), ("log", "Link up")]
    assert c.add(PROG, keys, "generate", when=1.0)
    assert not c.add(PROG, keys, "mutate")
    other = PROG + "sleep 1\n"
    assert c.add(other, [], "mutate", when=2.0)
    again = Corpus(fd)
    assert len(again) == 2 and program_hash(PROG) in again
    e = again.programs()[0]
    assert (e.text, e.origin, e.added_at) == (PROG, "generate", 1.0)
    assert sorted(e.coverage) == sorted(keys)
    # a program whose meta was never written (killed mid-add) is not in the corpus; add repairs it
    fd.corpus_meta(program_hash(other)).unlink()
    assert len(Corpus(fd)) == 1
    assert Corpus(fd).add(other, [], "mutate")
    again.save()
    assert len(Corpus(fd).load()) == 2


def test_journal_stats_nights_skip_torn_lines(fd: FuzzDir) -> None:
    j = Journal(fd)
    j.append(Execution(0, "h0", Outcome.CLEAN, 1.0, 2.0))
    with open(fd.journal, "a") as f:
        f.write('{"index": 1, "program": "h1", "outc')  # torn by a kill
    j.append(Execution(1, "h1", Outcome.PANIC, 4.0, 1.0, signature="s"))
    entries = j.load()
    assert [(e.index, e.outcome) for e in entries] == [(0, Outcome.CLEAN), (1, Outcome.PANIC)]
    assert j.next_index() == 2 and entries[1].ended == 5.0
    st = Stats(fd)
    st.append(StatsSample(t=2.0, programs=1, coverage=10))
    st.append(StatsSample(t=1.0, programs=0, coverage=3))
    assert [s.t for s in st.load()] == [1.0, 2.0]
    Nights(fd).append(Night(start=0.0, end=9.0, seed=4, programs=2, new_bugs=["s"]))
    assert Nights(fd).load()[0].new_bugs == ["s"]


def test_entries_count_the_ways_into_the_driver_first_first(fd: FuzzDir) -> None:
    s = CrashStore(fd)
    routes = [("cmd_exec", "mlx5e_update_stats_work"), ("cmd_exec", "mlx5e_ethtool_get_link_ksettings"),
              ("cmd_exec", "mlx5e_update_stats_work"), ()]  # the last: no driver frames (a hang's result)
    for i, route in enumerate(routes):
        f = finding(make_run(fd, i), 100.0 + i)
        s.record(Finding(f.signature, f.title, f.kind, f.program, f.run, f.time, route))
    bug = s.get("aaaa000011112222")
    assert bug is not None and bug.count == 4
    assert list(bug.entries.items()) == [("mlx5e_update_stats_work", 2), ("mlx5e_ethtool_get_link_ksettings", 1)]
    assert json.loads(fd.crash(bug.signature).meta.read_text())["entries"] == bug.entries
