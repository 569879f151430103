"""Experiments: assignment, exposure logging, outcomes from CRM data, the
report, its headline and the governed services."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from waggle.core.db import transaction
from waggle.core.errors import Conflict, InvalidInput, NotFound, PolicyDenied
from waggle.crm.models import Account, Opportunity, StageChange
from waggle.crm.pipelines import default_pipeline
from waggle.governance.models import AuditEntry
from waggle.rules import stats
from waggle.rules.experiment_models import Experiment, ExperimentExposure
from waggle.rules.experiments import (
    assign,
    build_report,
    create_experiment,
    experiment_report,
    expose,
    headline,
    list_experiments,
    outcome_value,
    record_exposure,
    running_experiment,
    running_experiment_for_rule,
    should_act,
    stop_experiment,
    unit_outcomes,
    unit_position,
)

EXPOSED_AT = dt.datetime(2026, 2, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1)


def test_assignment_follows_the_documented_hash():
    """The position is sha256(key, salt, id joined by 0x1F), first 8 bytes / 2**64."""
    digest = hashlib.sha256(b"follow-up-nudge\x1fs1\x1f1").digest()
    expected = int.from_bytes(digest[:8], "big") / 2**64

    position = unit_position("follow-up-nudge", 1, salt="s1")

    assert position == expected
    assert position == pytest.approx(0.8416457196702102, abs=1e-15)


def test_assignment_of_the_first_units_is_pinned():
    """Units 1..40 of a 20% holdout get exactly these arms, release after release."""
    expected = "TTTTTTTTTTCTTTTTCCCTTTTTTCTTTTTTTTCTCTTT"

    arms = [
        assign("follow-up-nudge", unit, holdout_share=0.2, salt="s1")
        for unit in range(1, 41)
    ]

    assert "".join("C" if arm == "control" else "T" for arm in arms) == expected


def test_assignment_is_the_same_in_another_process():
    """A fresh interpreter with another hash seed assigns every unit alike."""
    code = (
        "from waggle.rules.experiments import assign;"
        "print(''.join(assign('k', u, holdout_share=0.3, salt='x')[0] "
        "for u in range(200)))"
    )
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}

    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    ).stdout.strip()

    here = "".join(assign("k", u, holdout_share=0.3, salt="x")[0] for u in range(200))
    assert other == here


@given(KEYS, st.integers(min_value=0, max_value=2**40), st.text(max_size=20))
def test_assignment_is_stable_and_monotone_in_the_share(key, unit, salt):
    """Same inputs give the same arm; a unit in control stays so as the share grows."""
    first = assign(key, unit, holdout_share=0.2, salt=salt)
    again = assign(key, unit, holdout_share=0.2, salt=salt)
    wider = assign(key, unit, holdout_share=0.5, salt=salt)

    assert first == again
    assert first == "treatment" or wider == "control"
    assert assign(key, unit, holdout_share=0.0, salt=salt) == "treatment"
    assert assign(key, unit, holdout_share=1.0, salt=salt) == "control"


def test_holdout_share_holds_within_a_binomial_bound():
    """Of 20,000 units a 20% holdout puts 4,000 +- 4 sd (226) in control."""
    units = range(20_000)
    bound = 4 * math.sqrt(20_000 * 0.2 * 0.8)

    control = sum(
        assign("share-check", u, holdout_share=0.2, salt="s") == "control"
        for u in units
    )

    assert abs(control - 4000) < bound


def test_assignments_of_two_experiments_are_independent():
    """Being in control of one experiment says nothing about another's arm."""
    units = range(20_000)
    first = [assign("a", u, holdout_share=0.5, salt="s") for u in units]
    second = [assign("b", u, holdout_share=0.5, salt="s") for u in units]

    both = sum(1 for x, y in zip(first, second, strict=True) if x == y == "control")
    in_first = first.count("control")

    # Given control in "a", control in "b" is Binomial(in_first, 0.5).
    assert abs(both - in_first / 2) < 4 * math.sqrt(in_first * 0.25)


def test_assignment_refuses_a_share_outside_zero_to_one():
    """A holdout share of 1.5 is refused with the field named."""
    with pytest.raises(InvalidInput, match="holdout_share"):
        assign("k", 1, holdout_share=1.5, salt="s")


def test_only_the_treatment_arm_acts():
    """should_act is true for treatment, false for control, refuses other names."""
    assert should_act("treatment") is True
    assert should_act("control") is False
    with pytest.raises(InvalidInput, match="arm"):
        should_act("holdout")


def _effect(absolute: float, low: float, high: float, p: float) -> stats.Effect:
    return stats.Effect(absolute, 0.01, low, high, p, None, None, None, None, "x")


def test_headline_reads_a_rate_lift_in_both_languages():
    """A 4.2-point lift reads as the issue's sentence in zh-CN and in English."""
    effect = _effect(0.042, 0.011, 0.073, 0.008)

    sentences = headline("stage_advanced", effect, level=0.95)

    assert sentences == {
        "zh-CN": "处理组阶段推进率高出 4.2 个百分点 (95% 置信区间 1.1–7.3, p=0.008)",
        "en": "Treatment stage-advance rate is 4.2 percentage points higher "
        "(95% CI 1.1–7.3, p=0.008)",
    }


def test_headline_reads_a_shorter_cycle_with_the_interval_of_the_reduction():
    """Three days less reads as 短 3.0 天 with the interval of the reduction."""
    effect = _effect(-3.0, -5.5, -0.5, 0.0004)

    sentences = headline("cycle_time_days", effect, level=0.9)

    assert (
        sentences["zh-CN"] == "处理组成交周期短 3.0 天 (90% 置信区间 0.5–5.5, p<0.001)"
    )
    assert sentences["en"] == (
        "Treatment sales cycle is 3.0 days shorter (90% CI 0.5–5.5, p<0.001)"
    )


def test_report_without_enough_units_says_so():
    """One unit per arm gives no effect and a not-enough-data headline."""
    report = build_report([1.0], [0.0], metric="win_rate", planned_sample_size=100)

    assert report.effect is None
    assert report.headline["zh-CN"] == "赢单率：数据不足，每组至少需要 2 个样本。"
    assert report.sequential.is_early_look is True


def test_report_refuses_non_binary_outcomes_for_a_rate():
    """A proportion metric takes only zeros and ones."""
    with pytest.raises(InvalidInput, match="0 or 1"):
        build_report([0.5, 1.0], [0.0, 1.0], metric="stage_advanced")


def test_report_serialises_to_json_with_chinese_intact():
    """as_dict is plain JSON, and the Chinese headline survives a round trip."""
    report = build_report(
        [1.0, 1.0, 0.0, 1.0],
        [0.0, 1.0, 0.0, 0.0],
        metric="stage_advanced",
        minimum_detectable_effect=0.1,
        planned_sample_size=100,
        treatment_covariate=[1.0, 2.0, 0.0, 1.0],
        control_covariate=[0.0, 2.0, 1.0, 0.0],
        experiment_key="nudge",
    )

    text = json.dumps(report.as_dict(), ensure_ascii=False, allow_nan=False)
    back = json.loads(text)

    assert back["headline"]["zh-CN"].startswith("处理组阶段推进率高出 50.0 个百分点")
    assert back["treatment"] == {"n": 4, "mean": 0.75, "variance": 0.25}
    assert back["effect"]["method"] == "newcombe_wilson"
    assert back["cuped"]["effect"]["method"] == "welch"
    assert back["sequential"]["information_fraction"] == 0.08


def test_outcome_value_of_win_rate_and_cycle_time():
    """Won after exposure counts 1 and its cycle; closed before exposure counts not."""
    created = EXPOSED_AT - 40 * DAY
    closed = EXPOSED_AT + 10 * DAY
    common = {"forward_moves": [], "window": 14 * DAY, "as_of": EXPOSED_AT + 60 * DAY}

    won = outcome_value(
        "win_rate",
        exposed_at=EXPOSED_AT,
        status="won",
        created_at=created,
        closed_at=closed,
        **common,
    )
    lost = outcome_value(
        "win_rate",
        exposed_at=EXPOSED_AT,
        status="lost",
        created_at=created,
        closed_at=closed,
        **common,
    )
    cycle = outcome_value(
        "cycle_time_days",
        exposed_at=EXPOSED_AT,
        status="won",
        created_at=created,
        closed_at=closed,
        **common,
    )
    early = outcome_value(
        "win_rate",
        exposed_at=EXPOSED_AT,
        status="won",
        created_at=created,
        closed_at=EXPOSED_AT - DAY,
        **common,
    )

    assert (won, lost, cycle, early) == (1.0, 0.0, 50.0, None)


