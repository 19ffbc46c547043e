"""verify-fix without a guest: tallies, the verdict's text, infrastructure exclusion, arguments, the folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlx5lab import Mlx5LabError, verify
from mlx5lab.campaign.campaign import Campaign
from mlx5lab.campaign.outcome import IterationResult, Outcome
from mlx5lab.cli import build_parser, main
from mlx5lab.verify_fix import Side, Tally, VerifyPlan, judge, run_verify_fix


def results(*outcomes: str) -> list[IterationResult]:
    return [IterationResult(i, Outcome(o)) for i, o in enumerate(outcomes, 1)]


def test_tally_counts_findings_and_leaves_infra_out_of_n() -> None:
    t = Tally.of(results("panic", "panic", "hang", "clean", "infra", "infra"))
    assert (t.panic, t.hang, t.clean, t.infra) == (2, 1, 1, 2)
    assert t.findings == 3 and t.kernel_results == 4
    assert t.to_json()["n"] == 4


def test_verdict_text_from_campaign_results() -> None:
    base, fix = Tally.of(results(*["panic"] * 10)), Tally.of(results(*["clean"] * 40))
    v = judge(base, fix, 0.95)
    assert v.exit_code == verify.EXIT_VERIFIED
    assert v.text == ("base: 10/10 panics; with the fix: 0/40 clean; at 95% confidence the fixed panic rate is "
                      "below 7.2%; fix verified")


def test_infrastructure_outcomes_are_excluded_and_said() -> None:
    base = Tally.of(results("panic", "infra", "panic"))
    fix = Tally.of(results("clean", "infra", "infra", "clean", "clean"))
    v = judge(base, fix, 0.95)
    assert v.exit_code == verify.EXIT_VERIFIED
    assert v.text.startswith("base: 2/2 panics; with the fix: 0/3 clean; at 95% confidence the fixed panic rate "
                             f"is below {verify.upper_bound(0, 3) * 100:.1f}%")
    assert v.text.endswith("; 3 infrastructure outcomes not counted (base 1, fix 2)")


def test_fix_that_still_panics_is_not_verified() -> None:
    v = judge(Tally.of(results("panic", "panic")), Tally.of(results("panic", "hang", "panic")), 0.95)
    assert v.exit_code == verify.EXIT_NOT_VERIFIED
    assert "with the fix: 3/3 panics" in v.text and "not verified: the fix still panics" in v.text
    assert "fix's panics include 1 hang" in v.text


def test_no_kernel_result_on_one_side_is_infrastructure() -> None:
    v = judge(Tally.of(results("panic")), Tally.of(results("infra", "infra")), 0.95)
    assert v.exit_code == verify.EXIT_INFRA
    assert v.text == "no kernel result on the fix (2 infrastructure outcomes): infrastructure failure, nothing verified"


def test_base_that_never_panics_verifies_nothing() -> None:
    v = judge(Tally.of(results("clean", "clean")), Tally.of(results("clean")), 0.95)
    assert v.exit_code == verify.EXIT_NOT_VERIFIED and "the base never panicked" in v.text


@pytest.mark.parametrize("argv, message", [
    (["verify-fix"], "the following arguments are required: --patch"),
    (["verify-fix", "--patch", "/nonexistent/fix.patch"], "no such patch file"),
    (["verify-fix", "--patch", __file__, "--iterations", "0"], "at least 1"),
    (["verify-fix", "--patch", __file__, "--base-iterations", "x"], "at least 1"),
    (["verify-fix", "--patch", __file__, "--confidence", "1"], "strictly between 0 and 1"),
    (["verify-fix", "--patch", __file__, "--base", "other"], "invalid choice"),
])
def test_argument_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults_and_order() -> None:
    args = build_parser().parse_args(["verify-fix", "--patch", __file__, "--patch", __file__])
    assert (args.base, args.iterations, args.base_iterations, args.confidence) == ("vulnerable", 40, 10, 0.95)
    assert args.fixes == [Path(__file__)] * 2 and args.base_patches == []
    assert not hasattr(args, "patches")  # not folded into a variant by cli.common.fold_driver_options
    names = [a.dest for a in build_parser()._subparsers._group_actions[0]._choices_actions]  # type: ignore[union-attr]
    assert names.index("verify-fix") == names.index("race") + 1


def plan(base: int = 2, fix: int = 3) -> VerifyPlan:
    return VerifyPlan(kernel="6.1.0-57-amd64", base=Side("base", "vulnerable", base),
                      fix=Side("fix", "vulnerable+patch:0123456789abcdef", fix, ("fix.patch",)), seed=7)


def test_plan_refuses_bad_values() -> None:
    with pytest.raises(Mlx5LabError, match="at least one iteration"):
        plan(base=0)
    with pytest.raises(Mlx5LabError, match="is the base itself"):
        VerifyPlan(kernel="k", base=Side("base", "stock", 1), fix=Side("fix", "stock", 1))
    with pytest.raises(Mlx5LabError, match="strictly between"):
        VerifyPlan(kernel="k", base=Side("base", "stock", 1), fix=Side("fix", "stock+patch:0", 1), confidence=1.5)


class FakeRuns:
    """Stands in for the builds and for run_campaign: records what ran, decides outcomes per variant."""

    def __init__(self, outcome_of: dict[str, list[str]]) -> None:
        self.outcome_of = outcome_of
        self.prepared: list[str] = []
        self.delays: dict[str, list[float]] = {}

    def prepare(self, kernel: str | None, variant: str) -> None:
        self.prepared.append(variant)

    def run(self, c: Campaign, progress: object) -> int:
        outcomes = self.outcome_of[c.spec.variant]
        for i in c.pending():
            c.record(IterationResult(i, Outcome(outcomes[(i - 1) % len(outcomes)]), delay_s=c.spec.delay(i)))
        self.delays[c.spec.variant] = [r.delay_s for r in c.ordered_results()]
        return c.exit_status()


def test_run_keeps_both_campaigns_on_one_schedule_and_writes_the_verdict(tmp_path: Path) -> None:
    p = plan()
    fake = FakeRuns({p.base.variant: ["panic"], p.fix.variant: ["clean", "infra"]})
    lines: list[str] = []
    v = run_verify_fix(p, tmp_path, lines.append, prepare=fake.prepare, run=fake.run)
    assert fake.prepared == [p.base.variant, p.fix.variant]  # both builds before any guest
    assert fake.delays[p.fix.variant][:2] == fake.delays[p.base.variant]  # the same delay per iteration index
    assert v.exit_code == verify.EXIT_VERIFIED
    assert "base: 2/2 panics; with the fix: 0/2 clean" in v.text and "(base 0, fix 1)" in v.text
    data = json.loads((tmp_path / "verdict.json").read_text())
    assert data["verdict"] == v.text and data["verified"] is True and data["exit_code"] == 0
    assert (data["base"]["panic"], data["fix"]["clean"], data["fix"]["infra"], data["fix"]["n"]) == (2, 2, 1, 2)
    assert data["fixed_panic_rate_upper_bound"] == pytest.approx(verify.upper_bound(0, 2))
    assert (tmp_path / "base" / "journal.jsonl").is_file() and (tmp_path / "fix" / "summary.json").is_file()
    assert any("verify-fix: fix: 0/2 panics, 2 clean, 1 infrastructure" in line for line in lines)


def test_run_again_continues_and_refuses_another_campaign(tmp_path: Path) -> None:
    p = plan()
    fake = FakeRuns({p.base.variant: ["panic"], p.fix.variant: ["clean"]})
    run_verify_fix(p, tmp_path, lambda _m: None, prepare=fake.prepare, run=fake.run)
    lines: list[str] = []
    run_verify_fix(p, tmp_path, lines.append, prepare=fake.prepare, run=fake.run)
    assert any("(2 already done)" in line for line in lines)
    with pytest.raises(Mlx5LabError, match="holds another campaign.*iterations: 2 there, 5 now"):
        run_verify_fix(plan(base=5), tmp_path, lambda _m: None, prepare=fake.prepare, run=fake.run)


def test_a_fix_that_does_not_build_stops_before_any_campaign(tmp_path: Path) -> None:
    from mlx5image.errors import ImageError

    def prepare(kernel: str | None, variant: str) -> None:
        if "+patch:" in variant:
            raise ImageError("patch fix.patch does not apply to the kernel's mlx5 source:\nrejected hunks: ...")

    def run(c: Campaign, progress: object) -> int:
        raise AssertionError("no campaign may run")

    with pytest.raises(ImageError, match="rejected hunks"):
        run_verify_fix(plan(), tmp_path, lambda _m: None, prepare=prepare, run=run)
    assert not (tmp_path / "base").exists()
