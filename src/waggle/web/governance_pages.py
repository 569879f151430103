"""Web pages: the governance pages (catalogue, policies, approvals, audit log).

``/governance`` links to the pages the user's roles open. Every page calls
the governed services (:mod:`waggle.governance.catalogue`,
:mod:`waggle.governance.export_requests`, :mod:`waggle.governance.audit`) with
the page's actor, so a refusal is the standard refusal page (and is audited);
other errors are shown on the page after :func:`abandon`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, Response

from waggle.apikit import SessionDep, status_for
from waggle.core.db import Base
from waggle.core.errors import PolicyDenied, WaggleError
from waggle.core.settings import Settings
from waggle.governance import active_policy, authorize
from waggle.governance.audit import (
    EntryFilter,
    instance_verifying_keys,
    list_audit_entries,
    verify_audit_chain,
)
from waggle.governance.catalogue import (
    FORMATS,
    GRADES,
    LEVEL_LABELS,
    LEVELS,
    classify_field,
    list_catalogue,
)
from waggle.governance.chain import ChainReport
from waggle.governance.export_requests import (
    APPROVED,
    PENDING,
    STATUSES,
    approve_export_request,
    export_package_path,
    exportable_resources,
    list_export_requests,
    reject_export_request,
    request_export,
)
from waggle.governance.masking import MASK_KINDS, active_rules, refuse_unmaskable
from waggle.governance.models import AuditCheckpoint, ExportRequest
from waggle.governance.policy import ACTIONS, SCOPE_ORDER
from waggle.web.context import (
    FormDep,
    FormPageDep,
    PageContext,
    PageDep,
    abandon,
    describe_error,
    query_int,
    query_text,
)
from waggle.web.rendering import SECURITY_HEADERS

AUDIT_PAGE = 50
# (section, action, resource): a section shows when the policy allows it.
SECTIONS = (
    ("catalogue", "read", "catalogue"),
    ("policies", "read", "catalogue"),
    ("approvals", "read", "export_requests"),
    ("audit", "read", "audit"),
)

router = APIRouter(include_in_schema=False)


@router.get("/governance")
def governance_overview(page: PageDep) -> HTMLResponse:
    """Link to each governance page the user's roles open.

    Raises:
        PolicyDenied: the user's roles open none of them.
    """
    sections = [
        name for name, action, resource in SECTIONS if page.may(action, resource)
    ]
    if not sections:
        raise PolicyDenied(
            f"{page.actor.username} may not read any governance page",
            action="read",
            resource="governance",
        )
    return page.render(
        "governance_overview.html",
        sections=sections,
        policy_version=active_policy().version,
    )


# --- the catalogue -----------------------------------------------------------


@router.get("/governance/catalogue")
def catalogue_page(page: PageDep, session: SessionDep) -> HTMLResponse:
    """List every field's classification; the data owner may edit one."""
    params = page.request.query_params
    return _catalogue_view(
        page,
        session,
        table=query_text(params, "table"),
        edit=query_text(params, "edit"),
        saved=query_text(params, "saved"),
    )


@router.post("/governance/catalogue/{table}/{column}")
def classify_page(
    table: str, column: str, page: FormPageDep, session: SessionDep, form: FormDep
) -> Response:
    """Store the data owner's classification of one field; show it saved."""
    changes = {
        "level": str(form.get("level") or ""),
        "grade": str(form.get("grade") or ""),
        "mask_format": str(form.get("mask_format") or ""),
        "is_personal": form.get("is_personal") == "on",
        "is_sensitive_personal": form.get("is_sensitive_personal") == "on",
    }
    try:
        classify_field(
            session,
            page.actor,
            table,
            column,
            changes=changes,
            check=[refuse_unmaskable(Base.metadata)],
        )
    except PolicyDenied:
        raise
    except WaggleError as error:
        abandon(session, page.actor, error)
        return _catalogue_view(
            page,
            session,
            table=table,
            edit=f"{table}.{column}",
            error=describe_error(page.t, error),
            status_code=status_for(error),
        )
    query = urlencode({"table": table, "saved": f"{table}.{column}"})
    return RedirectResponse(f"/governance/catalogue?{query}", 303)