# --- database -----------------------------------------------------------------


def _stages(session: Session) -> dict[str, int]:
    return {stage.key: stage.id for stage in default_pipeline(session).stages}


def _opportunities(session: Session, count: int) -> list[int]:
    pipeline = default_pipeline(session)
    account = Account(
        external_id="A-exp", name="上海星河机械有限公司", normalized_name="星河机械"
    )
    session.add(account)
    session.flush()
    created = [
        Opportunity(
            external_id=f"O-exp-{index}",
            name=f"智能工厂改造 {index}",
            account_id=account.id,
            pipeline_id=pipeline.id,
            stage_id=_stages(session)["lead"],
            created_at=EXPOSED_AT - 60 * DAY,
            stage_entered_at=EXPOSED_AT - 60 * DAY,
        )
        for index in range(count)
    ]
    session.add_all(created)
    session.flush()
    return [opportunity.id for opportunity in created]


def _move(
    session: Session, opportunity_id: int, at: dt.datetime, source: str, target: str
) -> None:
    stages = _stages(session)
    session.add(
        StageChange(
            opportunity_id=opportunity_id,
            from_stage_id=stages[source],
            to_stage_id=stages[target],
            changed_at=at,
        )
    )


def _experiment(session: Session, org: Org, **values: object) -> Experiment:
    plan: dict[str, object] = {
        "key": "nudge",
        "name": "沉默商机提醒",
        "rule_ref": "rule-7",
        "metric": "stage_advanced",
        "holdout_share": 0.5,
        "window_days": 14,
        "planned_sample_size": 400,
        "minimum_detectable_effect": 0.05,
        "salt": "fixed-salt",
    }
    plan.update(values)
    return create_experiment(session, org.actors["ops"], **plan)


def _by_arm(experiment: Experiment, units: list[int]) -> dict[str, list[int]]:
    arms: dict[str, list[int]] = {"treatment": [], "control": []}
    for unit in units:
        arms[assign("nudge", unit, holdout_share=0.5, salt=experiment.salt)].append(
            unit
        )
    return arms


def _audit(session: Session, action: str) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.resource == "experiments", AuditEntry.action == action)
            .order_by(AuditEntry.seq)
        )
    )


def test_sales_ops_creates_an_experiment_and_leaves_an_audit_row(
    sessions: sessionmaker[Session], org: Org, fixed_clock: object
):
    """Creating an experiment stores the plan and audits it under its key."""
    with transaction(sessions) as session:
        experiment = _experiment(session, org)

    with sessions() as session:
        stored = session.scalars(select(Experiment)).one()
        audit = _audit(session, "create")
        running = running_experiment_for_rule(session, "rule-7")
        by_key = running_experiment(session, "nudge")

    assert (stored.key, stored.holdout_share, stored.status) == (
        "nudge",
        0.5,
        "running",
    )
    assert stored.id == experiment.id
    assert running is not None and running.key == "nudge"
    assert by_key is not None and by_key.rule_ref == "rule-7"
    assert [(a.username, a.record_ids) for a in audit] == [("ops", ["nudge"])]


def test_only_sales_ops_may_create_experiments(
    sessions: sessionmaker[Session], org: Org
):
    """A manager may read experiments but not create one."""
    with sessions() as session, pytest.raises(PolicyDenied, match="create experiments"):
        create_experiment(
            session,
            org.actors["manager_a"],
            key="x",
            name="x",
            rule_ref="r",
            metric="win_rate",
            holdout_share=0.2,
            window_days=7,
            planned_sample_size=100,
            minimum_detectable_effect=0.05,
        )


def test_a_bad_plan_names_the_field(sessions: sessionmaker[Session], org: Org):
    """A holdout share of 0 leaves no control group and is refused by name."""
    with sessions() as session, pytest.raises(InvalidInput, match="holdout_share"):
        _experiment(session, org, holdout_share=0.0)


