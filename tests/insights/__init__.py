"""Builders of the insights tests: deals, contacts and behaviour events as rows.

Rows are inserted directly (not through connectors) so that every timestamp,
speaker and attribute is exactly the one a test states.
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from waggle.crm.models import Account, Contact, Opportunity, PipelineStage, StageChange
from waggle.identity.models import Employee
from waggle.signals.models import BehaviourEvent

AS_OF = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
_numbers = itertools.count(1)


def days(value: float) -> dt.timedelta:
    return dt.timedelta(days=value)


def hours(value: float) -> dt.timedelta:
    return dt.timedelta(hours=value)


def stage_id(session: Session, key: str) -> int:
    found = session.scalar(select(PipelineStage.id).where(PipelineStage.key == key))
    assert found is not None
    return found


def add_employee(session: Session, name: str) -> int:
    employee = Employee(external_id=f"E-{name}-{next(_numbers)}", name=name)
    session.add(employee)
    session.flush()
    return employee.id


def add_account(session: Session, name: str = "上海星河机械有限公司") -> int:
    number = next(_numbers)
    account = Account(
        external_id=f"A-{number}", name=name, normalized_name=f"{name}{number}"
    )
    session.add(account)
    session.flush()
    return account.id


def add_contact(session: Session, account_id: int, role: str | None = None) -> int:
    number = next(_numbers)
    contact = Contact(
        external_id=f"C-{number}",
        account_id=account_id,
        name=f"联系人{number}",
        decision_role=role,
    )
    session.add(contact)
    session.flush()
    return contact.id


def add_deal(
    session: Session,
    *,
    owner_id: int,
    account_id: int,
    created_at: dt.datetime,
    stage: str = "discovery",
    status: str = "open",
    closed_at: dt.datetime | None = None,
    amount: str = "300000",
    **values: Any,
) -> Opportunity:
    """Add an opportunity created at ``created_at`` in ``stage`` (no history)."""
    stage_key = {"won": "won", "lost": "lost"}.get(status, stage)
    pipeline_stage = session.get(PipelineStage, stage_id(session, stage_key))
    assert pipeline_stage is not None
    deal = Opportunity(
        external_id=f"O-{next(_numbers)}",
        name="星河二期",
        account_id=account_id,
        pipeline_id=pipeline_stage.pipeline_id,
        stage_id=pipeline_stage.id,
        amount=Decimal(amount),
        owner_id=owner_id,
        status=status,
        closed_at=closed_at,
        stage_entered_at=closed_at or created_at,
        created_at=created_at,
        **values,
    )
    session.add(deal)
    session.flush()
    return deal


def add_stage_change(
    session: Session,
    deal: Opportunity,
    *,
    from_stage: str | None,
    to_stage: str,
    at: dt.datetime,
    seconds: float | None = None,
) -> None:
    session.add(
        StageChange(
            opportunity_id=deal.id,
            from_stage_id=stage_id(session, from_stage) if from_stage else None,
            to_stage_id=stage_id(session, to_stage),
            changed_at=at,
            seconds_in_previous_stage=None if seconds is None else int(seconds),
        )
    )
    session.flush()


def add_event(
    session: Session,
    deal: Opportunity,
    event_type: str,
    at: dt.datetime,
    *,
    speaker: str | None = None,
    contact_id: int | None = None,
    attributes: dict[str, Any] | None = None,
) -> None:
    session.add(
        BehaviourEvent(
            source="test",
            source_id=f"e{next(_numbers)}",
            event_type=event_type,
            channel="wecom",
            occurred_at=at,
            actor_id=deal.owner_id,
            contact_id=contact_id,
            account_id=deal.account_id,
            opportunity_id=deal.id,
            speaker=speaker,
            attributes=attributes or {},
            match_status="matched",
        )
    )
    session.flush()


def add_tracker_hit(
    session: Session,
    deal: Opportunity,
    category: str,
    at: dt.datetime,
    *,
    is_negated: bool = False,
) -> None:
    attributes = {
        "category": category,
        "tracker": f"{category}.test",
        "is_negated": is_negated,
        "is_question": False,
        "phrase": "太贵了",
    }
    add_event(
        session, deal, "tracker_hit", at, speaker="customer", attributes=attributes
    )
