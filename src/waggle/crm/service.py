"""CRM business decisions: defaults, references, duplicate claims and stage moves.

The generic read/write path lives in :mod:`waggle.governance.records`; this
module supplies each resource's :class:`RecordSpec` and the rules specific to
accounts, opportunities and the rest.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import as_utc, now
from waggle.core.db import Base
from waggle.core.errors import Conflict, InvalidInput, NotFound, PolicyDenied
from waggle.crm.dedupe import (
    account_keys,
    describe_match,
    find_account_duplicates,
    find_duplicates_of_keys,
    normalize_company_name,
    normalize_credit_code,
    normalize_email_domain,
    normalize_opportunity_name,
    normalize_phone,
)
from waggle.crm.models import (
    Account,
    Activity,
    Contact,
    ForecastCategory,
    LineItem,
    Opportunity,
    OpportunityStatus,
    PipelineStage,
    Product,
    Quota,
    StageChange,
)
from waggle.crm.pipelines import default_pipeline
from waggle.governance import authorize, ensure_in_scope, record_audit, row_filter
from waggle.governance.masking import mask_records
from waggle.governance.records import RecordSpec, create_record, update_record
from waggle.identity.models import Employee, Region

logger = logging.getLogger(__name__)

Values = dict[str, Any]
StageGate = Callable[[Session, Opportunity, PipelineStage], list[str]]

_stage_gates: list[StageGate] = []


def register_stage_gate(gate: StageGate) -> None:
    """Add a check that may refuse stage moves; it returns the reasons to refuse."""
    _stage_gates.append(gate)


def new_external_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def require_reference(
    session: Session,
    model: type[Base],
    record_id: int | None,
    field: str,
    resource: str,
) -> None:
    """Refuse a reference to a row that does not exist.

    Raises:
        InvalidInput: naming the resource and field.
    """
    if record_id is not None and session.get(model, record_id) is None:
        raise InvalidInput(f"{resource}.{field}: no record with id {record_id}")


# Accounts ------------------------------------------------------------------


def _before_account_create(session: Session, actor: Actor, values: Values) -> Values:
    values.setdefault("external_id", None)
    values["external_id"] = values["external_id"] or new_external_id("ACC")
    values.setdefault("owner_id", actor.employee_id)
    values["normalized_name"] = normalize_company_name(values["name"])
    values["phone_key"] = normalize_phone(values.get("phone"))
    values.setdefault("last_followed_at", now())
    require_reference(session, Employee, values.get("owner_id"), "owner_id", "accounts")
    require_reference(session, Region, values.get("region_id"), "region_id", "accounts")
    return values


def _before_account_update(
    session: Session, actor: Actor, account: Account, changes: Values
) -> Values:
    if "name" in changes:
        changes["normalized_name"] = normalize_company_name(changes["name"])
    if "phone" in changes:
        changes["phone_key"] = normalize_phone(changes["phone"])
    require_reference(
        session, Employee, changes.get("owner_id"), "owner_id", "accounts"
    )
    require_reference(
        session, Region, changes.get("region_id"), "region_id", "accounts"
    )
    return changes


ACCOUNTS: RecordSpec[Account] = RecordSpec(
    name="accounts",
    model=Account,
    owner_column="owner_id",
    filters=(
        "industry",
        "region_id",
        "owner_id",
        "city",
        "province",
        "size",
        "is_in_public_pool",
        "credit_code",
    ),
    search_columns=("name", "address"),
    sort_keys=("id", "name", "created_at", "updated_at", "last_followed_at"),
    before_create=_before_account_create,
    before_update=_before_account_update,
    immutable=frozenset({"external_id"}),
    list_condition=Account.merged_into_id.is_(None),
)


def create_account(
    session: Session, actor: Actor, values: Values, *, allow_duplicate: bool = False
) -> Account:
    """Create an account unless it duplicates an existing one (撞单).

    Raises:
        Conflict: an existing account matches; ``details['matches']`` lists them.
    """
    _refuse_duplicate_account(session, actor, values, allow_duplicate=allow_duplicate)
    return create_record(session, actor, ACCOUNTS, values)


def _refuse_duplicate_account(
    session: Session, actor: Actor, values: Values, *, allow_duplicate: bool
) -> None:
    """Refuse a new account that matches a live one (撞单), naming the owners.

    The credit code and email domain are normalised in ``values`` first, so
    that the stored keys compare as the check did. Forcing a duplicate needs
    create rights over every account (sales_ops in the default policy), since
    only someone who sees them all can judge it; a forced creation is audited.

    Raises:
        PolicyDenied: the actor may not create accounts, or may not force.
        Conflict: ``duplicate_account``; ``details['matches']`` lists the
            accounts with owner and the keys that matched.
    """
    scope = authorize(session, actor, "create", "accounts")
    values["credit_code"] = normalize_credit_code(values.get("credit_code"))
    values["email_domain"] = normalize_email_domain(values.get("email_domain"))
    matches = find_account_duplicates(
        session,
        name=values["name"],
        credit_code=values["credit_code"],
        phone=values.get("phone"),
        email_domain=values["email_domain"],
    )
    if not matches:
        return
    if allow_duplicate:
        if scope != "all":
            raise PolicyDenied(
                f"{actor.username} may not force a duplicate account: that needs "
                "create rights over every account",
                action="create",
                resource="accounts",
            )
        record_audit(
            session,
            actor,
            action="create_duplicate",
            resource="accounts",
            record_ids=[match.account_id for match in matches],
            detail=f"forced {values['name']!r} past {len(matches)} match(es)",
        )
        return
    first = matches[0]
    owner = first.owner_name or ("public pool" if first.is_in_public_pool else "none")
    raise Conflict(
        f"account {values['name']!r} duplicates account {first.account_id} "
        f"({first.name}, owner: {owner}) on {', '.join(first.matched_on)}; "
        "talk to the owner, or claim it if it is in the public pool",
        code="duplicate_account",
        matches=[describe_match(match) for match in matches],
    )


# Contacts ------------------------------------------------------------------


def _before_contact_create(session: Session, actor: Actor, values: Values) -> Values:
    values["external_id"] = values.get("external_id") or new_external_id("CON")
    account = session.get(Account, values["account_id"])
    if account is None:
        raise InvalidInput(
            f"contacts.account_id: no record with id {values['account_id']}"
        )
    if values.get("owner_id") is None:
        values["owner_id"] = account.owner_id or actor.employee_id
    require_reference(session, Employee, values.get("owner_id"), "owner_id", "contacts")
    return values


CONTACTS: RecordSpec[Contact] = RecordSpec(
    name="contacts",
    model=Contact,
    owner_column="owner_id",
    filters=("account_id", "decision_role", "owner_id", "email"),
    search_columns=("name", "title", "email"),
    sort_keys=("id", "name", "created_at"),
    before_create=_before_contact_create,
    immutable=frozenset({"external_id", "account_id"}),
)


# Opportunities -------------------------------------------------------------


def _before_opportunity_create(
    session: Session, actor: Actor, values: Values
) -> Values:
    values["external_id"] = values.get("external_id") or new_external_id("OPP")
    account = session.get(Account, values["account_id"])
    if account is None:
        raise InvalidInput(
            f"opportunities.account_id: no record with id {values['account_id']}"
        )
    if values.get("owner_id") is None:
        values["owner_id"] = actor.employee_id or account.owner_id
    require_reference(
        session, Employee, values.get("owner_id"), "owner_id", "opportunities"
    )
    require_reference(
        session,
        Contact,
        values.get("decision_maker_contact_id"),
        "decision_maker_contact_id",
        "opportunities",
    )
    stage = _initial_stage(session, values)
    values["pipeline_id"], values["stage_id"] = stage.pipeline_id, stage.id
    values["status"] = _status_for(stage)
    if stage.is_won or stage.is_lost:
        values.setdefault("closed_at", now())
    _refuse_missing_fields(Opportunity(**values), stage, values["external_id"])
    _refuse_duplicate_opportunity(session, values)
    return values


def _initial_stage(session: Session, values: Values) -> PipelineStage:
    pipeline_id = values.get("pipeline_id") or default_pipeline(session).id
    stage_id = values.get("stage_id")
    if stage_id is None:
        stage = session.scalar(
            select(PipelineStage)
            .where(PipelineStage.pipeline_id == pipeline_id)
            .order_by(PipelineStage.position)
        )
    else:
        stage = session.get(PipelineStage, stage_id)
    if stage is None or stage.pipeline_id != pipeline_id:
        raise InvalidInput(
            f"opportunities.stage_id: stage {stage_id} is not in pipeline {pipeline_id}"
        )
    return stage


def _refuse_duplicate_opportunity(session: Session, values: Values) -> None:
    """Refuse an opportunity that another one already claims (商机撞单).

    An account in the public pool or merged away takes no new opportunity. A
    new open opportunity clashes with every open opportunity on the same
    account or on an account that duplicates it (same keys as for accounts)
    that is owned by someone else, or that has the same name (a double entry).
    The same owner may run several differently named deals with one customer.

    Raises:
        Conflict: ``account_in_public_pool``, ``account_merged`` or
            ``duplicate_opportunity`` with the rivals and their owners.
    """
    account = session.get(Account, values["account_id"])
    if account is None:
        return
    if account.merged_into_id is not None:
        raise Conflict(
            f"opportunities.account_id: account {account.id} was merged into "
            f"account {account.merged_into_id}; use that one",
            code="account_merged",
            survivor_id=account.merged_into_id,
        )
    if account.is_in_public_pool:
        raise Conflict(
            f"opportunities.account_id: account {account.id} ({account.name}) is "
            "in the public pool; claim it before adding opportunities",
            code="account_in_public_pool",
        )
    if values["status"] != OpportunityStatus.OPEN:
        return
    rivals = _rival_opportunities(session, account, values)
    if rivals:
        first, owner = rivals[0]
        raise Conflict(
            f"opportunity {values['name']!r} clashes with open opportunity "
            f"{first.id} ({first.name}) on account {first.account_id}, owned by "
            f"{owner or 'nobody'}; talk to its owner or their manager",
            code="duplicate_opportunity",
            matches=[
                {
                    "opportunity_id": rival.id,
                    "name": rival.name,
                    "account_id": rival.account_id,
                    "owner_id": rival.owner_id,
                    "owner_name": owner_name,
                }
                for rival, owner_name in rivals
            ],
        )


def _rival_opportunities(
    session: Session, account: Account, values: Values
) -> list[tuple[Opportunity, str | None]]:
    family = {account.id} | {
        match.account_id
        for match in find_duplicates_of_keys(
            session, account_keys(account), exclude_ids=[account.id]
        )
    }
    name_key = normalize_opportunity_name(values["name"])
    rows = session.execute(
        select(Opportunity, Employee.name)
        .outerjoin(Employee, Employee.id == Opportunity.owner_id)
        .where(
            Opportunity.account_id.in_(sorted(family)),
            Opportunity.status == OpportunityStatus.OPEN,
        )
        .order_by(Opportunity.id)
    )
    return [
        (rival, owner_name)
        for rival, owner_name in rows
        if rival.owner_id != values.get("owner_id")
        or normalize_opportunity_name(rival.name) == name_key
    ]


def _before_opportunity_update(
    session: Session, actor: Actor, opportunity: Opportunity, changes: Values
) -> Values:
    require_reference(
        session, Employee, changes.get("owner_id"), "owner_id", "opportunities"
    )
    require_reference(
        session,
        Contact,
        changes.get("decision_maker_contact_id"),
        "decision_maker_contact_id",
        "opportunities",
    )
    stage_id = changes.pop("stage_id", None)
    if stage_id is not None and stage_id != opportunity.stage_id:
        for name, value in changes.items():
            setattr(opportunity, name, value)
        _move_stage(session, actor, opportunity, stage_id)
    return changes


OPPORTUNITIES: RecordSpec[Opportunity] = RecordSpec(
    name="opportunities",
    model=Opportunity,
    owner_column="owner_id",
    filters=(
        "account_id",
        "pipeline_id",
        "stage_id",
        "owner_id",
        "status",
        "forecast_category",
        "source",
        "currency",
    ),
    search_columns=("name",),
    sort_keys=(
        "id",
        "name",
        "amount",
        "expected_close_on",
        "created_at",
        "updated_at",
        "stage_entered_at",
    ),
    before_create=_before_opportunity_create,
    before_update=_before_opportunity_update,
    immutable=frozenset({"external_id", "account_id", "pipeline_id", "status"}),
)


def move_opportunity_stage(
    session: Session,
    actor: Actor,
    opportunity_id: int,
    *,
    stage_id: int,
    loss_reason: str | None = None,
) -> Opportunity:
    """Move an opportunity to another stage of its pipeline.

    Raises:
        InvalidInput: the stage is not in the pipeline, or a required field is
            empty (the message names the fields).
        PolicyDenied, NotFound: as for any update.
    """
    changes: Values = {"stage_id": stage_id}
    if loss_reason is not None:
        changes["loss_reason"] = loss_reason
    return update_record(session, actor, OPPORTUNITIES, opportunity_id, changes)


def _move_stage(
    session: Session, actor: Actor, opportunity: Opportunity, stage_id: int
) -> None:
    stage = session.get(PipelineStage, stage_id)
    if stage is None or stage.pipeline_id != opportunity.pipeline_id:
        raise InvalidInput(
            f"opportunity {opportunity.external_id}: stage {stage_id} is not "
            f"in pipeline {opportunity.pipeline_id}"
        )
    _refuse_missing_fields(opportunity, stage, opportunity.external_id)
    _refuse_by_gates(session, opportunity, stage)
    moved_at = now()
    session.add(
        StageChange(
            opportunity_id=opportunity.id,
            from_stage_id=opportunity.stage_id,
            to_stage_id=stage.id,
            changed_at=moved_at,
            seconds_in_previous_stage=int(
                (moved_at - opportunity.stage_entered_at).total_seconds()
            ),
            changed_by=actor.username,
        )
    )
    _enter_stage(opportunity, stage, moved_at)


def _enter_stage(
    opportunity: Opportunity, stage: PipelineStage, at: dt.datetime
) -> None:
    opportunity.stage_id = stage.id
    opportunity.stage_entered_at = at
    opportunity.status = _status_for(stage)
    if stage.is_won or stage.is_lost:
        opportunity.closed_at = at
        opportunity.forecast_category = (
            ForecastCategory.CLOSED if stage.is_won else ForecastCategory.OMITTED
        )
    else:
        opportunity.closed_at = None


def _status_for(stage: PipelineStage) -> str:
    if stage.is_won:
        return OpportunityStatus.WON
    return OpportunityStatus.LOST if stage.is_lost else OpportunityStatus.OPEN


def missing_fields(opportunity: Opportunity, stage: PipelineStage) -> list[str]:
    """Return the stage's required fields that are empty on the opportunity."""
    return [
        name
        for name in stage.required_fields
        if getattr(opportunity, name, None) in (None, "", False, Decimal("0"))
    ]


def _refuse_missing_fields(
    opportunity: Opportunity, stage: PipelineStage, label: str
) -> None:
    missing = missing_fields(opportunity, stage)
    if missing:
        raise InvalidInput(
            f"opportunity {label}: stage {stage.key} ({stage.name}) requires "
            f"{', '.join(missing)}",
            code="stage_requirements_unmet",
            missing_fields=missing,
        )


def stage_gate_reasons(
    session: Session, opportunity: Opportunity, stage: PipelineStage
) -> list[str]:
    """Return why the registered gates refuse the opportunity entering ``stage``."""
    return [
        reason for gate in _stage_gates for reason in gate(session, opportunity, stage)
    ]


def _refuse_by_gates(
    session: Session, opportunity: Opportunity, stage: PipelineStage
) -> None:
    reasons = stage_gate_reasons(session, opportunity, stage)
    if reasons:
        raise InvalidInput(
            f"opportunity {opportunity.external_id}: stage {stage.key} refused: "
            + "; ".join(reasons),
            code="stage_gate_refused",
            reasons=reasons,
        )


def stage_history(
    session: Session, actor: Actor, opportunity_id: int
) -> list[StageChange]:
    """Return the stage changes of an opportunity the actor may read, oldest first."""
    from waggle.governance.records import get_record

    get_record(session, actor, OPPORTUNITIES, opportunity_id)
    return list(
        session.scalars(
            select(StageChange)
            .where(StageChange.opportunity_id == opportunity_id)
            .order_by(StageChange.changed_at, StageChange.id)
        )
    )


