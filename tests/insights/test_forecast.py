"""Forecasts: weighted pipeline, categories, roll-ups per scope, backtest MAPE."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from tests.insights import add_account, add_deal, add_stage_change, days
from waggle.core.actor import system_actor
from waggle.core.db import transaction
from waggle.core.errors import InvalidInput, PolicyDenied
from waggle.crm.models import Quota
from waggle.insights.forecast import backtest, build_forecast, periods_before
from waggle.insights.models import ModelVersion, OpportunityScore

OPS = system_actor("test-forecast")
JAN_1 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
AS_OF = dt.datetime(2026, 2, 10, 9, 0, tzinfo=dt.UTC)


def _quota(
    session: Session, owner_id: int, period: str, start: str, end: str, amount: str
) -> None:
    session.add(
        Quota(
            external_id=f"Q-{owner_id}-{period}",
            owner_id=owner_id,
            period=period,
            starts_on=dt.date.fromisoformat(start),
            ends_on=dt.date.fromisoformat(end),
            amount=Decimal(amount),
        )
    )


def _score(session: Session, opportunity_id: int, probability: float) -> None:
    version = ModelVersion(kind="win_naive_bayes", version="nb-test", created_by="t")
    session.add(version)
    session.flush()
    session.add(
        OpportunityScore(
            opportunity_id=opportunity_id,
            model_version_id=version.id,
            probability=probability,
            health=35,
            as_of=AS_OF,
        )
    )


def _seed_quarter(sessions: sessionmaker[Session], org: Org) -> dict[str, int]:
    """Deals of 2026-Q1 for three reps in the east and one in the west, and quotas."""
    people = org.employees
    with transaction(sessions) as session:
        account = add_account(session)
        created = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)

        def deal(owner: str, stage: str, amount: str, close: str, category: str) -> int:
            return add_deal(
                session,
                owner_id=people[owner],
                account_id=account,
                created_at=created,
                stage=stage,
                amount=amount,
                expected_close_on=dt.date.fromisoformat(close),
                forecast_category=category,
            ).id

        ids = {
            "a1_commit": deal(
                "rep_a1", "negotiation", "100000", "2026-03-10", "commit"
            ),
            "a1_best": deal("rep_a1", "discovery", "200000", "2026-03-20", "best_case"),
            "a2_scored": deal("rep_a2", "solution", "50000", "2026-02-15", "pipeline"),
            "w1_contract": deal(
                "rep_w1", "contract", "80000", "2026-01-31", "pipeline"
            ),
            "a1_next_q": deal("rep_a1", "contract", "999000", "2026-04-02", "commit"),
            "a1_omitted": deal("rep_a1", "contract", "777000", "2026-03-02", "omitted"),
        }
        ids["b1_won"] = add_deal(
            session,
            owner_id=people["rep_b1"],
            account_id=account,
            created_at=created,
            status="won",
            closed_at=dt.datetime(2026, 2, 1, 3, 0, tzinfo=dt.UTC),
            amount="300000",
        ).id
        _score(session, ids["a2_scored"], 0.35)
        _quota(
            session, people["rep_a1"], "2026-Q1", "2026-01-01", "2026-03-31", "400000"
        )
        _quota(
            session, people["rep_a2"], "2026-M01", "2026-01-01", "2026-01-31", "100000"
        )
        _quota(
            session, people["rep_a2"], "2026-M02", "2026-02-01", "2026-02-28", "100000"
        )
        _quota(
            session, people["rep_a2"], "2026-M04", "2026-04-01", "2026-04-30", "555000"
        )
        _quota(
            session, people["rep_b1"], "2026-Q1", "2026-01-01", "2026-03-31", "600000"
        )
    return ids


def _lines(forecast, level):  # type: ignore[no-untyped-def]
    return {
        line.name: (line.quota, line.closed, line.weighted)
        for line in forecast.rollup
        if line.level == level
    }


def test_weighted_pipeline_uses_model_scores_then_stage_probabilities(sessions, org):
    """Each open deal closing in the period weighs its amount by its win probability."""
    ids = _seed_quarter(sessions, org)

    with transaction(sessions) as session:
        forecast = build_forecast(session, OPS, "2026-Q1", as_of=AS_OF)

    weighted = {line.opportunity_id: line.weighted for line in forecast.deals}
    assert weighted == {
        ids["w1_contract"]: Decimal("64000.00"),
        ids["a2_scored"]: Decimal("17500.00"),
        ids["a1_commit"]: Decimal("60000.00"),
        ids["a1_best"]: Decimal("40000.00"),
    }
    assert forecast.weighted == Decimal("181500.00")
    assert forecast.categories == {
        "pipeline": Decimal("130000"),
        "best_case": Decimal("200000"),
        "commit": Decimal("100000"),
        "closed": Decimal("300000"),
    }
    assert forecast.by_month == {
        "2026-M01": Decimal("64000.00"),
        "2026-M02": Decimal("17500.00"),
        "2026-M03": Decimal("100000.00"),
    }


def test_rollup_goes_from_rep_to_team_to_region_against_quotas(sessions, org):
    """Sales ops sees every rep, team and region with quotas inside the period."""
    _seed_quarter(sessions, org)

    with transaction(sessions) as session:
        forecast = build_forecast(session, OPS, "2026-Q1", as_of=AS_OF)

    assert _lines(forecast, "rep") == {
        "rep_a1": (Decimal("400000"), Decimal(0), Decimal("100000.00")),
        "rep_a2": (Decimal("200000"), Decimal(0), Decimal("17500.00")),
        "rep_b1": (Decimal("600000"), Decimal("300000"), Decimal(0)),
        "rep_w1": (Decimal(0), Decimal(0), Decimal("64000.00")),
    }
    assert _lines(forecast, "team") == {
        "manager_a": (Decimal("600000"), Decimal(0), Decimal("117500.00")),
        "manager_b": (Decimal("600000"), Decimal("300000"), Decimal(0)),
        "director_west": (Decimal(0), Decimal(0), Decimal("64000.00")),
    }
    assert _lines(forecast, "region") == {
        "华东大区": (Decimal("1200000"), Decimal("300000"), Decimal("117500.00")),
        "西部大区": (Decimal(0), Decimal(0), Decimal("64000.00")),
    }
    rep_b1 = next(line for line in forecast.rollup if line.name == "rep_b1")
    assert (rep_b1.attainment, rep_b1.projected_attainment) == (0.5, 0.5)


@pytest.mark.parametrize(
    ("username", "reps"),
    [("rep_a1", {"rep_a1"}), ("manager_a", {"rep_a1", "rep_a2"})],
)
def test_rollup_follows_the_row_scope(sessions, org, username, reps):
    """A rep's roll-up holds only their own deals; a manager's holds the team's."""
    _seed_quarter(sessions, org)

    with transaction(sessions) as session:
        forecast = build_forecast(session, org.actors[username], "2026-Q1", as_of=AS_OF)

    assert set(_lines(forecast, "rep")) == reps
    expected = {"rep_a1": Decimal("100000.00"), "manager_a": Decimal("117500.00")}
    assert _lines(forecast, "team")["manager_a"][2] == expected[username]


