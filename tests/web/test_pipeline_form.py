"""The pipeline settings form: edits apply through apply_pipeline, refusals show."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org
from tests.web.helpers import log_in, pipeline_form
from waggle.crm.models import Pipeline


def _stages(session: Session) -> list[tuple[str, str, str, int, list[str]]]:
    session.expire_all()
    pipeline = session.scalar(select(Pipeline).where(Pipeline.is_default))
    assert pipeline is not None
    return [
        (s.key, s.name, s.name_en, s.probability, list(s.required_fields))
        for s in pipeline.stages
    ]


def test_form_changes_stages_and_adds_one(
    client: TestClient, org: Org, sessions: sessionmaker[Session], session: Session
) -> None:
    """Sales ops edit a probability and requirements and insert a new stage."""
    token = log_in(client, "ops")
    form = pipeline_form(sessions, token)
    form["stages-1-probability"] = "25"
    form["stages-1-required"] = ["source"]
    form |= {
        "stages-7-name": "方案报价",
        "stages-7-name_en": "Proposal sent",
        "stages-7-probability": "50",
        "stages-7-order": "35",
        "stages-7-kind": "open",
        "stages-7-required": ["amount"],
    }

    response = client.post("/settings/pipeline", data=form, follow_redirects=False)

    assert response.status_code == 303, response.text
    assert [row[0] for row in _stages(session)] == [
        "lead",
        "discovery",
        "solution",
        "proposal_sent",
        "negotiation",
        "contract",
        "won",
        "lost",
    ]
    assert _stages(session)[1] == ("discovery", "需求分析", "Discovery", 25, ["source"])
    assert _stages(session)[3] == (
        "proposal_sent",
        "方案报价",
        "Proposal sent",
        50,
        ["amount"],
    )
    assert "销售流程已保存" in client.get(response.headers["location"]).text


def test_form_removes_an_empty_stage(
    client: TestClient, org: Org, sessions: sessionmaker[Session], session: Session
) -> None:
    """Ticking remove on a stage without opportunities deletes it."""
    token = log_in(client, "ops")
    form = pipeline_form(sessions, token) | {"stages-4-remove": "on"}

    response = client.post("/settings/pipeline", data=form, follow_redirects=False)

    assert response.status_code == 303
    assert "contract" not in [row[0] for row in _stages(session)]


def test_removing_a_stage_that_holds_deals_is_refused(
    client: TestClient,
    org: Org,
    deals: dict[str, int],
    sessions: sessionmaker[Session],
    session: Session,
) -> None:
    """The form shows the conflict and the pipeline stays as it was."""
    token = log_in(client, "ops")
    before = _stages(session)
    form = pipeline_form(sessions, token) | {"stages-0-remove": "on"}

    response = client.post("/settings/pipeline", data=form)

    assert response.status_code == 409
    assert "stage lead still holds opportunities" in response.text
    assert _stages(session) == before


def test_a_rep_may_read_but_not_change_the_pipeline(
    client: TestClient, org: Org, sessions: sessionmaker[Session], session: Session
) -> None:
    """A rep sees the form disabled, and a forced post is refused as denied."""
    token = log_in(client, "rep_a1")
    before = _stages(session)
    form = pipeline_form(sessions, token) | {"stages-1-probability": "99"}

    page = client.get("/settings/pipeline").text
    response = client.post("/settings/pipeline", data=form)

    assert '<fieldset class="plain" disabled>' in page
    assert response.status_code == 403
    assert "您没有执行此操作的权限" in response.text
    assert _stages(session) == before


def test_invalid_probability_is_reported(
    client: TestClient, org: Org, sessions: sessionmaker[Session], session: Session
) -> None:
    """A probability above 100 is refused by the pipeline schema."""
    token = log_in(client, "ops")
    form = pipeline_form(sessions, token) | {"stages-2-probability": "140"}

    response = client.post("/settings/pipeline", data=form)

    assert response.status_code == 422
    assert "stages.2.probability" in response.text
    assert _stages(session)[2][3] == 40