# Products, quotas, activities ---------------------------------------------


def _before_product_create(session: Session, actor: Actor, values: Values) -> Values:
    values["external_id"] = values.get("external_id") or values["sku"]
    return values


PRODUCTS: RecordSpec[Product] = RecordSpec(
    name="products",
    model=Product,
    filters=("category", "is_active", "currency", "sku"),
    search_columns=("name", "sku"),
    sort_keys=("id", "name", "sku", "unit_price"),
    before_create=_before_product_create,
    immutable=frozenset({"external_id", "sku"}),
)


def period_bounds(period: str) -> tuple[dt.date, dt.date]:
    """Return the first and last day of a period such as ``2026-Q3`` or ``2026-M07``.

    Raises:
        InvalidInput: the period is not in one of those forms.
    """
    try:
        year, part = int(period[:4]), period[5:]
        if part.startswith("Q"):
            first_month, months = (int(part[1]) - 1) * 3 + 1, 3
        elif part.startswith("M"):
            first_month, months = int(part[1:]), 1
        else:
            raise ValueError(part)
        start = dt.date(year, first_month, 1)
    except (ValueError, IndexError) as exc:
        raise InvalidInput(
            f"quota.period: {period!r} is not like 2026-Q3 or 2026-M07"
        ) from exc
    end_month = first_month + months
    end_year = year + (end_month - 1) // 12
    next_start = dt.date(end_year, (end_month - 1) % 12 + 1, 1)
    return start, next_start - dt.timedelta(days=1)


def _before_quota_create(session: Session, actor: Actor, values: Values) -> Values:
    require_reference(session, Employee, values["owner_id"], "owner_id", "quotas")
    values["starts_on"], values["ends_on"] = period_bounds(values["period"])
    values["external_id"] = values.get("external_id") or (
        f"QUOTA-{values['owner_id']}-{values['period']}"
    )
    return values


QUOTAS: RecordSpec[Quota] = RecordSpec(
    name="quotas",
    model=Quota,
    owner_column="owner_id",
    filters=("owner_id", "period"),
    sort_keys=("id", "period", "amount"),
    before_create=_before_quota_create,
    immutable=frozenset({"external_id", "owner_id", "period"}),
)


def _before_activity_create(session: Session, actor: Actor, values: Values) -> Values:
    opportunity_id, account_id = values.get("opportunity_id"), values.get("account_id")
    if opportunity_id is None and account_id is None:
        raise InvalidInput("activities: name an account_id or an opportunity_id")
    if opportunity_id is not None:
        opportunity = session.get(Opportunity, opportunity_id)
        if opportunity is None:
            raise InvalidInput(
                f"activities.opportunity_id: no record with id {opportunity_id}"
            )
        values["account_id"] = account_id = opportunity.account_id
    account = session.get(Account, account_id)
    if account is None:
        raise InvalidInput(f"activities.account_id: no record with id {account_id}")
    _refuse_foreign_account(session, actor, account)
    require_reference(
        session, Contact, values.get("contact_id"), "contact_id", "activities"
    )
    if values.get("owner_id") is None:
        values["owner_id"] = actor.employee_id or account.owner_id
    values["occurred_at"] = values.get("occurred_at") or now()
    _touch_account(account, values["occurred_at"])
    return values


def _refuse_foreign_account(session: Session, actor: Actor, account: Account) -> None:
    """Refuse an activity on an account outside what the actor may read.

    The activity is owned by its author, so the owner check of the record
    itself would let anyone log on any account.

    Raises:
        PolicyDenied: the account lies outside the actor's read scope.
    """
    scope = authorize(session, actor, "read", ACCOUNTS.name)
    ensure_in_scope(
        session,
        actor,
        scope,
        owner_id=account.owner_id,
        action="read",
        resource=ACCOUNTS.name,
        record_id=account.id,
    )


def _touch_account(account: Account, at: dt.datetime) -> None:
    """A follow-up keeps the account out of the public pool for another period.

    A follow-up dated in the future (a planned call) counts from now, so that
    it cannot keep an account out of the pool indefinitely.
    """
    at = min(as_utc(at), now())
    if account.last_followed_at is None or account.last_followed_at < at:
        account.last_followed_at = at


ACTIVITIES: RecordSpec[Activity] = RecordSpec(
    name="activities",
    model=Activity,
    owner_column="owner_id",
    filters=("account_id", "opportunity_id", "contact_id", "kind", "owner_id"),
    search_columns=("subject", "body"),
    sort_keys=("id", "occurred_at", "created_at"),
    before_create=_before_activity_create,
    immutable=frozenset({"external_id", "account_id", "opportunity_id", "kind"}),
)


