"""Export requests: ask, approve or reject, then download the signed package.

An export is asked for (``export_requests.create``) and stays pending until a
compliance officer approves it (``export_requests.approve``) or rejects it with
a reason. Approval is where separation of duties bites
(:func:`waggle.governance.duties.approve_export`: never the requester, never
someone who may change a policy or a classification). Only then are the rows
read, with the requester's row scope and masks, written into a package that
the requester's key and the officer's key both sign, next to the audit row of
the export. Every download of the package is audited too.

Signing keys are per person and kept in the instance's key store
(``export-user-<user id>``), created on first use.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event, select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.db import Base
from waggle.core.errors import Conflict, InvalidInput, NotFound, PolicyDenied
from waggle.core.settings import Settings
from waggle.governance.chain import _PENDING, seal_entries
from waggle.governance.crypto import SigningKey
from waggle.governance.duties import EXPORT_REQUESTS, approve_export
from waggle.governance.guard import (
    active_policy,
    authorize,
    record_audit,
    visible_owner_ids,
)
from waggle.governance.keystore import KeyStore
from waggle.governance.masking import row_masker
from waggle.governance.models import AuditEntry, ExportRequest
from waggle.governance.packages import (
    COMPLIANCE_OFFICER,
    EXPORTER,
    Signer,
    audit_entry_as_dict,
    build_package,
    new_package_id,
)

logger = logging.getLogger(__name__)

RESOURCE = EXPORT_REQUESTS
PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
STATUSES = (PENDING, APPROVED, REJECTED)
EXPORTS_DIRECTORY = "exports"
MAX_PURPOSE = 1000
MAX_REASON = 1000
# Reviewers see every request; everybody else sees the ones they asked for.
REVIEWER_ROLES = frozenset({"compliance", "auditor"})
_NOT_EXPORTABLE = frozenset({RESOURCE, "sovereignty_drill"})
_OWNER_COLUMNS = ("owner_id", "actor_id")


@dataclass(frozen=True)
class ExportedRows:
    """The CSV of one resource as the requester may see it, and its row ids."""

    content: bytes
    record_ids: list[str]


def exportable_resources() -> list[str]:
    """Return the resources the policy lets someone export that have a table."""
    policy = active_policy()
    return sorted(
        name
        for name in policy.resources
        if name not in _NOT_EXPORTABLE
        and policy.roles_allowed(name, "export")
        and name in Base.metadata.tables
    )


def request_export(
    session: Session, actor: Actor, *, resource: str, purpose: str
) -> ExportRequest:
    """Ask for an export of ``resource``; it waits for a compliance officer.

    Raises:
        PolicyDenied: the actor may not request exports or export ``resource``.
        InvalidInput: an unknown resource, an empty or long purpose, or an
            actor who is not a named user.
    """
    authorize(session, actor, "create", RESOURCE)
    if resource not in exportable_resources():
        raise InvalidInput(
            f"export request: resource {resource!r} is not exportable; expected"
            f" one of {', '.join(exportable_resources())}",
            field="resource",
        )
    authorize(session, actor, "export", resource)
    purpose = _required_text(purpose, field="purpose", limit=MAX_PURPOSE)
    if actor.user_id is None:
        raise InvalidInput(
            "export request: requested_by must be a named user who can sign;"
            " act as one (--as USER)",
            field="requested_by",
        )
    request = ExportRequest(
        resource=resource,
        purpose=purpose,
        status=PENDING,
        requested_by_id=actor.user_id,
        requested_by=actor.username,
        requested_at=now(),
    )
    session.add(request)
    session.flush()
    record_audit(
        session,
        actor,
        action="create",
        resource=RESOURCE,
        record_ids=[request.id],
        detail=f"export of {resource} requested",
    )
    logger.info("export requested", extra={"request_id": request.id})
    return request


def list_export_requests(
    session: Session, actor: Actor, *, status: str | None = None
) -> list[ExportRequest]:
    """Return requests newest first: all for reviewers, else the actor's own.

    Raises:
        PolicyDenied: the actor may not read export requests.
        InvalidInput: an unknown status.
    """
    authorize(session, actor, "read", RESOURCE)
    statement = select(ExportRequest).order_by(ExportRequest.id.desc())
    if status is not None:
        if status not in STATUSES:
            raise InvalidInput(
                f"export requests: status {status!r} is unknown; expected one of"
                f" {', '.join(STATUSES)}",
                field="status",
            )
        statement = statement.where(ExportRequest.status == status)
    if not actor.roles & REVIEWER_ROLES:
        statement = statement.where(ExportRequest.requested_by_id == actor.user_id)
    found = list(session.scalars(statement))
    record_audit(
        session,
        actor,
        action="read",
        resource=RESOURCE,
        record_ids=[request.id for request in found],
    )
    return found


def get_export_request(
    session: Session, actor: Actor, request_id: int
) -> ExportRequest:
    """Return one request the actor may see.

    Raises:
        PolicyDenied: the actor may not read it.
        NotFound: it does not exist.
    """
    authorize(session, actor, "read", RESOURCE)
    request = _visible(session, actor, request_id, action="read")
    record_audit(
        session, actor, action="read", resource=RESOURCE, record_ids=[request.id]
    )
    return request


def approve_export_request(
    session: Session, approver: Actor, request_id: int, *, settings: Settings
) -> ExportRequest:
    """Approve a pending request: export, sign twice, record the export.

    The rows are read with the requester's row scope and masks. The audit row
    of the export is chained before the package is signed, so the package
    carries it with its sequence number and hash.

    Raises:
        PolicyDenied: the approver may not approve, or separation of duties
            refuses them (the requester; a data owner or IT admin).
        NotFound: the request does not exist.
        Conflict: it is not pending, or the requester's account is gone.
    """
    authorize(session, approver, "approve", RESOURCE)
    request = _pending(session, request_id)
    requester = _requester(session, request)
    package_id = new_package_id()
    approve_export(
        session,
        approver,
        exporter=requester,
        package_id=package_id,
        resource=RESOURCE,
        record_id=str(request.id),
    )
    if approver.user_id is None:
        raise PolicyDenied(
            f"export request {request.id}: the approver must be a named user",
            action="approve",
            resource=RESOURCE,
            record_ids=(str(request.id),),
        )

    rows = export_rows(session, requester, request.resource)
    entry = record_audit(
        session,
        requester,
        action="export",
        resource=request.resource,
        record_ids=rows.record_ids,
        detail=f"export request {request.id}: {len(rows.record_ids)} rows in"
        f" package {package_id}, approved by {approver.username}",
    )
    _seal_now(session)
    decided_at = now()
    destination = _package_folder(settings) / f"{package_id}.zip"
    _remove_if_rolled_back(session, destination)
    built = build_package(
        destination,
        files=_package_files(request, rows, approver=approver, decided_at=decided_at),
        signers=_signers(settings, requester=requester, approver=approver),
        audit_entry=audit_entry_as_dict(entry),
        package_id=package_id,
    )

    _decide(request, approver, status=APPROVED, at=decided_at)
    request.package_id, request.package_file = package_id, destination.name
    request.row_count, request.checksums_sm3 = len(rows.record_ids), built.checksums_sm3
    request.audit_seq = entry.seq
    session.flush()
    logger.info(
        "export approved",
        extra={"request_id": request.id, "package_id": package_id},
    )
    return request


def _remove_if_rolled_back(session: Session, path: Path) -> None:
    """Delete ``path`` should the transaction that wrote it roll back.

    The package is built inside the approval's transaction (it must carry the
    export's audit entry); a package whose approval never committed would be
    exported rows with no approved request behind them.
    """
    settled = {"committed": False}

    def committed(_session: Session) -> None:
        settled["committed"] = True

    def rolled_back(_session: Session) -> None:
        if not settled["committed"]:
            path.unlink(missing_ok=True)
            logger.info("export package removed", extra={"package": path.name})

    event.listen(session, "after_commit", committed, once=True)
    event.listen(session, "after_rollback", rolled_back, once=True)


def reject_export_request(
    session: Session, actor: Actor, request_id: int, *, reason: str
) -> ExportRequest:
    """Reject a pending request with a reason; no package is ever built for it.

    Raises:
        PolicyDenied: the actor may not decide export requests.
        NotFound: the request does not exist.
        Conflict: it is not pending.
        InvalidInput: the reason is empty or too long.
    """
    authorize(session, actor, "approve", RESOURCE)
    request = _pending(session, request_id)
    reason = _required_text(reason, field="reason", limit=MAX_REASON)
    _decide(request, actor, status=REJECTED, at=now())
    request.reason = reason
    session.flush()
    record_audit(
        session,
        actor,
        action="reject",
        resource=RESOURCE,
        record_ids=[request.id],
        detail=f"rejected: {reason}",
    )
    logger.info("export rejected", extra={"request_id": request.id})
    return request


def export_package_path(
    session: Session, actor: Actor, request_id: int, *, settings: Settings
) -> Path:
    """Return the approved request's package file; the download is audited.

    Only the requester and compliance officers may download it.

    Raises:
        PolicyDenied: the actor may not download it.
        NotFound: the request does not exist, or its file is gone.
        Conflict: the request has no package (pending or rejected).
    """
    authorize(session, actor, "export", RESOURCE)
    request = _visible(session, actor, request_id, action="export")
    if actor.user_id != request.requested_by_id and "compliance" not in actor.roles:
        raise PolicyDenied(
            f"export request {request.id}: only its requester or compliance may"
            " download the package",
            action="export",
            resource=RESOURCE,
            record_ids=(str(request.id),),
        )
    if request.status != APPROVED or request.package_file is None:
        raise Conflict(
            f"export request {request.id} is {request.status}; only an approved"
            " request has a package",
            code="export_not_approved",
        )
    path = _package_folder(settings) / request.package_file
    if not path.is_file():
        raise NotFound(f"export request {request.id}: package {path} is missing")
    record_audit(
        session,
        actor,
        action="download",
        resource=RESOURCE,
        record_ids=[request.id],
        detail=f"package {request.package_id}",
    )
    return path


def export_rows(session: Session, actor: Actor, resource: str) -> ExportedRows:
    """Return ``resource``'s rows within ``actor``'s export scope, masked, as CSV.

    Raises:
        PolicyDenied: the actor may not export ``resource``.
    """
    scope = authorize(session, actor, "export", resource)
    table = Base.metadata.tables[resource]
    owner = next((name for name in _OWNER_COLUMNS if name in table.c), None)
    statement = select(table).order_by(*table.primary_key.columns)
    if scope != "all" and owner is not None:
        owners = sorted(visible_owner_ids(session, actor, scope))
        statement = statement.where(table.c[owner].in_(owners))
    mask = row_masker(session, actor, table.name)
    names = [column.name for column in table.columns]

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    record_ids: list[str] = []
    for row in session.execute(statement).mappings():
        owner_id = row[owner] if owner else None
        values = [
            row[name] if mask is None else mask(owner_id, name, row[name])
            for name in names
        ]
        writer.writerow([_cell(value) for value in values])
        record_ids.append(_row_id(table, row))
    return ExportedRows(
        content=buffer.getvalue().encode("utf-8"), record_ids=record_ids
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal | int | float):
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _row_id(table: Table, row: Any) -> str:
    return ":".join(str(row[column.name]) for column in table.primary_key.columns)


def _required_text(value: str, *, field: str, limit: int) -> str:
    text = (value or "").strip()
    if not text or len(text) > limit:
        raise InvalidInput(
            f"export request: {field} must be 1 to {limit} characters",
            field=field,
        )
    return text


def _load(
    session: Session, request_id: int, *, for_update: bool = False
) -> ExportRequest:
    request = session.get(ExportRequest, request_id, with_for_update=for_update)
    if request is None:
        raise NotFound(f"export request {request_id} does not exist")
    return request


def _visible(
    session: Session, actor: Actor, request_id: int, *, action: str
) -> ExportRequest:
    request = _load(session, request_id)
    if actor.roles & REVIEWER_ROLES or request.requested_by_id == actor.user_id:
        return request
    raise PolicyDenied(
        f"export request {request_id} is outside what {actor.username} may {action}",
        action=action,
        resource=RESOURCE,
        record_ids=(str(request_id),),
    )


def _pending(session: Session, request_id: int) -> ExportRequest:
    # Locked on PostgreSQL so that two officers cannot both decide it.
    request = _load(session, request_id, for_update=True)
    if request.status != PENDING:
        raise Conflict(
            f"export request {request_id} is already {request.status}; only a"
            " pending request can be decided",
            code="export_already_decided",
        )
    return request


def _decide(
    request: ExportRequest, actor: Actor, *, status: str, at: dt.datetime
) -> None:
    request.status = status
    request.decided_by_id, request.decided_by = actor.user_id, actor.username
    request.decided_at = at


def _requester(session: Session, request: ExportRequest) -> Actor:
    # Imported here: identity's services themselves pass the governance seam.
    from waggle.identity.models import User
    from waggle.identity.service import actor_for_user

    user = (
        session.get(User, request.requested_by_id)
        if request.requested_by_id is not None
        else None
    )
    if user is None or not user.is_active:
        raise Conflict(
            f"export request {request.id}: requester {request.requested_by} no"
            " longer has an active account",
            code="export_requester_gone",
        )
    return actor_for_user(user, channel="export")


def _seal_now(session: Session) -> None:
    # Chain the entries staged so far now rather than at commit, so that the
    # export's audit row has its seq and hash when it goes into the package.
    # A rollback still drops them with everything else.
    pending: list[AuditEntry] = session.info.pop(_PENDING, None) or []
    if pending:
        seal_entries(session, pending)
        session.flush()


def _package_folder(settings: Settings) -> Path:
    folder = settings.data_dir / EXPORTS_DIRECTORY
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _package_files(
    request: ExportRequest,
    rows: ExportedRows,
    *,
    approver: Actor,
    decided_at: dt.datetime,
) -> dict[str, bytes | Path]:
    described = {
        "request_id": request.id,
        "resource": request.resource,
        "purpose": request.purpose,
        "requested_by": request.requested_by,
        "requested_at": request.requested_at.isoformat(),
        "approved_by": approver.username,
        "approved_at": decided_at.isoformat(),
        "rows": len(rows.record_ids),
    }
    text = json.dumps(described, ensure_ascii=False, indent=2, sort_keys=True)
    return {
        f"{request.resource}.csv": rows.content,
        "request.json": text.encode("utf-8") + b"\n",
    }


def _signers(settings: Settings, *, requester: Actor, approver: Actor) -> list[Signer]:
    store = KeyStore.for_settings(settings)
    return [
        Signer(
            name=requester.username,
            role=EXPORTER,
            key=_person_key(store, requester, settings.crypto_suite),
        ),
        Signer(
            name=approver.username,
            role=COMPLIANCE_OFFICER,
            key=_person_key(store, approver, settings.crypto_suite),
        ),
    ]


def person_key_name(actor: Actor) -> str:
    """Return the key-store name of a person's export signing key."""
    return f"export-user-{actor.user_id}"


def _person_key(store: KeyStore, actor: Actor, suite: str) -> SigningKey:
    name = person_key_name(actor)
    try:
        return store.signing_key(name)
    except NotFound:
        store.create_signing_key(name, suite=suite)
        return store.signing_key(name)