def test_a_key_and_a_running_rule_take_one_experiment_each(
    sessions: sessionmaker[Session], org: Org
):
    """A second experiment with the same key, or on the same running rule, clashes."""
    with transaction(sessions) as session:
        _experiment(session, org)

    with sessions() as session:
        with pytest.raises(Conflict, match="already exists"):
            _experiment(session, org, rule_ref="rule-8")
        with pytest.raises(Conflict, match="already runs"):
            _experiment(session, org, key="nudge-2")


def test_listing_experiments_is_audited_and_newest_first(
    sessions: sessionmaker[Session], org: Org
):
    """A manager lists experiments newest first; the read is audited."""
    with transaction(sessions) as session:
        _experiment(session, org)
        _experiment(session, org, key="nudge-2", rule_ref="rule-8")

    with transaction(sessions) as session:
        keys = [e.key for e in list_experiments(session, org.actors["manager_a"])]

    with sessions() as session:
        audit = _audit(session, "read")
    assert keys == ["nudge-2", "nudge"]
    assert [a.record_ids for a in audit] == [["nudge-2", "nudge"]]


def test_only_the_first_exposure_of_a_unit_counts(
    sessions: sessionmaker[Session], org: Org
):
    """Exposing a unit twice keeps one row with the first time and arm."""
    with transaction(sessions) as session:
        experiment = _experiment(session, org)
        unit = _opportunities(session, 1)[0]
        first = expose(session, experiment, unit, at=EXPOSED_AT, rule_id="rule-7")
        second = expose(
            session, experiment, unit, at=EXPOSED_AT + DAY, rule_id="rule-7"
        )

    with sessions() as session:
        rows = list(session.scalars(select(ExperimentExposure)))
    assert first == second
    assert [(r.unit_id, r.arm, r.exposed_at) for r in rows] == [
        (unit, first, EXPOSED_AT)
    ]


def test_an_exposure_must_carry_the_assigned_arm_and_the_rule(
    sessions: sessionmaker[Session], org: Org
):
    """Logging the other arm, or another rule's firing, is refused."""
    with sessions() as session:
        experiment = _experiment(session, org)
        unit = _opportunities(session, 1)[0]
        wrong = (
            "control" if expose_arm(experiment, unit) == "treatment" else "treatment"
        )

        with pytest.raises(InvalidInput, match="is assigned to"):
            record_exposure(
                session, experiment, unit, arm=wrong, at=EXPOSED_AT, rule_id="rule-7"
            )
        with pytest.raises(InvalidInput, match="is not its rule"):
            expose(session, experiment, unit, at=EXPOSED_AT, rule_id="rule-9")


def expose_arm(experiment: Experiment, unit: int) -> str:
    return assign(experiment.key, unit, holdout_share=0.5, salt=experiment.salt)


def test_a_stopped_experiment_logs_no_exposure(
    sessions: sessionmaker[Session], org: Org, fixed_clock: object
):
    """After stopping, the rule has no running experiment and exposures are refused."""
    with transaction(sessions) as session:
        experiment = _experiment(session, org)
        unit = _opportunities(session, 1)[0]
        stop_experiment(session, org.actors["ops"], "nudge")

    with sessions() as session:
        assert running_experiment_for_rule(session, "rule-7") is None
        assert running_experiment(session, "nudge") is None
        with pytest.raises(Conflict, match="is stopped"):
            expose(session, experiment, unit, at=EXPOSED_AT, rule_id="rule-7")


