"""HTTP routes of the audit log: review, chain verification, checkpoints."""

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from waggle.apikit import ActorDep, SessionDep
from waggle.core.settings import Settings
from waggle.governance.audit import (
    EntryFilter,
    instance_verifying_keys,
    list_audit_entries,
    sign_checkpoint,
    verify_audit_chain,
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

    return [routes]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings
