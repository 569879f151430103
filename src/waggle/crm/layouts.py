"""The file layout of each importable resource and the rules its rows obey.

Files name other records by external id (``owner_external_id``), by code
(``region_code``, ``department_code``), by key (``pipeline_key``,
``stage_key``) or, for files from other systems, by name (``owner_name``,
``account_name``; refused when the name is ambiguous).

Opportunities: the stage decides the status (won, lost or open). A won or
lost row needs ``closed_at`` (historical deals keep their real closing
time) and gets the forecast category ``closed``/``omitted``; an open row
must not carry ``closed_at``. Every row must satisfy its stage's
``required_fields`` exactly as a move into that stage would: imported data
gets no way around the gates the web form enforces, so a lost deal needs a
``loss_reason`` and a deal in negotiation an ``expected_close_on`` and
``budget_confirmed``. A row that moves a stored deal to another stage must
also pass the registered stage gates, as a live move must; a new row records
a state and is not gated.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import insert, select
from sqlalchemy.orm import InstrumentedAttribute

from waggle.core.errors import InvalidInput
from waggle.crm.columns import (
    Column,
    Context,
    Kind,
    Layout,
    Reference,
    Row,
    Via,
)
from waggle.crm.dedupe import (
    normalize_company_name,
    normalize_credit_code,
    normalize_email_domain,
    normalize_phone,
)
from waggle.crm.models import (
    Account,
    Contact,
    DecisionRole,
    ForecastCategory,
    Opportunity,
    OpportunityStatus,
    Pipeline,
    PipelineStage,
    Product,
    StageChange,
)
from waggle.crm.service import missing_fields, stage_gate_reasons
from waggle.identity.models import Department, Employee, EmploymentStatus, Region

LOOKUP_CHUNK = 900
CURRENCY = r"[A-Z]{3}"
EMAIL = r"[^@\s]+@[^@\s]+"
CREDIT_CODE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{18}")


def chunked(items: list[Any], size: int = LOOKUP_CHUNK) -> Iterator[list[Any]]:
    """Yield ``items`` in slices of ``size`` (IN lists stay within driver limits)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def refuse_taken(
    rows: list[Row],
    context: Context,
    *,
    layout: Layout,
    attribute: str,
    label: str,
    field_name: str | None = None,
) -> None:
    """Refuse rows whose ``attribute`` another record (or an earlier row) holds."""
    name = field_name or layout.field_of(attribute)
    wanted = sorted(
        {value for row in rows if (value := _claim(row, attribute)) is not None}
    )
    model = layout.model
    key_column: InstrumentedAttribute[Any] = getattr(model, layout.key)
    column: InstrumentedAttribute[Any] = getattr(model, attribute)
    holders: dict[Any, set[str]] = {}
    for part in chunked(wanted):
        statement = select(column, key_column).where(column.in_(part))
        for value, key in context.session.execute(statement):
            holders.setdefault(value, set()).add(key)
    for row in rows:
        value = _claim(row, attribute)
        if value is None:
            continue
        keys = holders.setdefault(value, set())
        if keys and row.key not in keys:
            row.reject(
                name,
                "duplicate_value",
                f"{name}: {label} is already used by {layout.name} {min(keys)!r}",
            )
        else:
            keys.add(cast(str, row.key))


def _claim(row: Row, attribute: str) -> Any:
    return None if row.is_rejected else row.current(attribute)


# Org chart ----------------------------------------------------------------

REGIONS = Layout(
    name="regions",
    model=Region,
    key="code",
    columns=(
        Column("code", required=True, max_length=40),
        Column("name", required=True, max_length=120),
    ),
    references=(Reference("parent_id", Region, (Via("parent_code", "code"),)),),
    order=("code", "name", "parent_code"),
    immutable=frozenset({"code"}),
)

DEPARTMENTS = Layout(
    name="departments",
    model=Department,
    key="code",
    columns=(
        Column("code", required=True, max_length=40),
        Column("name", required=True, max_length=120),
    ),
    references=(Reference("parent_id", Department, (Via("parent_code", "code"),)),),
    order=("code", "name", "parent_code"),
    immutable=frozenset({"code"}),
)


def _check_employment(row: Row, context: Context) -> None:
    status = row.current("status") or EmploymentStatus.ACTIVE
    hired, departed = row.current("hired_on"), row.current("departed_on")
    if status == EmploymentStatus.DEPARTED and departed is None:
        row.reject(
            "departed_on", "required", "departed_on: required when status is departed"
        )
    elif hired is not None and departed is not None and departed < hired:
        row.reject(
            "departed_on",
            "bad_date",
            f"departed_on: {departed} is before hired_on {hired}",
        )


EMPLOYEES = Layout(
    name="employees",
    model=Employee,
    key="external_id",
    columns=(
        Column("external_id", required=True, max_length=80),
        Column("name", required=True, max_length=120),
        Column("email", max_length=200, pattern=EMAIL),
        Column("phone", max_length=40),
        Column("title", max_length=120),
        Column(
            "status",
            Kind.CHOICE,
            choices=tuple(status.value for status in EmploymentStatus),
        ),
        Column("hired_on", Kind.DATE),
        Column("departed_on", Kind.DATE),
    ),
    references=(
        Reference("department_id", Department, (Via("department_code", "code"),)),
        Reference("region_id", Region, (Via("region_code", "code"),)),
        Reference(
            "manager_id",
            Employee,
            (
                Via("manager_external_id", "external_id"),
                Via("manager_name", "name", is_unique=False),
            ),
        ),
    ),
    order=(
        "external_id",
        "name",
        "email",
        "phone",
        "title",
        "department_code",
        "region_code",
        "manager_external_id",
        "status",
        "hired_on",
        "departed_on",
    ),
    immutable=frozenset({"external_id"}),
    row_rules=(_check_employment,),
)


# Accounts and contacts ----------------------------------------------------

OWNER = Reference(
    "owner_id",
    Employee,
    (
        Via("owner_external_id", "external_id"),
        Via("owner_name", "name", is_unique=False),
    ),
)
ACCOUNT = Reference(
    "account_id",
    Account,
    (
        Via("account_external_id", "external_id"),
        Via(
            "account_name",
            "normalized_name",
            is_unique=False,
            normalize=normalize_company_name,
        ),
    ),
    required=True,
    extra=("owner_id",),
)


def _derive_account_keys(row: Row, context: Context) -> None:
    values = row.values
    if values.get("name") is not None:
        values["normalized_name"] = normalize_company_name(values["name"])
    if "phone" in values:
        values["phone_key"] = normalize_phone(values["phone"])
    # Stored as the account service stores them, so duplicate checks agree.
    if "email_domain" in values:
        values["email_domain"] = normalize_email_domain(values["email_domain"])
    if values.get("credit_code"):
        code = normalize_credit_code(values["credit_code"]) or ""
        if not CREDIT_CODE.fullmatch(code):
            row.reject(
                "credit_code",
                "bad_format",
                f"credit_code: {code!r} is not an 18-character unified social "
                "credit code",
            )
        values["credit_code"] = code
    if row.is_new and "last_followed_at" not in values:
        # As when created by hand: a new account starts its follow-up period.
        values["last_followed_at"] = context.now


def _refuse_duplicate_accounts(rows: list[Row], context: Context) -> None:
    """Refuse a second account for the same company (撞单) by name or credit code.

    Phone numbers and mail domains are not used here: group companies share
    them, and an import of an existing customer list would be refused en masse.
    """
    refuse_taken(
        rows,
        context,
        layout=ACCOUNTS,
        attribute="normalized_name",
        label="the company name",
        field_name="name",
    )
    refuse_taken(
        rows, context, layout=ACCOUNTS, attribute="credit_code", label="the code"
    )


ACCOUNTS = Layout(
    name="accounts",
    model=Account,
    key="external_id",
    columns=(
        Column("external_id", required=True, max_length=80),
        Column("name", required=True, max_length=200),
        Column("industry", max_length=60),
        Column("size", max_length=20),
        Column("province", max_length=40),
        Column("city", max_length=40),
        Column("address", max_length=300),
        Column("latitude", Kind.FLOAT, minimum=-90, maximum=90),
        Column("longitude", Kind.FLOAT, minimum=-180, maximum=180),
        Column("credit_code", max_length=18),
        Column("phone", max_length=40),
        Column("email_domain", max_length=120),
        Column("website", max_length=200),
        Column("last_followed_at", Kind.DATETIME),
        Column("created_at", Kind.DATETIME),
    ),
    references=(OWNER, Reference("region_id", Region, (Via("region_code", "code"),))),
    order=(
        "external_id",
        "name",
        "owner_external_id",
        "industry",
        "size",
        "region_code",
        "province",
        "city",
        "address",
        "latitude",
        "longitude",
        "credit_code",
        "phone",
        "email_domain",
        "website",
        "last_followed_at",
        "created_at",
    ),
    owner_attribute="owner_id",
    immutable=frozenset({"external_id"}),
    row_rules=(_derive_account_keys,),
    batch_rules=(_refuse_duplicate_accounts,),
)


def _owner_from_account(row: Row, context: Context) -> None:
    """Give a new record without owner columns the owner of its account."""
    given = any(context.has(name) for name in OWNER.columns)
    account = row.resolved.get("account_id")
    if row.is_new and not given and account is not None:
        row.values["owner_id"] = account["owner_id"]


CONTACTS = Layout(
    name="contacts",
    model=Contact,
    key="external_id",
    columns=(
        Column("external_id", required=True, max_length=80),
        Column("name", required=True, max_length=120),
        Column("title", max_length=120),
        Column(
            "decision_role",
            Kind.CHOICE,
            choices=tuple(role.value for role in DecisionRole),
        ),
        Column("phone", max_length=40),
        Column("email", max_length=200, pattern=EMAIL),
        Column("wechat_id", max_length=80),
        Column("created_at", Kind.DATETIME),
    ),
    references=(ACCOUNT, OWNER),
    order=(
        "external_id",
        "account_external_id",
        "name",
        "title",
        "decision_role",
        "phone",
        "email",
        "wechat_id",
        "owner_external_id",
        "created_at",
    ),
    owner_attribute="owner_id",
    immutable=frozenset({"external_id", "account_id"}),
    row_rules=(_owner_from_account,),
)


# Products -----------------------------------------------------------------


def _refuse_taken_sku(rows: list[Row], context: Context) -> None:
    refuse_taken(rows, context, layout=PRODUCTS, attribute="sku", label="the SKU")


PRODUCTS = Layout(
    name="products",
    model=Product,
    key="external_id",
    key_fallback="sku",
    columns=(
        Column("external_id", max_length=80),
        Column("sku", required=True, max_length=60),
        Column("name", required=True, max_length=200),
        Column("category", max_length=60),
        Column("unit_price", Kind.DECIMAL, minimum=0),
        Column("currency", max_length=3, pattern=CURRENCY),
        Column("is_active", Kind.BOOLEAN),
    ),
    order=(
        "external_id",
        "sku",
        "name",
        "category",
        "unit_price",
        "currency",
        "is_active",
    ),
    immutable=frozenset({"external_id", "sku"}),
    batch_rules=(_refuse_taken_sku,),
)


# Opportunities ------------------------------------------------------------


@dataclass(frozen=True)
class _PipelineInfo:
    id: int
    key: str
    stages: dict[str, PipelineStage]


def _pipelines(context: Context) -> dict[str, Any]:
    cached: dict[str, Any] | None = context.state.get("pipelines")
    if cached is None:
        pipelines = list(
            context.session.scalars(select(Pipeline).order_by(Pipeline.id))
        )
        if not pipelines:
            raise InvalidInput(
                "opportunities: no pipeline is configured; run `waggle db upgrade`"
            )
        infos = [
            _PipelineInfo(p.id, p.key, {s.key: s for s in p.stages}) for p in pipelines
        ]
        default = next((p for p in pipelines if p.is_default), pipelines[0])
        cached = {
            "by_key": {info.key: info for info in infos},
            "by_id": {info.id: info for info in infos},
            "stages": {s.id: s for info in infos for s in info.stages.values()},
            "default": next(info for info in infos if info.id == default.id),
        }
        context.state["pipelines"] = cached
    return cached


def _place_in_stage(row: Row, context: Context) -> None:
    """Resolve pipeline and stage, then derive status and forecast category."""
    pipelines = _pipelines(context)
    pipeline_key = row.parsed.get("pipeline_key")
    if pipeline_key is not None:
        pipeline = pipelines["by_key"].get(pipeline_key)
        if pipeline is None:
            known = ", ".join(pipelines["by_key"])
            row.reject(
                "pipeline_key",
                "unknown_reference",
                f"pipeline_key: no pipeline {pipeline_key!r} (pipelines: {known})",
            )
            return
    elif row.existing is not None:
        pipeline = pipelines["by_id"][row.existing["pipeline_id"]]
    else:
        pipeline = pipelines["default"]
    stage_key = row.parsed.get("stage_key")
    stage = pipeline.stages.get(stage_key)
    if stage is None:
        row.reject(
            "stage_key",
            "unknown_stage",
            f"stage_key: {stage_key!r} is not a stage of pipeline {pipeline.key} "
            f"({', '.join(pipeline.stages)})",
        )
        return
    row.values["pipeline_id"], row.values["stage_id"] = pipeline.id, stage.id
    row.notes["stage"] = stage
    _derive_outcome(row, stage)


def _derive_outcome(row: Row, stage: PipelineStage) -> None:
    status = (
        OpportunityStatus.WON
        if stage.is_won
        else OpportunityStatus.LOST
        if stage.is_lost
        else OpportunityStatus.OPEN
    )
    given = row.parsed.get("status")
    if given is not None and given != status:
        row.reject(
            "status",
            "status_mismatch",
            f"status: {given!r} contradicts stage {stage.key}, which means {status}",
        )
    row.values["status"] = str(status)
    if status == OpportunityStatus.OPEN:
        return
    category = (
        ForecastCategory.CLOSED if stage.is_won else ForecastCategory.OMITTED
    ).value
    given = row.parsed.get("forecast_category")
    if given is not None and given != category:
        row.reject(
            "forecast_category",
            "status_mismatch",
            f"forecast_category: a {status} deal is {category}, not {given!r}",
        )
    row.values["forecast_category"] = category


def _check_closing(row: Row, context: Context) -> None:
    """Keep closing dates honest: set for won/lost deals, empty for open ones."""
    stage: PipelineStage = row.notes["stage"]
    closed_at = row.current("closed_at")
    if stage.is_won or stage.is_lost:
        if closed_at is None:
            row.reject(
                "closed_at",
                "required",
                f"closed_at: a deal in stage {stage.key} needs the date it closed",
            )
            return
        if closed_at > context.now:
            row.reject(
                "closed_at", "bad_datetime", f"closed_at: {closed_at} is in the future"
            )
        created_at = row.current("created_at")
        if created_at is not None and closed_at < created_at:
            row.reject(
                "closed_at",
                "bad_datetime",
                f"closed_at: {closed_at} is before created_at {created_at}",
            )
    elif closed_at is not None:
        if row.values.get("closed_at") is not None:
            row.reject(
                "closed_at",
                "bad_datetime",
                f"closed_at: must be empty while the deal is open (stage {stage.key})",
            )
        else:
            row.values["closed_at"] = None  # reopened by this file


def _enter_stage(row: Row, context: Context) -> None:
    """Date the stage entry; a stage changed by the file leaves a stage change."""
    stage: PipelineStage = row.notes["stage"]
    moved = row.existing is not None and row.existing["stage_id"] != stage.id
    if (row.is_new or moved) and row.values.get("stage_entered_at") is None:
        closed_at = row.current("closed_at")
        row.values["stage_entered_at"] = closed_at or context.now
    if moved:
        row.notes["moved_from"] = row.existing


def _check_stage_requirements(row: Row, context: Context) -> None:
    stage: PipelineStage = row.notes["stage"]
    merged = {**(row.existing or {}), **row.values}
    missing = missing_fields(cast(Opportunity, SimpleNamespace(**merged)), stage)
    if missing:
        row.reject(
            missing[0],
            "stage_requirements",
            f"stage {stage.key} ({stage.name}) requires {', '.join(missing)}",
        )


def _check_stage_gates(row: Row, context: Context) -> None:
    """Judge a row that moves a deal as the gates judge a live move."""
    if row.is_rejected or "moved_from" not in row.notes:
        return
    stage: PipelineStage = row.notes["stage"]
    # The gates see the deal with the file's values, still in its old stage.
    merged = {**row.notes["moved_from"], **row.values}
    merged["stage_id"] = row.notes["moved_from"]["stage_id"]
    deal = cast(Opportunity, SimpleNamespace(**merged))
    reasons = stage_gate_reasons(context.session, deal, stage)
    if reasons:
        row.reject(
            "stage_key",
            "stage_gate_refused",
            f"stage {stage.key} refused: " + "; ".join(reasons),
        )


def _check_decision_maker(row: Row, context: Context) -> None:
    contact = row.resolved.get("decision_maker_contact_id")
    if contact is not None and contact["account_id"] != row.current("account_id"):
        row.reject(
            "decision_maker_contact_external_id",
            "wrong_account",
            "decision_maker_contact_external_id: the contact belongs to another "
            "account",
        )


def _opportunity_rules(row: Row, context: Context) -> None:
    _place_in_stage(row, context)
    if row.is_rejected:
        return
    _owner_from_account(row, context)
    for rule in (_check_closing, _enter_stage, _check_stage_requirements):
        rule(row, context)
    _check_stage_gates(row, context)
    _check_decision_maker(row, context)


def _refuse_duplicate_open_deals(rows: list[Row], context: Context) -> None:
    """Refuse a second open deal of the same name on one account (撞单)."""
    wanted = [r for r in rows if not r.is_rejected and r.values["status"] == "open"]
    accounts = sorted({row.current("account_id") for row in wanted})
    holders: dict[tuple[int, str], set[str]] = {}
    for part in chunked(accounts):
        statement = select(
            Opportunity.account_id, Opportunity.name, Opportunity.external_id
        ).where(
            Opportunity.account_id.in_(part),
            Opportunity.status == OpportunityStatus.OPEN,
        )
        for account_id, name, external_id in context.session.execute(statement):
            holders.setdefault((account_id, name), set()).add(external_id)
    for row in wanted:
        pair = (row.current("account_id"), row.current("name"))
        keys = holders.setdefault(pair, set())
        if keys and row.key not in keys:
            row.reject(
                "name",
                "duplicate_value",
                f"name: the account already has open opportunity {min(keys)!r} "
                f"named {pair[1]!r}",
            )
        else:
            keys.add(cast(str, row.key))


def _record_stage_changes(rows: list[Row], context: Context) -> None:
    moves = [
        {
            "opportunity_id": row.notes["moved_from"]["id"],
            "from_stage_id": row.notes["moved_from"]["stage_id"],
            "to_stage_id": row.values["stage_id"],
            "changed_at": row.values["stage_entered_at"],
            "seconds_in_previous_stage": int(
                (
                    row.values["stage_entered_at"]
                    - row.notes["moved_from"]["stage_entered_at"]
                ).total_seconds()
            ),
            "changed_by": context.actor.username,
        }
        for row in rows
        if "moved_from" in row.notes
    ]
    if moves:
        context.session.execute(insert(StageChange), moves)


OPPORTUNITIES = Layout(
    name="opportunities",
    model=Opportunity,
    key="external_id",
    columns=(
        Column("external_id", required=True, max_length=80),
        Column("name", required=True, max_length=200),
        Column("amount", Kind.DECIMAL, minimum=0),
        Column("currency", max_length=3, pattern=CURRENCY),
        Column("expected_close_on", Kind.DATE),
        Column("source", max_length=40),
        Column(
            "status",
            Kind.CHOICE,
            choices=tuple(status.value for status in OpportunityStatus),
            is_derived=True,
        ),
        Column("loss_reason", max_length=200),
        Column(
            "forecast_category",
            Kind.CHOICE,
            choices=tuple(category.value for category in ForecastCategory),
        ),
        Column("manual_probability", Kind.INTEGER, minimum=0, maximum=100),
        Column("customer_pain_points", max_length=4000),
        Column("budget_confirmed", Kind.BOOLEAN),
        Column("created_at", Kind.DATETIME),
        Column("stage_entered_at", Kind.DATETIME),
        Column("closed_at", Kind.DATETIME),
    ),
    references=(
        ACCOUNT,
        Reference(
            "pipeline_id", Pipeline, (Via("pipeline_key", "key"),), by_rules=True
        ),
        Reference(
            "stage_id",
            PipelineStage,
            (Via("stage_key", "key"),),
            required=True,
            by_rules=True,
        ),
        OWNER,
        Reference(
            "decision_maker_contact_id",
            Contact,
            (Via("decision_maker_contact_external_id", "external_id"),),
            extra=("account_id",),
        ),
    ),
    order=(
        "external_id",
        "name",
        "account_external_id",
        "owner_external_id",
        "pipeline_key",
        "stage_key",
        "status",
        "amount",
        "currency",
        "expected_close_on",
        "created_at",
        "stage_entered_at",
        "closed_at",
        "loss_reason",
        "forecast_category",
        "manual_probability",
        "source",
        "budget_confirmed",
        "customer_pain_points",
        "decision_maker_contact_external_id",
    ),
    owner_attribute="owner_id",
    immutable=frozenset({"external_id", "account_id", "pipeline_id"}),
    row_rules=(_opportunity_rules,),
    batch_rules=(_refuse_duplicate_open_deals,),
    after_write=_record_stage_changes,
)

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        REGIONS,
        DEPARTMENTS,
        EMPLOYEES,
        PRODUCTS,
        ACCOUNTS,
        CONTACTS,
        OPPORTUNITIES,
    )
}


def layout_for(resource: str) -> Layout:
    """Return the layout of ``resource``.

    Raises:
        InvalidInput: the resource cannot be imported or exported.
    """
    layout = LAYOUTS.get(resource)
    if layout is None:
        raise InvalidInput(
            f"{resource!r} cannot be imported or exported; "
            f"choose one of {', '.join(LAYOUTS)}"
        )
    return layout