def test_stage_advance_outcomes_and_pre_period_velocity_come_from_stage_history(
    sessions: sessionmaker[Session], org: Org
):
    """Forward moves within 14 days count; late, lost and backward moves do not."""
    as_of = EXPOSED_AT + 30 * DAY
    with transaction(sessions) as session:
        experiment = _experiment(session, org)
        fast, late, lost, back, fresh = _opportunities(session, 5)
        _move(session, fast, EXPOSED_AT - 10 * DAY, "lead", "discovery")
        _move(session, fast, EXPOSED_AT + 3 * DAY, "discovery", "solution")
        _move(session, late, EXPOSED_AT + 20 * DAY, "lead", "discovery")
        _move(session, lost, EXPOSED_AT + 2 * DAY, "lead", "lost")
        _move(session, back, EXPOSED_AT - 40 * DAY, "lead", "discovery")
        _move(session, back, EXPOSED_AT + 5 * DAY, "discovery", "lead")
        for unit in (fast, late, lost, back):
            expose(session, experiment, unit, at=EXPOSED_AT, rule_id="rule-7")
        expose(session, experiment, fresh, at=as_of - 5 * DAY, rule_id="rule-7")

    with sessions() as session:
        outcomes = unit_outcomes(session, experiment, as_of=as_of)

    found = {o.unit_id: (o.value, o.covariate) for o in outcomes}
    assert found == {
        fast: (1.0, 7 / 30),
        late: (0.0, 0.0),
        lost: (0.0, 0.0),
        back: (0.0, 0.0),
        fresh: (None, 0.0),
    }


def _report_scenario(sessions: sessionmaker[Session], org: Org) -> dict[str, list[int]]:
    # Three measured units per arm: 2 of 3 treated advance, 1 of 3 controls
    # do; one more treated unit was exposed too recently to be measured.
    with transaction(sessions) as session:
        experiment = _experiment(session, org)
        arms = _by_arm(experiment, _opportunities(session, 40))
        treated, controls = arms["treatment"][:4], arms["control"][:3]
        for unit in (*treated[:3], *controls):
            expose(session, experiment, unit, at=EXPOSED_AT, rule_id="rule-7")
        expose(
            session, experiment, treated[3], at=EXPOSED_AT + 25 * DAY, rule_id="rule-7"
        )
        for unit in (*treated[:2], controls[0]):
            _move(session, unit, EXPOSED_AT + DAY, "lead", "discovery")
    return {"treatment": treated, "control": controls}


def test_the_report_over_crm_data_counts_each_arm_and_is_audited(
    sessions: sessionmaker[Session], org: Org, fixed_clock: object
):
    """Two of three treated and one of three controls advanced: +33.3 points."""
    _report_scenario(sessions, org)

    with transaction(sessions) as session:
        report = experiment_report(
            session, org.actors["compliance"], "nudge", as_of=EXPOSED_AT + 30 * DAY
        )

    with sessions() as session:
        audit = _audit(session, "read")
    assert (report.treatment.n, report.control.n) == (3, 3)
    assert report.treatment.mean == pytest.approx(2 / 3)
    assert report.control.mean == pytest.approx(1 / 3)
    assert report.excluded == {"treatment": 1, "control": 0}
    assert report.headline["en"].startswith(
        "Treatment stage-advance rate is 33.3 percentage points higher (95% CI"
    )
    assert report.sequential.information_fraction == 6 / 400
    assert [(a.username, a.record_ids) for a in audit] == [("compliance", ["nudge"])]


def test_a_rep_may_not_read_an_experiment_report(
    sessions: sessionmaker[Session], org: Org
):
    """Reps see no experiment reports; an unknown key is not found."""
    with transaction(sessions) as session:
        _experiment(session, org)

    with sessions() as session:
        with pytest.raises(PolicyDenied, match="read experiments"):
            experiment_report(session, org.actors["rep_a1"], "nudge")
        with pytest.raises(NotFound, match="'missing'"):
            experiment_report(session, org.actors["manager_a"], "missing")


def test_exposures_are_unique_per_experiment_and_unit_in_the_database(
    sessions: sessionmaker[Session], org: Org
):
    """The unique constraint backs the first-exposure rule on both databases."""
    with transaction(sessions) as session:
        experiment = _experiment(session, org)
        unit = _opportunities(session, 1)[0]
        arm = expose(session, experiment, unit, at=EXPOSED_AT, rule_id="rule-7")

    with sessions() as session:
        # Bypass the lookup: a second worker that missed the first row.
        session.add(
            ExperimentExposure(
                experiment_id=experiment.id,
                unit_id=unit,
                arm=arm,
                rule_ref="rule-7",
                exposed_at=EXPOSED_AT + DAY,
            )
        )
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()
        count = session.scalar(select(func.count()).select_from(ExperimentExposure))
    assert count == 1
