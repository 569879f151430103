"""Promotion of a challenger: asked by sales ops, approved by another person."""

from __future__ import annotations

import itertools
import random

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories import Org
from tests.insights import AS_OF, add_account, add_deal
from waggle.core.actor import Actor, system_actor
from waggle.core.errors import Conflict, NotFound, PolicyDenied
from waggle.insights.challenger import BoostingSettings, train_challenger
from waggle.insights.champion import MODEL_FEATURES
from waggle.insights.features import LEVELS
from waggle.insights.health import stage_default_version
from waggle.insights.models import (
    ModelKind,
    ModelStatus,
    ModelVersion,
    OpportunityScore,
)
from waggle.insights.service import (
    decide_promotion,
    explain_opportunity,
    list_model_versions,
    request_promotion,
    score_opportunities,
)

OPS = system_actor("test-insights")
_numbers = itertools.count(1)
BOTH_HATS = Actor(
    user_id=4242,
    username="ops_and_director",
    roles=frozenset({"sales_ops", "director"}),
)


def _levels(rng: random.Random) -> dict[str, str]:
    found = {name: rng.choice(LEVELS[name] or ("展会",)) for name in MODEL_FEATURES}
    found["source"] = rng.choice(["展会", "官网"])
    return found


def add_challenger(
    session: Session, *, kind: str = ModelKind.WIN_LIGHTGBM, created_by: str = "ops"
) -> int:
    """Register a small trained LightGBM challenger (won when pricing was discussed)."""
    rng = random.Random(11)
    rows = []
    for _ in range(120):
        levels = _levels(rng)
        rows.append((levels, "won" if levels["pricing"] == "yes" else "lost"))
    model = train_challenger(
        rows, settings=BoostingSettings(rounds=10, min_data_in_leaf=5)
    )
    version = ModelVersion(
        kind=kind,
        version=f"lgbm-test-{next(_numbers)}",
        cutoff=AS_OF,
        won_count=model.outcomes["won"],
        lost_count=model.outcomes["lost"],
        parameters={"model": model.to_parameters()},
        status=ModelStatus.CHALLENGER,
        created_by=created_by,
    )
    session.add(version)
    session.flush()
    return version.id


def test_a_director_approves_what_sales_ops_asked_and_it_becomes_champion(
    session, org: Org
):
    """ops asks, director_east approves: the challenger becomes champion."""
    version_id = add_challenger(session)

    asked = request_promotion(
        session, org.actors["ops"], version_id, reason="AUC 0.81 vs 0.74"
    )
    request = (asked.status, asked.requested_by, asked.reason)
    decided = decide_promotion(session, org.actors["director_east"], version_id)

    version = session.get_one(ModelVersion, version_id)
    assert request == (
        "requested",
        "ops",
        "AUC 0.81 vs 0.74",
    )
    assert (decided.status, decided.decided_by) == ("approved", "director_east")
    assert (version.status, version.approved_by) == ("champion", "director_east")


def test_the_person_who_asked_may_not_approve(session, org: Org):
    """One person with both roles is refused the approval of their own request."""
    version_id = add_challenger(session)
    request_promotion(session, BOTH_HATS, version_id)

    with pytest.raises(PolicyDenied) as refused:
        decide_promotion(session, BOTH_HATS, version_id)

    assert refused.value.code == "separation_of_duties"
    assert session.get_one(ModelVersion, version_id).status == "challenger"


def test_the_person_who_trained_the_model_may_not_approve_it(session, org: Org):
    """Someone else asked, but the approver trained the challenger: refused."""
    version_id = add_challenger(session, created_by=BOTH_HATS.username)
    request_promotion(session, org.actors["ops"], version_id)

    with pytest.raises(PolicyDenied) as refused:
        decide_promotion(session, BOTH_HATS, version_id)

    assert refused.value.code == "separation_of_duties"
    assert "trained this model" in refused.value.message
    assert session.get_one(ModelVersion, version_id).status == "challenger"