def test_forecast_is_refused_to_roles_without_the_forecast_policy(sessions, org):
    """An IT administrator may not read forecasts."""
    _seed_quarter(sessions, org)

    with transaction(sessions) as session, pytest.raises(PolicyDenied):
        build_forecast(session, org.actors["admin"], "2026-Q1", as_of=AS_OF)


def _seed_history(sessions: sessionmaker[Session], org: Org) -> None:
    """History with a known error: January -30%, February -20%, Q1 -23.33...%."""
    owner = org.employees["rep_a1"]
    with transaction(sessions) as session:
        account = add_account(session)

        def deal(
            amount: str,
            close: str,
            status: str,
            closed_at: dt.datetime | None,
            created: dt.datetime | None = None,
        ):
            return add_deal(
                session,
                owner_id=owner,
                account_id=account,
                created_at=created or JAN_1 - days(20),
                status=status,
                closed_at=closed_at,
                amount=amount,
                expected_close_on=dt.date.fromisoformat(close),
            )

        won_jan = deal("100000", "2026-01-20", "won", JAN_1 + days(14))
        add_stage_change(
            session,
            won_jan,
            from_stage="discovery",
            to_stage="negotiation",
            at=JAN_1 - days(5),
        )
        add_stage_change(
            session,
            won_jan,
            from_stage="negotiation",
            to_stage="won",
            at=JAN_1 + days(14),
        )
        lost_jan = deal("50000", "2026-01-25", "lost", JAN_1 + days(20))
        add_stage_change(
            session,
            lost_jan,
            from_stage="discovery",
            to_stage="lost",
            at=JAN_1 + days(20),
        )
        won_feb = deal("200000", "2026-02-10", "won", JAN_1 + days(39))
        add_stage_change(
            session,
            won_feb,
            from_stage="negotiation",
            to_stage="contract",
            at=JAN_1 + days(20),
        )
        add_stage_change(
            session, won_feb, from_stage="contract", to_stage="won", at=JAN_1 + days(39)
        )
        # Created after 1 February: its win counts as actual, never as forecast.
        deal("20000", "2026-02-20", "won", JAN_1 + days(50), created=JAN_1 + days(33))
        # Closed before the periods: known to be lost, never forecast.
        deal("70000", "2026-01-15", "lost", JAN_1 - days(2))


def test_backtest_replays_each_period_from_what_was_known_at_its_start(sessions, org):
    """Forecasts at each month's start against won amounts give the known MAPE."""
    _seed_history(sessions, org)

    with transaction(sessions) as session:
        monthly = backtest(
            session, OPS, granularity="month", periods=["2026-M01", "2026-M02"]
        )
        quarterly = backtest(session, OPS, granularity="quarter", periods=["2026-Q1"])

    assert [(p.period, p.forecast, p.actual, p.deals) for p in monthly.periods] == [
        ("2026-M01", Decimal("70000.00"), Decimal("100000"), 2),
        ("2026-M02", Decimal("160000.00"), Decimal("220000"), 1),
    ]
    assert [round(p.error or 0, 6) for p in monthly.periods] == [-0.3, -0.272727]
    assert round(monthly.mape or 0, 6) == 0.286364
    assert [p.is_within_band for p in monthly.periods] == [False, False]
    quarter = quarterly.periods[0]
    assert (quarter.forecast, quarter.actual) == (
        Decimal("190000.00"),
        Decimal("320000"),
    )
    assert round(quarterly.mape or 0, 6) == 0.40625


def test_backtest_band_accepts_errors_up_to_ten_percent(sessions, org):
    """A period forecast 10% high lies inside the band; no win means no error."""
    owner = org.employees["rep_a1"]
    with transaction(sessions) as session:
        account = add_account(session)
        won = add_deal(
            session,
            owner_id=owner,
            account_id=account,
            created_at=JAN_1 - days(9),
            status="won",
            closed_at=JAN_1 + days(3),
            amount="100000",
            expected_close_on=dt.date(2026, 1, 5),
        )
        add_stage_change(
            session, won, from_stage="lead", to_stage="contract", at=JAN_1 - days(8)
        )
        add_deal(
            session,
            owner_id=owner,
            account_id=account,
            created_at=JAN_1 - days(9),
            stage="contract",
            amount="37500",
            expected_close_on=dt.date(2026, 1, 6),
        )

    with transaction(sessions) as session:
        result = backtest(session, OPS, periods=["2026-M01", "2026-M02"])

    assert [(p.forecast, p.is_within_band, p.error) for p in result.periods] == [
        (Decimal("110000.00"), True, pytest.approx(0.1)),
        (Decimal("0.00"), None, None),
    ]
    assert result.mape == pytest.approx(0.1)


def test_periods_before_lists_complete_periods_oldest_first():
    """The default backtest periods are the complete ones before today's."""
    assert periods_before(dt.date(2026, 2, 10), granularity="month", count=3) == [
        "2025-M11",
        "2025-M12",
        "2026-M01",
    ]
    assert periods_before(dt.date(2026, 2, 10), granularity="quarter", count=2) == [
        "2025-Q3",
        "2025-Q4",
    ]
    with pytest.raises(InvalidInput, match="granularity"):
        periods_before(dt.date(2026, 2, 10), granularity="week", count=2)
