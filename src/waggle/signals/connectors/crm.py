"""CRM changes as behaviour events: stage moves and hand-logged activities.

The CRM writes stage history and activities in its own tables; this source
reads them after a cursor (the highest ids it has passed on) and turns each
row into a self-contained JSON record, which the connector then parses like
any other source. Rules and scores thus see a stage change or a logged call
in the same stream as a chat message, seconds after it happened, without the
CRM knowing about signals.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased, sessionmaker

from waggle.crm.models import (
    Account,
    Activity,
    Contact,
    Opportunity,
    PipelineStage,
    StageChange,
)
from waggle.identity.models import Employee
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventDraft, EventType, RawRecord

NAME = "crm"
_ACTIVITY_CHANNELS = {
    "call": Channel.PHONE,
    "meeting": Channel.MEETING,
    "visit": Channel.VISIT,
    "email": Channel.EMAIL,
}


class CrmChangeConnector:
    """Parses the records :class:`CrmChangeSource` writes."""

    name = NAME

    def __init__(self, config: Mapping[str, Any]):
        self.config = dict(config)

    def parse(self, record: RawRecord) -> list[EventDraft]:
        """Return the stage-change or activity event the record describes.

        Raises:
            MalformedPayload: not a record this source writes.
        """
        try:
            body = json.loads(record.payload.decode("utf-8"))
            kind = body["kind"]
            if kind == "stage_change":
                return [_stage_change(body)]
            if kind == "activity":
                return [_activity(body)]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise MalformedPayload(
                f"{record.locator or 'crm record'}: not a CRM change record ({exc})"
            ) from exc
        raise MalformedPayload(f"{record.locator}: unknown CRM change kind {kind!r}")


def _stage_change(body: dict[str, Any]) -> EventDraft:
    return EventDraft(
        source=NAME,
        source_id=f"stage_change:{body['id']}",
        event_type=EventType.STAGE_CHANGE,
        occurred_at=dt.datetime.fromisoformat(body["changed_at"]),
        channel=Channel.CRM,
        sender=_employee(body.get("owner")),
        opportunity_ref=f"opportunity:{body['opportunity']}",
        attributes={
            "from_stage": body.get("from_stage"),
            "to_stage": body["to_stage"],
            "seconds_in_previous_stage": body.get("seconds_in_previous_stage"),
            "changed_by": body.get("changed_by"),
        },
    )


def _activity(body: dict[str, Any]) -> EventDraft:
    kind = body["activity_kind"]
    return EventDraft(
        source=NAME,
        source_id=f"activity:{body['id']}",
        event_type=(
            EventType.TASK_COMPLETED if kind == "task" else EventType.ACTIVITY_LOGGED
        ),
        occurred_at=dt.datetime.fromisoformat(body["occurred_at"]),
        channel=_ACTIVITY_CHANNELS.get(kind, Channel.MANUAL),
        sender=_employee(body.get("owner")),
        recipients=(f"contact:{body['contact']}",) if body.get("contact") else (),
        account_ref=f"account:{body['account']}" if body.get("account") else None,
        opportunity_ref=(
            f"opportunity:{body['opportunity']}" if body.get("opportunity") else None
        ),
        text=body.get("body") or body.get("subject"),
        attributes={"activity_kind": kind, "subject": body.get("subject")},
        is_automatic=False,
    )


def _employee(external_id: str | None) -> str | None:
    return f"employee:{external_id}" if external_id else None


class CrmChangeSource:
    """Reads stage changes and activities after a cursor, oldest first."""

    name = NAME

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def fetch(
        self, cursor: str | None, *, limit: int
    ) -> tuple[list[RawRecord], str | None]:
        """Return the changes after ``cursor`` and the cursor that follows them."""
        position = _position(cursor)
        with self.sessions() as session:
            changes = _stage_changes(session, position["stage_change"], limit)
            activities = _activities(session, position["activity"], limit)
        records = []
        for kind, rows in (("stage_change", changes), ("activity", activities)):
            for row in rows:
                position[kind] = max(position[kind], int(row["id"]))
                payload = json.dumps({"kind": kind, **row}, ensure_ascii=False)
                records.append(
                    RawRecord(payload.encode("utf-8"), f"{kind} {row['id']}")
                )
        return records, json.dumps(position, sort_keys=True)


def _position(cursor: str | None) -> dict[str, int]:
    start = {"stage_change": 0, "activity": 0}
    if cursor:
        start.update({key: int(value) for key, value in json.loads(cursor).items()})
    return start


def _stage_changes(session: Session, after: int, limit: int) -> list[dict[str, Any]]:
    source_stage = aliased(PipelineStage)
    target_stage = aliased(PipelineStage)
    rows = session.execute(
        select(
            StageChange,
            Opportunity.external_id,
            Employee.external_id,
            source_stage.key,
            target_stage.key,
        )
        .join(Opportunity, Opportunity.id == StageChange.opportunity_id)
        .outerjoin(Employee, Employee.id == Opportunity.owner_id)
        .outerjoin(source_stage, source_stage.id == StageChange.from_stage_id)
        .join(target_stage, target_stage.id == StageChange.to_stage_id)
        .where(StageChange.id > after)
        .order_by(StageChange.id)
        .limit(limit)
    )
    return [
        {
            "id": change.id,
            "opportunity": opportunity,
            "owner": owner,
            "from_stage": from_key,
            "to_stage": to_key,
            "changed_at": change.changed_at.isoformat(),
            "changed_by": change.changed_by,
            "seconds_in_previous_stage": change.seconds_in_previous_stage,
        }
        for change, opportunity, owner, from_key, to_key in rows
    ]


def _activities(session: Session, after: int, limit: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(
            Activity,
            Employee.external_id,
            Account.external_id,
            Opportunity.external_id,
            Contact.external_id,
        )
        .outerjoin(Employee, Employee.id == Activity.owner_id)
        .outerjoin(Account, Account.id == Activity.account_id)
        .outerjoin(Opportunity, Opportunity.id == Activity.opportunity_id)
        .outerjoin(Contact, Contact.id == Activity.contact_id)
        .where(Activity.id > after)
        .order_by(Activity.id)
        .limit(limit)
    )
    return [
        {
            "id": activity.id,
            "activity_kind": activity.kind,
            "subject": activity.subject,
            "body": activity.body,
            "owner": owner,
            "account": account,
            "opportunity": opportunity,
            "contact": contact,
            "occurred_at": activity.occurred_at.isoformat(),
        }
        for activity, owner, account, opportunity, contact in rows
    ]