def test_sales_ops_may_not_approve_and_a_director_may_not_ask(session, org: Org):
    """Approving needs models:approve (directors); asking needs models:update."""
    version_id = add_challenger(session)

    with pytest.raises(PolicyDenied, match="may not update models"):
        request_promotion(session, org.actors["director_east"], version_id)
    request_promotion(session, org.actors["ops"], version_id)
    with pytest.raises(PolicyDenied, match="may not approve models"):
        decide_promotion(session, org.actors["ops"], version_id)
    with pytest.raises(PolicyDenied, match="may not approve models"):
        decide_promotion(session, org.actors["rep_a1"], version_id)


def test_approval_needs_an_open_request(session, org: Org):
    """Without a request there is nothing to approve; a second request is refused."""
    version_id = add_challenger(session)

    with pytest.raises(NotFound, match="no open promotion request"):
        decide_promotion(session, org.actors["director_east"], version_id)
    request_promotion(session, org.actors["ops"], version_id)
    with pytest.raises(Conflict, match="promotion already requested"):
        request_promotion(session, org.actors["ops"], version_id)


def test_only_a_trained_challenger_can_be_promoted(session, org: Org):
    """The stage-default model and a champion are not promotion candidates."""
    fallback = stage_default_version(session)

    with pytest.raises(Conflict, match="only a trained challenger"):
        request_promotion(session, org.actors["ops"], fallback.id)


def test_a_rejected_promotion_leaves_the_challenger_as_it_was(session, org: Org):
    """A director's rejection closes the request; the version stays a challenger."""
    version_id = add_challenger(session)
    request_promotion(session, org.actors["ops"], version_id)

    decided = decide_promotion(
        session,
        org.actors["director_west"],
        version_id,
        is_approved=False,
        note="再等等",
    )

    assert (decided.status, decided.decision_note) == ("rejected", "再等等")
    assert session.get_one(ModelVersion, version_id).status == "challenger"


def test_promotion_retires_the_old_champion_and_scores_name_the_new_version(
    session, org: Org, fixed_clock
):
    """After approval every new score names the LightGBM version, with its factors."""
    old = add_challenger(session)
    request_promotion(session, org.actors["ops"], old)
    decide_promotion(session, org.actors["director_east"], old)
    new = add_challenger(session)
    account = add_account(session)
    deal = add_deal(
        session,
        owner_id=org.employees["rep_a1"],
        account_id=account,
        created_at=AS_OF,
    )

    request_promotion(session, org.actors["ops"], new)
    decide_promotion(session, org.actors["director_west"], new)
    stored = score_opportunities(session, OPS, [deal.id])
    insight = explain_opportunity(session, org.actors["rep_a1"], deal.id)

    statuses = {
        version.id: version.status
        for version in list_model_versions(session, org.actors["ops"])
    }
    assert (statuses[old], statuses[new]) == ("retired", "champion")
    assert [score.model_version_id for score in stored] == [new]
    latest = session.scalars(
        select(OpportunityScore.model_version_id).where(
            OpportunityScore.opportunity_id == deal.id
        )
    ).all()
    assert latest == [new]
    assert insight.model_kind == "win_lightgbm"
    assert insight.model_version == session.get_one(ModelVersion, new).version
    assert insight.note is None
    factors = (*insight.explanation.positive, *insight.explanation.negative)
    assert factors[0].feature == "pricing"


def test_the_registry_lists_versions_newest_first_with_their_status(session, org: Org):
    """Every version is listed, newest first, and sales ops may read the registry."""
    first = add_challenger(session)
    second = add_challenger(session)

    listed = list_model_versions(session, org.actors["ops"])

    assert [(v.id, v.status) for v in listed[:2]] == [
        (second, "challenger"),
        (first, "challenger"),
    ]
    with pytest.raises(PolicyDenied):
        list_model_versions(session, org.actors["rep_a1"])


def test_a_retrained_champion_waits_for_approval_once_a_trained_one_exists(
    session, org: Org, fixed_clock
):
    """The first trained model replaces the stage rule; the next is a challenger."""
    from tests.insights.test_health import SMALL_HISTORY, _history
    from waggle.insights.service import train_champion

    _history(session, org.employees["rep_a1"], won=4, lost=4)

    first = train_champion(session, OPS, AS_OF, rule=SMALL_HISTORY).version
    second = train_champion(session, OPS, AS_OF, rule=SMALL_HISTORY).version

    assert (first.status, second.status) == ("champion", "challenger")
    assert second.approved_by is None
