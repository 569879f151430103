"""The model registry page: versions, reports, promotion asked and approved."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from tests.insights.test_lifecycle_api import _account, _history_csv
from tests.insights.test_promotion import add_challenger
from tests.web.helpers import log_in
from waggle.core.db import transaction
from waggle.insights.models import ModelPromotion, ModelStatus, ModelVersion


def _challenger(sessions: sessionmaker[Session]) -> int:
    with transaction(sessions) as session:
        return add_challenger(session)


def _post(client: TestClient, path: str, token: str, **fields: str):  # type: ignore[no-untyped-def]
    return client.post(
        path, data={"csrf_token": token, **fields}, follow_redirects=False
    )


def test_sales_ops_asks_and_a_director_approves_from_the_page(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """The request and the approval both go through the page's forms."""
    version_id = _challenger(sessions)
    token = log_in(client, "ops")
    page = client.get("/insights/models")
    asked = _post(
        client, f"/insights/models/{version_id}/promotion", token, reason="AUC 更高"
    )
    client.post("/logout", data={"csrf_token": token})
    token = log_in(client, "director_east")
    pending = client.get("/insights/models")
    approved = _post(
        client, f"/insights/models/{version_id}/promotion/approve", token, note="同意"
    )

    assert page.status_code == 200
    assert "申请升级" in page.text
    assert (asked.status_code, asked.headers["location"]) == (
        303,
        "/insights/models?done=requested",
    )
    assert "待审批" in pending.text and "AUC 更高" in pending.text
    assert approved.status_code == 303
    with transaction(sessions) as session:
        version = session.get_one(ModelVersion, version_id)
        promotion = session.query(ModelPromotion).one()
        assert (version.status, promotion.decided_by, promotion.decision_note) == (
            ModelStatus.CHAMPION,
            "director_east",
            "同意",
        )


def test_the_one_who_asked_cannot_approve_and_sees_why(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """Sales ops may not approve: the policy refuses with 403."""
    version_id = _challenger(sessions)
    token = log_in(client, "ops")
    _post(client, f"/insights/models/{version_id}/promotion", token)

    refused = _post(client, f"/insights/models/{version_id}/promotion/approve", token)

    assert refused.status_code == 403
    with transaction(sessions) as session:
        assert session.get_one(ModelVersion, version_id).status == (
            ModelStatus.CHALLENGER
        )


def test_a_rep_may_not_open_the_registry(client: TestClient, org: Org) -> None:
    """Reps do not read models: the page is refused."""
    log_in(client, "rep_a1")

    page = client.get("/insights/models")

    assert page.status_code == 403


def test_the_registry_reads_in_english(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """With English chosen, statuses and buttons are in English."""
    _challenger(sessions)
    log_in(client, "ops")
    client.get("/lang/en?next=/")

    page = client.get("/insights/models")

    assert "Model registry" in page.text
    assert "Win model (LightGBM)" in page.text
    assert "Request promotion" in page.text


def test_an_uploaded_history_trains_a_challenger_from_the_page(
    client: TestClient, sessions: sessionmaker[Session], org: Org, fixed_clock
) -> None:
    """The file goes through the import; the new challenger and its report show."""
    data = _history_csv(_account(sessions))
    token = log_in(client, "ops")

    trained = client.post(
        "/insights/models/challengers",
        data={"csrf_token": token, "min_won": "5", "min_lost": "5"},
        files={"file": ("历史商机.csv", data, "text/csv")},
        follow_redirects=False,
    )
    page = client.get("/insights/models?done=trained")

    assert (trained.status_code, trained.headers["location"]) == (
        303,
        "/insights/models?done=trained",
    )
    with transaction(sessions) as session:
        version = session.query(ModelVersion).filter_by(kind="win_lightgbm").one()
    assert version.status == ModelStatus.CHALLENGER
    assert f"/api/v1/insights/models/{version.id}/report.html" in page.text
    assert "挑战者已训练" in page.text


def test_too_little_history_is_refused_on_the_page_with_the_reason(
    client: TestClient, sessions: sessionmaker[Session], org: Org, fixed_clock
) -> None:
    """Sixty deals are fewer than the 200 won and 200 lost asked by default."""
    data = _history_csv(_account(sessions))
    token = log_in(client, "ops")

    refused = client.post(
        "/insights/models/challengers",
        data={"csrf_token": token},
        files={"file": ("history.csv", data, "text/csv")},
    )

    assert refused.status_code == 422
    assert "200" in refused.text
    with transaction(sessions) as session:
        assert session.query(ModelVersion).filter_by(kind="win_lightgbm").count() == 0


def test_an_overlong_reason_is_refused_with_its_length(
    client: TestClient, sessions: sessionmaker[Session], org: Org
) -> None:
    """A reason of 501 characters is refused before it reaches the database."""
    version_id = _challenger(sessions)
    token = log_in(client, "ops")

    refused = _post(
        client, f"/insights/models/{version_id}/promotion", token, reason="长" * 501
    )

    assert refused.status_code == 422
    assert "501" in refused.text
    with transaction(sessions) as session:
        assert session.query(ModelPromotion).count() == 0
