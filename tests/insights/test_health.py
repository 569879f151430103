"""The health index: calibration, fallback, stored scores, the API and the policy."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories import Org
from tests.insights import (
    AS_OF,
    add_account,
    add_contact,
    add_deal,
    add_event,
    add_tracker_hit,
    days,
    hours,
)
from waggle.core.actor import system_actor
from waggle.core.errors import PolicyDenied
from waggle.crm.models import Opportunity
from waggle.insights.champion import HistoryRule, train
from waggle.insights.health import calibration_report, health_index, reliability_bins
from waggle.insights.models import ModelStatus, ModelVersion, OpportunityScore
from waggle.insights.service import (
    add_closed_deal,
    explain_opportunity,
    score_opportunities,
    train_champion,
)

OPS = system_actor("test-insights")
SMALL_HISTORY = HistoryRule(min_won=3, min_lost=3)
LEVELS = ("a", "b", "c")


def _simulate(rng: random.Random, count: int) -> list[tuple[dict[str, str], str]]:
    """Deals drawn from a true naive-Bayes model: five independent features."""
    likelihoods = {
        "won": [
            (0.6, 0.3, 0.1),
            (0.5, 0.3, 0.2),
            (0.2, 0.3, 0.5),
            (0.4, 0.4, 0.2),
            (0.3, 0.3, 0.4),
        ],
        "lost": [
            (0.2, 0.3, 0.5),
            (0.3, 0.3, 0.4),
            (0.5, 0.3, 0.2),
            (0.3, 0.4, 0.3),
            (0.3, 0.3, 0.4),
        ],
    }
    rows = []
    for _ in range(count):
        outcome = "won" if rng.random() < 0.35 else "lost"
        levels = {
            f"f{index}": rng.choices(LEVELS, weights=weights)[0]
            for index, weights in enumerate(likelihoods[outcome])
        }
        rows.append((levels, outcome))
    return rows


def test_predicted_deciles_match_observed_win_rates_on_a_naive_bayes_world():
    """On simulated deals each predicted decile is within 0.03 of its win rate."""
    rng = random.Random(20260302)
    model = train(_simulate(rng, 20_000), features=tuple(f"f{i}" for i in range(5)))
    holdout = _simulate(rng, 20_000)

    pairs = sorted(
        (model.predict(levels).probability, outcome == "won")
        for levels, outcome in holdout
    )

    size = len(pairs) // 10
    deciles = [pairs[i * size : (i + 1) * size] for i in range(10)]
    gaps = [
        abs(sum(p for p, _ in part) / size - sum(won for _, won in part) / size)
        for part in deciles
    ]
    assert max(gaps) < 0.03
    assert calibration_report(pairs).expected_calibration_error < 0.02


def test_reliability_bins_group_predictions_by_tenth():
    """Predictions fall into their tenth, with mean prediction and win rate per bin."""
    pairs = [(0.12, True), (0.18, False), (0.85, True), (0.95, True)]

    bins = reliability_bins(pairs)

    assert [(b.low, b.count, b.observed_rate) for b in bins] == [
        (0.1, 2, 0.5),
        (0.8, 1, 1.0),
        (0.9, 1, 1.0),
    ]
    assert bins[0].mean_predicted == pytest.approx(0.15)


def test_health_is_the_probability_in_percent():
    """Health 0-100 is the win probability times 100, rounded."""
    assert [health_index(p) for p in (0.0, 0.424, 0.425001, 1.0)] == [0, 42, 43, 100]


def _history(session: Session, owner_id: int, *, won: int, lost: int) -> None:
    """Won deals engaged a decision maker; lost ones heard objections and went quiet."""
    account = add_account(session)
    decider = add_contact(session, account, "decision_maker")
    for index in range(won + lost):
        is_won = index < won
        closed_at = AS_OF - days(20 + index)
        deal = add_deal(
            session,
            owner_id=owner_id,
            account_id=account,
            created_at=closed_at - days(60),
            status="won" if is_won else "lost",
            closed_at=closed_at,
        )
        if is_won:
            add_event(
                session, deal, "meeting_held", closed_at - days(2), contact_id=decider
            )
        else:
            add_tracker_hit(session, deal, "objection", closed_at - days(30))
            add_tracker_hit(session, deal, "objection", closed_at - days(29))
            add_tracker_hit(session, deal, "objection", closed_at - days(28))


def _open_deal(
    session: Session, owner_id: int, *, with_decider: bool = False, **values: object
) -> Opportunity:
    """An open deal that heard three objections (and, if asked, met a decider)."""
    account = add_account(session)
    deal = add_deal(
        session,
        owner_id=owner_id,
        account_id=account,
        created_at=AS_OF - days(30),
        stage="discovery",
        **values,
    )
    add_tracker_hit(session, deal, "objection", AS_OF - days(3))
    add_tracker_hit(session, deal, "objection", AS_OF - days(2))
    add_tracker_hit(session, deal, "objection", AS_OF - days(1))
    if with_decider:
        decider = add_contact(session, account, "decision_maker")
        add_event(session, deal, "meeting_held", AS_OF - days(2), contact_id=decider)
    return deal


def test_below_minimum_history_the_stage_default_is_used_with_its_note(
    session, org: Org, fixed_clock
):
    """With too few closed deals the score is the stage probability, noted as such."""
    owner = org.employees["rep_a1"]
    _history(session, owner, won=2, lost=2)
    deal = _open_deal(session, owner)

    report = train_champion(session, OPS, AS_OF)
    stored = score_opportunities(session, OPS, [deal.id])

    assert (report.is_fallback, report.won, report.lost) == (True, 2, 2)
    assert report.note == {
        "zh-CN": "历史不足，使用阶段默认概率",
        "en": "not enough history: stage default probability",
    }
    assert (stored[0].probability, stored[0].health) == (0.2, 20)
    assert (
        stored[0].note
        == "历史不足，使用阶段默认概率 / not enough history: stage default probability"
    )
    assert session.get(ModelVersion, stored[0].model_version_id).kind == "stage_default"


def test_a_trained_champion_scores_and_names_its_version(
    session, org: Org, fixed_clock
):
    """With enough history the champion scores the deal and the score names it."""
    owner = org.employees["rep_a1"]
    _history(session, owner, won=6, lost=6)
    deal = _open_deal(session, owner)

    report = train_champion(session, OPS, AS_OF, rule=SMALL_HISTORY)
    stored = score_opportunities(session, OPS, [deal.id])

    assert (report.is_fallback, report.won, report.lost) == (False, 6, 6)
    assert report.version.status == ModelStatus.CHAMPION
    assert stored[0].model_version_id == report.version.id
    assert stored[0].probability < 0.5
    assert stored[0].levels["objections"] == "many"


def test_the_manual_probability_is_kept_beside_and_never_overwritten(
    session, org: Org, fixed_clock
):
    """Training and scoring leave the rep's probability as the rep set it."""
    owner = org.employees["rep_a1"]
    _history(session, owner, won=6, lost=6)
    deal = _open_deal(session, owner, manual_probability=65)

    train_champion(session, OPS, AS_OF, rule=SMALL_HISTORY)
    stored = score_opportunities(session, OPS, [deal.id])
    insight = explain_opportunity(session, OPS, deal.id)

    session.expire_all()
    assert session.get(Opportunity, deal.id).manual_probability == 65
    assert stored[0].manual_probability == 65
    assert insight.manual_probability == 65
    assert insight.probability == stored[0].probability


def test_rescoring_keeps_one_latest_score_per_opportunity(
    session, org: Org, fixed_clock
):
    """A second scoring becomes the latest and the first stays as history."""
    deal = _open_deal(session, org.employees["rep_a1"])

    score_opportunities(session, OPS, [deal.id])
    score_opportunities(session, OPS)

    flags = session.scalars(
        select(OpportunityScore.is_latest)
        .where(OpportunityScore.opportunity_id == deal.id)
        .order_by(OpportunityScore.id)
    ).all()
    assert flags == [False, True]


def test_adding_a_closed_deal_makes_a_new_champion_with_one_more_count(
    session, org: Org, fixed_clock
):
    """The incremental update adds exactly the new deal and retires its parent."""
    owner = org.employees["rep_a1"]
    _history(session, owner, won=6, lost=6)
    first = train_champion(session, OPS, AS_OF - days(1), rule=SMALL_HISTORY).version
    late = add_deal(
        session,
        owner_id=owner,
        account_id=add_account(session),
        created_at=AS_OF - days(10),
        status="won",
        closed_at=AS_OF - hours(1),
    )

    second = add_closed_deal(session, OPS, late.id)

    assert (second.won_count, second.lost_count) == (7, 6)
    assert (second.parent_id, first.status) == (first.id, ModelStatus.RETIRED)


def test_a_rep_may_not_train_the_model(session, org: Org):
    """Training is for sales ops; a rep is refused."""
    with pytest.raises(PolicyDenied):
        train_champion(session, org.actors["rep_a1"], AS_OF)


def test_a_rep_may_not_read_another_teams_score(session, org: Org, fixed_clock):
    """A score follows its opportunity's owner: another team's rep is refused."""
    deal = _open_deal(session, org.employees["rep_a1"])

    with pytest.raises(PolicyDenied):
        explain_opportunity(session, org.actors["rep_w1"], deal.id)


def test_the_api_returns_factors_in_zh_cn_and_en(
    client, sessions, org: Org, fixed_clock
):
    """GET .../score gives health, the manual figure and worded factors both ways."""
    with sessions() as session:
        owner = org.employees["rep_a1"]
        _history(session, owner, won=6, lost=6)
        deal_id = _open_deal(
            session, owner, with_decider=True, manual_probability=40
        ).id
        session.commit()
    ops = org.headers("ops")
    assert (
        client.post(
            "/api/v1/insights/train",
            json={"cutoff": AS_OF.isoformat(), "min_won": 3, "min_lost": 3},
            headers=ops,
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/api/v1/insights/score", json={"ids": [deal_id]}, headers=ops
        ).json()["scored"]
        == 1
    )

    answer = client.get(
        f"/api/v1/insights/opportunities/{deal_id}/score",
        headers=org.headers("rep_a1"),
    )

    body = answer.json()
    assert answer.status_code == 200
    assert body["manual_probability"] == 40
    assert body["note"] is None
    assert [f["feature"] for f in body["negative_factors"]] == ["objections"]
    worst = body["negative_factors"][0]
    assert worst["text"] == {
        "zh-CN": "近90天出现3次及以上客户异议",
        "en": "three or more objections in 90 days",
    }
    assert worst["line"]["zh-CN"].startswith("不利：近90天出现3次及以上客户异议（权重")
    assert worst["line"]["en"].startswith("hurts: three or more objections in 90 days")