def opportunity_timeline(
    session: Session, actor: Actor, opportunity_id: int
) -> list[dict[str, Any]]:
    """Return stage changes and activities of an opportunity, newest first.

    Activities follow their own row scope, as on the account page: a rep sees
    the deal's stage history and the activities the rep may read.
    """
    changes = stage_history(session, actor, opportunity_id)
    stages = {stage.id: stage for stage in session.scalars(select(PipelineStage))}
    scope = authorize(session, actor, "read", "activities")
    activities, _ = mask_records(
        session,
        actor,
        list(
            session.scalars(
                select(Activity).where(
                    Activity.opportunity_id == opportunity_id,
                    row_filter(session, actor, scope, Activity.owner_id),
                )
            )
        ),
        owner_column="owner_id",
    )
    entries: list[dict[str, Any]] = [
        {
            "kind": "stage_change",
            "at": change.changed_at,
            "from_stage": stages[change.from_stage_id].name
            if change.from_stage_id
            else None,
            "to_stage": stages[change.to_stage_id].name,
            "by": change.changed_by,
        }
        for change in changes
    ]
    entries += [
        {
            "kind": activity.kind,
            "at": activity.occurred_at,
            "subject": activity.subject,
            "body": activity.body,
            "id": activity.id,
        }
        for activity in activities
    ]
    record_audit(
        session,
        actor,
        action="read",
        resource="activities",
        record_ids=[entry["id"] for entry in entries if "id" in entry],
    )
    return sorted(entries, key=lambda entry: entry["at"], reverse=True)


def get_opportunity_by_external_id(session: Session, external_id: str) -> Opportunity:
    opportunity = session.scalar(
        select(Opportunity).where(Opportunity.external_id == external_id)
    )
    if opportunity is None:
        raise NotFound(f"opportunity {external_id!r} does not exist")
    return opportunity


# Line items ------------------------------------------------------------------


def list_line_items(
    session: Session, actor: Actor, opportunity_id: int
) -> list[LineItem]:
    """Return the products on an opportunity the actor may read."""
    from waggle.governance.records import get_record

    get_record(session, actor, OPPORTUNITIES, opportunity_id)
    items = list(
        session.scalars(
            select(LineItem)
            .where(LineItem.opportunity_id == opportunity_id)
            .order_by(LineItem.id)
        )
    )
    record_audit(
        session,
        actor,
        action="read",
        resource="line_items",
        record_ids=[item.id for item in items],
    )
    return items


def get_line_item(
    session: Session, actor: Actor, opportunity_id: int, line_item_id: int
) -> LineItem:
    """Return one product line of an opportunity the actor may read.

    Raises:
        NotFound: the line item is not on that opportunity.
        PolicyDenied: the opportunity lies outside the actor's scope.
    """
    from waggle.governance.records import get_record

    get_record(session, actor, OPPORTUNITIES, opportunity_id)
    item = _line_item_on(session, opportunity_id, line_item_id)
    record_audit(
        session, actor, action="read", resource="line_items", record_ids=[item.id]
    )
    return item


def add_line_item(
    session: Session, actor: Actor, opportunity_id: int, values: Values
) -> LineItem:
    """Put a product on an opportunity; the unit price defaults to the list price.

    Raises:
        InvalidInput: unknown or inactive product.
        PolicyDenied, NotFound: the actor may not change the opportunity.
    """
    _authorize_change(session, actor, opportunity_id)
    product = session.get(Product, values["product_id"])
    if product is None or not product.is_active:
        raise InvalidInput(
            f"line_items.product_id: no active product with id {values['product_id']}"
        )
    item = LineItem(
        opportunity_id=opportunity_id,
        product_id=product.id,
        quantity=values.get("quantity", 1),
        unit_price=values.get("unit_price") or product.unit_price,
        discount_percent=values.get("discount_percent", 0.0),
    )
    session.add(item)
    session.flush()
    record_audit(
        session, actor, action="create", resource="line_items", record_ids=[item.id]
    )
    return item


def remove_line_item(
    session: Session, actor: Actor, opportunity_id: int, line_item_id: int
) -> None:
    """Take a product off an opportunity.

    Raises:
        NotFound: the line item is not on that opportunity.
    """
    _authorize_change(session, actor, opportunity_id)
    item = _line_item_on(session, opportunity_id, line_item_id)
    session.delete(item)
    session.flush()
    record_audit(
        session, actor, action="delete", resource="line_items", record_ids=[item.id]
    )


def update_line_item(
    session: Session,
    actor: Actor,
    opportunity_id: int,
    line_item_id: int,
    changes: Values,
) -> LineItem:
    """Change the quantity, unit price or discount of a product line.

    Raises:
        NotFound: the line item is not on that opportunity.
        PolicyDenied: the actor may not change the opportunity.
    """
    _authorize_change(session, actor, opportunity_id)
    item = _line_item_on(session, opportunity_id, line_item_id)
    changed = sorted(
        name for name, value in changes.items() if getattr(item, name) != value
    )
    for name in changed:
        setattr(item, name, changes[name])
    session.flush()
    record_audit(
        session,
        actor,
        action="update",
        resource="line_items",
        record_ids=[item.id],
        detail=",".join(changed) or "unchanged",
    )
    return item


def _line_item_on(session: Session, opportunity_id: int, line_item_id: int) -> LineItem:
    item = session.get(LineItem, line_item_id)
    if item is None or item.opportunity_id != opportunity_id:
        raise NotFound(
            f"line item {line_item_id} is not on opportunity {opportunity_id}"
        )
    return item


def _authorize_change(session: Session, actor: Actor, opportunity_id: int) -> None:
    scope = authorize(session, actor, "update", OPPORTUNITIES.name)
    opportunity = session.get(Opportunity, opportunity_id)
    if opportunity is None:
        raise NotFound(f"opportunity {opportunity_id} does not exist")
    ensure_in_scope(
        session,
        actor,
        scope,
        owner_id=opportunity.owner_id,
        action="update",
        resource=OPPORTUNITIES.name,
        record_id=opportunity_id,
    )


def line_total(item: LineItem) -> Decimal:
    """Return quantity × unit price less the discount, rounded to cents."""
    gross = item.unit_price * item.quantity
    net = gross * (Decimal(100) - Decimal(str(item.discount_percent))) / Decimal(100)
    return net.quantize(Decimal("0.01"))