def _catalogue_view(
    page: PageContext,
    session: Session,
    *,
    table: str,
    edit: str = "",
    saved: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    fields = list_catalogue(session, page.actor)
    tables = sorted({entry.table for entry in fields})
    chosen = table if table in tables else ""
    may_edit = page.may("update", "catalogue")
    return page.render(
        "governance_catalogue.html",
        status_code=status_code,
        fields=[entry for entry in fields if not chosen or entry.table == chosen],
        tables=tables,
        chosen=chosen,
        may_edit=may_edit,
        edit=edit if may_edit else "",
        saved=saved,
        error=error,
        levels=LEVELS,
        level_labels=LEVEL_LABELS,
        grades=GRADES,
        formats=FORMATS,
    )


# --- the policy ----------------------------------------------------------------


@dataclass(frozen=True)
class ResourceRow:
    """One resource of the policy: whether rows have owners, roles per action."""

    name: str
    is_owned: bool
    allowed: dict[str, list[str]]


@router.get("/governance/policies")
def policies_page(page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show the active policy: scopes, permissions, masking, aggregates."""
    authorize(session, page.actor, "read", "catalogue")
    policy = active_policy()
    resources = [
        ResourceRow(
            name=name,
            is_owned=rule.is_owned,
            allowed={
                action: sorted(roles) for action, roles in rule.allowed.items() if roles
            },
        )
        for name, rule in sorted(policy.resources.items())
    ]
    scopes = sorted(
        policy.row_scopes.items(), key=lambda item: -SCOPE_ORDER.index(item[1])
    )
    return page.render(
        "governance_policies.html",
        policy=policy,
        scopes=scopes,
        resources=resources,
        actions=[a for a in ACTIONS if any(a in r.allowed for r in resources)],
        masking=active_rules(),
        mask_kinds=MASK_KINDS,
        grades=GRADES,
        aggregates=policy.aggregates,
    )


# --- export approvals ----------------------------------------------------------


@router.get("/governance/approvals")
def approvals_page(page: PageDep, session: SessionDep) -> HTMLResponse:
    """List export requests; ask for one; decide (compliance); download."""
    params = page.request.query_params
    return _approvals_view(
        page,
        session,
        status=query_text(params, "status"),
        notice=_approvals_notice(page, params),
    )


@router.post("/governance/approvals")
def request_page(page: FormPageDep, session: SessionDep, form: FormDep) -> Response:
    """Ask for an export from the form."""
    try:
        found = request_export(
            session,
            page.actor,
            resource=str(form.get("resource") or ""),
            purpose=str(form.get("purpose") or ""),
        )
    except PolicyDenied:
        raise
    except WaggleError as error:
        return _approvals_failed(page, session, error)
    return RedirectResponse(f"/governance/approvals?done=requested&id={found.id}", 303)


@router.post("/governance/approvals/{request_id}/approve")
def approve_page(request_id: int, page: FormPageDep, session: SessionDep) -> Response:
    """Approve a pending request (compliance): the package is built and signed."""
    try:
        approve_export_request(
            session, page.actor, request_id, settings=_settings(page)
        )
    except PolicyDenied:
        raise
    except WaggleError as error:
        return _approvals_failed(page, session, error)
    return RedirectResponse(f"/governance/approvals?done=approved&id={request_id}", 303)


@router.post("/governance/approvals/{request_id}/reject")
def reject_page(
    request_id: int, page: FormPageDep, session: SessionDep, form: FormDep
) -> Response:
    """Reject a pending request with the reason typed (compliance)."""
    try:
        reject_export_request(
            session, page.actor, request_id, reason=str(form.get("reason") or "")
        )
    except PolicyDenied:
        raise
    except WaggleError as error:
        return _approvals_failed(page, session, error)
    return RedirectResponse(f"/governance/approvals?done=rejected&id={request_id}", 303)


@router.get("/governance/approvals/{request_id}/package")
def package_download(request_id: int, page: PageDep, session: SessionDep) -> Response:
    """Send the signed package of an approved request; the download is audited."""
    path = export_package_path(
        session, page.actor, request_id, settings=_settings(page)
    )
    return FileResponse(
        path,
        media_type="application/zip",
        filename=path.name,
        headers=SECURITY_HEADERS,
    )


def _approvals_failed(
    page: PageContext, session: Session, error: WaggleError
) -> HTMLResponse:
    abandon(session, page.actor, error)
    return _approvals_view(
        page,
        session,
        status="",
        error=describe_error(page.t, error),
        status_code=status_for(error),
    )


def _approvals_notice(page: PageContext, params: Mapping[str, str]) -> str | None:
    done = query_text(params, "done")
    if done not in ("requested", "approved", "rejected"):
        return None
    return page.t(f"governance.approvals_{done}", id=query_int(params, "id") or "—")


def _approvals_view(
    page: PageContext,
    session: Session,
    *,
    status: str,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    chosen = status if status in STATUSES else ""
    requests = list_export_requests(session, page.actor, status=chosen or None)
    return page.render(
        "governance_approvals.html",
        status_code=status_code,
        requests=requests,
        statuses=STATUSES,
        chosen=chosen,
        resources=exportable_resources(),
        may_request=page.may("create", "export_requests"),
        may_decide=page.may("approve", "export_requests"),
        may_download=lambda found: _may_download(page, found),
        pending=PENDING,
        notice=notice,
        error=error,
    )


def _may_download(page: PageContext, found: ExportRequest) -> bool:
    is_mine = found.requested_by_id == page.actor.user_id
    return found.status == APPROVED and (is_mine or "compliance" in page.actor.roles)


# --- the audit log -------------------------------------------------------------


@dataclass(frozen=True)
class AuditQuery:
    """The audit page's filters as chosen; dates are whole UTC days."""

    username: str
    action: str
    resource: str
    since: dt.date | None
    until: dt.date | None

    @classmethod
    def of(cls, params: Mapping[str, str]) -> AuditQuery:
        return cls(
            username=query_text(params, "username"),
            action=query_text(params, "action"),
            resource=query_text(params, "resource"),
            since=_date(query_text(params, "since")),
            until=_date(query_text(params, "until")),
        )

    def where(self) -> EntryFilter:
        return EntryFilter(
            username=self.username or None,
            action=self.action or None,
            resource=self.resource or None,
            since=_midnight(self.since),
            until=_midnight(self.until + dt.timedelta(days=1) if self.until else None),
        )

    def href(self, **extra: str | int) -> str:
        chosen = {
            "username": self.username,
            "action": self.action,
            "resource": self.resource,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }
        query = {name: value for name, value in chosen.items() if value} | extra
        return f"/governance/audit?{urlencode(query)}"


@router.get("/governance/audit")
def audit_page(page: PageDep, session: SessionDep) -> HTMLResponse:
    """Review the audit log newest first, filtered and paged (compliance, audit)."""
    return _audit_view(page, session, page.request.query_params)


@router.post("/governance/audit/verify")
def audit_verify(page: FormPageDep, session: SessionDep, form: FormDep) -> HTMLResponse:
    """Recompute the chain and its checkpoints; show the result.

    An HTMX request gets the result panel alone, a plain form the whole page.
    """
    keys = instance_verifying_keys(_settings(page))
    report = verify_audit_chain(session, page.actor, keys=keys)
    if page.request.headers.get("hx-request") == "true":
        return page.render(
            "governance_verify.html",
            report=report,
            checkpoint=_latest_checkpoint(session),
        )
    params = {key: str(value) for key, value in form.items() if key != "csrf_token"}
    return _audit_view(page, session, params, report=report)


def _audit_view(
    page: PageContext,
    session: Session,
    params: Mapping[str, str],
    *,
    report: ChainReport | None = None,
) -> HTMLResponse:
    chosen = AuditQuery.of(params)
    before = query_int(params, "before")
    entries = list_audit_entries(
        session,
        page.actor,
        where=chosen.where(),
        before_seq=before,
        limit=AUDIT_PAGE,
    )
    next_href = (
        chosen.href(before=entries[-1].seq) if len(entries) == AUDIT_PAGE else None
    )
    return page.render(
        "governance_audit.html",
        entries=entries,
        chosen=chosen,
        next_href=next_href,
        first_href=chosen.href() if before is not None else None,
        checkpoint=_latest_checkpoint(session),
        may_verify=page.may("verify", "audit"),
        report=report,
    )


def _latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.scalar(
        select(AuditCheckpoint).order_by(AuditCheckpoint.seq_to.desc()).limit(1)
    )


def _date(raw: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _midnight(day: dt.date | None) -> dt.datetime | None:
    if day is None:
        return None
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _settings(page: PageContext) -> Settings:
    settings: Settings = page.request.app.state.settings
    return settings
