"""HTTP routes of the audit log (review, verification, checkpoints) and of
export requests (ask, approve or reject, download the signed package)."""

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from waggle.apikit import ActorDep, SessionDep
from waggle.core.settings import Settings
from waggle.governance.audit import (
    EntryFilter,
    instance_verifying_keys,
    list_audit_entries,
    sign_checkpoint,
    verify_audit_chain,
)
from waggle.governance.export_requests import (
    MAX_PURPOSE,
    MAX_REASON,
    approve_export_request,
    export_package_path,
    get_export_request,
    list_export_requests,
    reject_export_request,
    request_export,
)

TAG = "audit"


class AuditEntryRead(BaseModel):
    seq: int
    occurred_at: dt.datetime
    user_id: int | None
    username: str
    roles: str
    action: str
    resource: str
    record_ids: list[str]
    result: str
    source_ip: str | None
    request_id: str | None
    detail: str | None
    entry_hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryRead]
    next_before_seq: int | None


class ExportRequestCreate(BaseModel):
    """What to export and why."""

    model_config = ConfigDict(extra="forbid")

    resource: str
    purpose: str = Field(min_length=1, max_length=MAX_PURPOSE)


class ExportRejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=MAX_REASON)


class ExportRequestRead(BaseModel):
    id: int
    resource: str
    purpose: str
    status: str
    requested_by: str
    requested_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    reason: str | None
    package_id: str | None
    row_count: int | None
    checksums_sm3: str | None
    audit_seq: int | None


def routers() -> list[APIRouter]:
    routes = APIRouter(prefix="/api/v1/audit", tags=[TAG])

    @routes.get("/entries", response_model=AuditPage)
    def entries(
        session: SessionDep,
        actor: ActorDep,
        username: str | None = None,
        action: str | None = None,
        resource: str | None = None,
        result: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        before_seq: int | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> AuditPage:
        """Review the log newest first; page on with ``before_seq``."""
        where = EntryFilter(username, action, resource, result, since, until)
        found = list_audit_entries(
            session, actor, where=where, before_seq=before_seq, limit=limit
        )
        items = [AuditEntryRead.model_validate(e, from_attributes=True) for e in found]
        last = items[-1].seq if len(items) == limit else None
        return AuditPage(items=items, next_before_seq=last)

    @routes.get("/verify")
    def verify(request: Request, session: SessionDep, actor: ActorDep) -> Any:
        """Recompute the chain and check every signed checkpoint."""
        keys = instance_verifying_keys(_settings(request))
        return verify_audit_chain(session, actor, keys=keys).as_dict()

    @routes.post("/checkpoints", status_code=201)
    def checkpoint(request: Request, session: SessionDep, actor: ActorDep) -> Any:
        """Sign the entries since the last checkpoint (``null``: none were new)."""
        signed = sign_checkpoint(session, actor, settings=_settings(request))
        if signed is None:
            return None
        return {
            "seq_from": signed.seq_from,
            "seq_to": signed.seq_to,
            "merkle_root": signed.merkle_root,
            "key_fingerprint": signed.key_fingerprint,
        }

    return [routes, _export_routes()]


def _export_routes() -> APIRouter:
    routes = APIRouter(prefix="/api/v1/governance/export-requests", tags=[TAG])

    def shaped(found: object) -> ExportRequestRead:
        return ExportRequestRead.model_validate(found, from_attributes=True)

    @routes.post("", status_code=201, response_model=ExportRequestRead)
    def create(
        body: ExportRequestCreate, session: SessionDep, actor: ActorDep
    ) -> ExportRequestRead:
        """Ask for an export; it stays pending until compliance decides."""
        found = request_export(
            session, actor, resource=body.resource, purpose=body.purpose
        )
        return shaped(found)

    @routes.get("", response_model=list[ExportRequestRead])
    def listing(
        session: SessionDep, actor: ActorDep, status: str | None = None
    ) -> list[ExportRequestRead]:
        """List requests newest first (reviewers: all; others: their own)."""
        return [
            shaped(found)
            for found in list_export_requests(session, actor, status=status)
        ]

    @routes.get("/{request_id}", response_model=ExportRequestRead)
    def read(
        request_id: int, session: SessionDep, actor: ActorDep
    ) -> ExportRequestRead:
        """Return one request."""
        return shaped(get_export_request(session, actor, request_id))

    @routes.post("/{request_id}/approve", response_model=ExportRequestRead)
    def approve(
        request_id: int, request: Request, session: SessionDep, actor: ActorDep
    ) -> ExportRequestRead:
        """Approve: the package is built and signed by requester and approver."""
        found = approve_export_request(
            session, actor, request_id, settings=_settings(request)
        )
        return shaped(found)

    @routes.post("/{request_id}/reject", response_model=ExportRequestRead)
    def reject(
        request_id: int, body: ExportRejection, session: SessionDep, actor: ActorDep
    ) -> ExportRequestRead:
        """Reject with a reason; no package is built."""
        found = reject_export_request(session, actor, request_id, reason=body.reason)
        return shaped(found)

    @routes.get("/{request_id}/package")
    def package(
        request_id: int, request: Request, session: SessionDep, actor: ActorDep
    ) -> FileResponse:
        """Download the signed package (.zip); the download is audited."""
        path = export_package_path(
            session, actor, request_id, settings=_settings(request)
        )
        return FileResponse(path, media_type="application/zip", filename=path.name)

    return routes


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings
