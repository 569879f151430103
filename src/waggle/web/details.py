"""The opportunity page (fields, edit form, stage move, history, timeline) and
the account page (contacts, opportunities, activities); both log activities."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, Response

from waggle.apikit import SessionDep, status_for
from waggle.core.errors import InvalidInput, WaggleError
from waggle.crm.models import ActivityKind, Contact, Opportunity, PipelineStage
from waggle.crm.schemas import ActivityCreate, OpportunityUpdate
from waggle.crm.service import (
    ACCOUNTS,
    ACTIVITIES,
    CONTACTS,
    OPPORTUNITIES,
    move_opportunity_stage,
    opportunity_timeline,
    stage_history,
)
from waggle.governance.records import (
    RecordSpec,
    create_record,
    get_record,
    list_records,
    update_record,
)
from waggle.identity.orgchart import EMPLOYEES
from waggle.web.context import (
    FormDep,
    FormPageDep,
    PageContext,
    PageDep,
    abandon,
    describe_error,
    query_text,
)
from waggle.web.queries import names_by_id, readable_pipelines, stage_index

ACCOUNT_CONTACTS = 100
ACCOUNT_OPPORTUNITIES = 50
ACCOUNT_ACTIVITIES = 20

# Fields of the edit form; the cleared ones become empty (None) when left blank.
EDITABLE_FIELDS = (
    "name",
    "amount",
    "expected_close_on",
    "source",
    "customer_pain_points",
    "decision_maker_contact_id",
    "loss_reason",
)
CLEARABLE_FIELDS = frozenset(EDITABLE_FIELDS) - {"name", "amount"}

router = APIRouter(include_in_schema=False)


@router.get("/opportunities/{opportunity_id}")
def opportunity_page(
    opportunity_id: int, page: PageDep, session: SessionDep
) -> HTMLResponse:
    """Show an opportunity with its stage history and timeline."""
    notices = {
        "saved": page.t("opportunity.saved"),
        "moved": page.t("opportunity.moved"),
        "logged": page.t("activity.logged"),
    }
    notice = notices.get(query_text(page.request.query_params, "done"))
    return _opportunity_view(page, session, opportunity_id, notice=notice)


@router.post("/opportunities/{opportunity_id}")
def edit_opportunity(
    opportunity_id: int, page: FormPageDep, session: SessionDep, form: FormDep
) -> Response:
    """Save the edit form; a refusal is shown on the page with the reason."""
    try:
        changes = opportunity_changes(form)
        update_record(session, page.actor, OPPORTUNITIES, opportunity_id, changes)
    except WaggleError as error:
        abandon(session, page.actor, error)
        return _opportunity_view(
            page,
            session,
            opportunity_id,
            error=describe_error(page.t, error),
            status_code=status_for(error),
        )
    return RedirectResponse(f"/opportunities/{opportunity_id}?done=saved", 303)


@router.post("/opportunities/{opportunity_id}/stage")
def move_opportunity(
    opportunity_id: int, page: FormPageDep, session: SessionDep, form: FormDep
) -> Response:
    """Move the opportunity to the chosen stage, or show why it may not move."""
    raw_stage = str(form.get("stage_id") or "")
    stage_id = int(raw_stage) if raw_stage.isdigit() else 0
    loss_reason = str(form.get("loss_reason") or "").strip() or None
    stage = session.get(PipelineStage, stage_id)
    try:
        move_opportunity_stage(
            session,
            page.actor,
            opportunity_id,
            stage_id=stage_id,
            loss_reason=loss_reason,
        )
    except WaggleError as error:
        abandon(session, page.actor, error)
        return _opportunity_view(
            page,
            session,
            opportunity_id,
            error=describe_error(page.t, error, stage=stage),
            status_code=status_for(error),
        )
    return RedirectResponse(f"/opportunities/{opportunity_id}?done=moved", 303)


@router.post("/opportunities/{opportunity_id}/activities")
def log_opportunity_activity(
    opportunity_id: int, page: FormPageDep, session: SessionDep, form: FormDep
) -> Response:
    """Log a call, visit or note on the opportunity (and so on its account)."""
    return _log_activity(
        page,
        session,
        form,
        spec=OPPORTUNITIES,
        record_id=opportunity_id,
        field="opportunity_id",
        view=_opportunity_view,
        path=f"/opportunities/{opportunity_id}",
    )


@router.post("/accounts/{account_id}/activities")
def log_account_activity(
    account_id: int, page: FormPageDep, session: SessionDep, form: FormDep
) -> Response:
    """Log a call, visit or note on the account."""
    return _log_activity(
        page,
        session,
        form,
        spec=ACCOUNTS,
        record_id=account_id,
        field="account_id",
        view=_account_view,
        path=f"/accounts/{account_id}",
    )


def _log_activity(
    page: Any,
    session: Any,
    form: Any,
    *,
    spec: Any,
    record_id: int,
    field: str,
    view: Any,
    path: str,
) -> Response:
    """Create the activity on the record, or show the record's page with why not."""
    get_record(session, page.actor, spec, record_id)
    try:
        values = {**activity_values(form), field: record_id}
        create_record(session, page.actor, ACTIVITIES, values)
    except WaggleError as error:
        abandon(session, page.actor, error)
        response: Response = view(
            page,
            session,
            record_id,
            error=describe_error(page.t, error),
            status_code=status_for(error),
        )
        return response
    return RedirectResponse(f"{path}?done=logged", 303)


