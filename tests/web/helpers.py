"""Helpers of the web tests: logging in through the form, seeding deals."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import PASSWORD, Org, add_account, add_opportunity
from waggle.core.db import transaction
from waggle.crm.models import Pipeline, PipelineStage
from waggle.crm.service import ACTIVITIES, CONTACTS
from waggle.governance.catalogue import classify_field
from waggle.governance.records import create_record

LOGIN_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def log_in(client: TestClient, username: str, *, password: str = PASSWORD) -> str:
    """Log ``username`` in through the login form; return the session's CSRF token."""
    form = client.get("/login")
    match = LOGIN_TOKEN.search(form.text)
    assert match is not None, form.text
    response = client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": match[1],
            "next": "/",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_token(client)


def csrf_token(client: TestClient) -> str:
    page = client.get("/")
    match = META_TOKEN.search(page.text)
    assert match is not None, page.text
    return match[1]


def stage_ids(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Return the stage ids of the default pipeline by stage key."""
    with sessions() as session:
        rows = session.execute(
            select(PipelineStage.key, PipelineStage.id)
            .join(Pipeline, Pipeline.id == PipelineStage.pipeline_id)
            .where(Pipeline.is_default)
        )
        return {key: stage_id for key, stage_id in rows}


def seed_deals(sessions: sessionmaker[Session], org: Org) -> dict[str, int]:
    """Give rep_a1 and rep_a2 an account and an opportunity each; return the ids."""
    ids: dict[str, int] = {}
    with transaction(sessions) as session:
        rep_a1, rep_a2 = org.actors["rep_a1"], org.actors["rep_a2"]
        ids["account_a1"] = add_account(
            session, rep_a1, "上海星河机械有限公司", industry="制造业", city="上海"
        )
        ids["account_a2"] = add_account(
            session, rep_a2, "杭州云帆科技股份有限公司", industry="软件", city="杭州"
        )
        ids["deal_a1"] = add_opportunity(
            session, rep_a1, ids["account_a1"], "二期产线改造", amount="1250000"
        )
        ids["deal_a2"] = add_opportunity(
            session, rep_a2, ids["account_a2"], "云平台采购", amount="300000"
        )
        ids["contact_a1"] = _add(
            session,
            org,
            CONTACTS,
            account_id=ids["account_a1"],
            name="王芳",
            title="采购总监",
            decision_role="decision_maker",
        )
        ids["activity_a1"] = _add(
            session,
            org,
            ACTIVITIES,
            opportunity_id=ids["deal_a1"],
            kind="visit",
            subject="拜访客户，确认需求",
            body="客户关注交付周期",
        )
    return ids


def _add(session: Session, org: Org, spec: Any, **values: Any) -> int:
    record = create_record(session, org.actors["rep_a1"], spec, values)
    return int(record.id)


def pipeline_form(sessions: sessionmaker[Session], token: str) -> dict[str, Any]:
    """Return the settings form of the default pipeline as the page would post it."""
    with sessions() as session:
        pipeline = session.scalar(select(Pipeline).where(Pipeline.is_default))
        assert pipeline is not None
        form: dict[str, Any] = {
            "csrf_token": token,
            "pipeline_key": pipeline.key,
            "pipeline_name": pipeline.name,
            "is_default": "on",
        }
        for index, stage in enumerate(pipeline.stages):
            kind = "won" if stage.is_won else "lost" if stage.is_lost else "open"
            prefix = f"stages-{index}-"
            form |= {
                prefix + "key": stage.key,
                prefix + "existing": "1",
                prefix + "name": stage.name,
                prefix + "name_en": stage.name_en,
                prefix + "probability": str(stage.probability),
                prefix + "order": str((index + 1) * 10),
                prefix + "kind": kind,
                prefix + "required": list(stage.required_fields),
            }
        return form


def classify_amounts(sessions: sessionmaker[Session], org: Org) -> None:
    """Have the data owner grade opportunity amounts confidential."""
    with transaction(sessions) as session:
        classify_field(
            session,
            org.actors["owner"],
            "opportunities",
            "amount",
            changes={"grade": "confidential"},
        )