def activity_values(form: FormData) -> dict[str, Any]:
    """Read the activity form into validated values (the API's create schema).

    Raises:
        InvalidInput: code ``invalid_field`` naming the first bad field.
    """
    raw = {
        name: str(form.get(name) or "").strip() or None
        for name in ("kind", "subject", "body")
    }
    try:
        activity = ActivityCreate.model_validate(raw)
    except ValidationError as exc:
        raise _invalid_field("activity", exc) from exc
    return activity.model_dump(exclude_none=True)


def _invalid_field(record: str, exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    return InvalidInput(
        f"{record}.{field}: {first['msg']}",
        code="invalid_field",
        field=field,
        problem=first["msg"],
    )


def opportunity_changes(form: FormData) -> dict[str, Any]:
    """Read the edit form into validated changes (the API's update schema).

    Raises:
        InvalidInput: code ``invalid_field`` naming the first bad field.
    """
    raw: dict[str, Any] = {}
    for name in EDITABLE_FIELDS:
        if name not in form:
            continue
        value = str(form.get(name) or "").strip()
        if value or name in CLEARABLE_FIELDS:
            raw[name] = value or None
    if "budget_confirmed_shown" in form:
        raw["budget_confirmed"] = form.get("budget_confirmed") == "on"
    try:
        update = OpportunityUpdate.model_validate(raw)
    except ValidationError as exc:
        raise _invalid_field("opportunity", exc) from exc
    return update.model_dump(exclude_unset=True)


def _opportunity_view(
    page: PageContext,
    session: Session,
    opportunity_id: int,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    opportunity = get_record(session, page.actor, OPPORTUNITIES, opportunity_id)
    page.stages = stage_index(readable_pipelines(session, page.actor))
    stages = sorted(
        (s for s in page.stages.values() if s.pipeline_id == opportunity.pipeline_id),
        key=lambda stage: stage.position,
    )
    contacts = _account_contacts(session, page, opportunity.account_id)
    return page.render(
        "opportunity.html",
        status_code=status_code,
        opportunity=opportunity,
        stage=page.stages.get(opportunity.stage_id),
        stages=stages,
        account_name=names_by_id(
            session, page.actor, ACCOUNTS, [opportunity.account_id]
        ).get(opportunity.account_id),
        owner_name=names_by_id(
            session, page.actor, EMPLOYEES, [opportunity.owner_id]
        ).get(opportunity.owner_id or 0),
        contacts=contacts,
        contact_names={contact.id: contact.name for contact in contacts},
        history=stage_history(session, page.actor, opportunity_id),
        timeline=_timeline(session, page, opportunity, stages),
        activity_kinds=[kind.value for kind in ActivityKind],
        notice=notice,
        error=error,
    )


def _account_contacts(
    session: Session, page: PageContext, account_id: int
) -> list[Contact]:
    return _account_records(
        session, page, CONTACTS, account_id, sort="name", limit=ACCOUNT_CONTACTS
    )


def _timeline(
    session: Session,
    page: PageContext,
    opportunity: Opportunity,
    stages: list[PipelineStage],
) -> list[dict[str, Any]]:
    """Return the timeline with stage names in the page's language."""
    by_name = {stage.name: stage for stage in stages}
    entries = opportunity_timeline(session, page.actor, opportunity.id)
    for entry in entries:
        if entry["kind"] == "stage_change":
            entry["from_label"] = page.fmt.stage(by_name.get(entry["from_stage"]))
            entry["to_label"] = page.fmt.stage(by_name.get(entry["to_stage"]))
    return entries


@router.get("/accounts/{account_id}")
def account_page(account_id: int, page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show an account with its contacts, opportunities and latest activities."""
    logged = query_text(page.request.query_params, "done") == "logged"
    notice = page.t("activity.logged") if logged else None
    return _account_view(page, session, account_id, notice=notice)


def _account_view(
    page: PageContext,
    session: Session,
    account_id: int,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    account = get_record(session, page.actor, ACCOUNTS, account_id)
    page.stages = stage_index(readable_pipelines(session, page.actor))
    contacts = _account_contacts(session, page, account_id)
    opportunities = _account_records(
        session,
        page,
        OPPORTUNITIES,
        account_id,
        sort="-updated_at",
        limit=ACCOUNT_OPPORTUNITIES,
    )
    activities = _account_records(
        session,
        page,
        ACTIVITIES,
        account_id,
        sort="-occurred_at",
        limit=ACCOUNT_ACTIVITIES,
    )
    owner_ids = [account.owner_id, *(r.owner_id for r in [*contacts, *opportunities])]
    return page.render(
        "account.html",
        status_code=status_code,
        account=account,
        contacts=contacts,
        opportunities=opportunities,
        activities=activities,
        activity_kinds=[kind.value for kind in ActivityKind],
        owners=names_by_id(session, page.actor, EMPLOYEES, owner_ids),
        notice=notice,
        error=error,
    )


def _account_records(
    session: Session,
    page: PageContext,
    spec: RecordSpec[Any],
    account_id: int,
    *,
    sort: str,
    limit: int,
) -> list[Any]:
    """Return the account's records of ``spec`` the actor may read (none if barred)."""
    if not page.may("read", spec.name):
        return []
    return list_records(
        session,
        page.actor,
        spec,
        filters={"account_id": account_id},
        sort=sort,
        limit=limit,
    ).items
