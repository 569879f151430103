"""Audit-log services: review entries, verify the chain, sign checkpoints.

These are the policy-checked entry points the API, the CLI and the jobs use;
the mechanism itself lives in :mod:`waggle.governance.chain`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import Actor, system_actor
from waggle.core.errors import NotFound
from waggle.core.settings import Settings
from waggle.governance.chain import (
    AUDIT_KEY_NAME,
    ChainReport,
    create_checkpoint,
    verify_chain,
)
from waggle.governance.crypto import SigningKey, VerifyingKey
from waggle.governance.guard import authorize, record_audit
from waggle.governance.keystore import KeyStore
from waggle.governance.models import AuditCheckpoint, AuditEntry

RESOURCE = "audit"


def audit_signing_key(settings: Settings) -> SigningKey:
    """Return the instance's checkpoint key, creating it on first use."""
    store = KeyStore.for_settings(settings)
    try:
        return store.signing_key(AUDIT_KEY_NAME)
    except NotFound:
        store.create_signing_key(AUDIT_KEY_NAME, suite=settings.crypto_suite)
        return store.signing_key(AUDIT_KEY_NAME)


def instance_verifying_keys(settings: Settings) -> list[VerifyingKey]:
    """Return the instance's own checkpoint public key, if it has one."""
    try:
        return [KeyStore.for_settings(settings).verifying_key(AUDIT_KEY_NAME)]
    except NotFound:
        return []


def verify_audit_chain(
    session: Session, actor: Actor, *, keys: Sequence[VerifyingKey]
) -> ChainReport:
    """Verify the whole chain for ``actor`` and audit the verification itself.

    Raises:
        PolicyDenied: the actor may not verify the audit log.
    """
    authorize(session, actor, "verify", RESOURCE)
    report = verify_chain(session, keys=keys)
    problem = report.problem
    record_audit(
        session,
        actor,
        action="verify",
        resource=RESOURCE,
        result="ok" if problem is None else "failed",
        detail=f"{report.entries} entries"
        + ("" if problem is None else f"; first fault: {problem.message}"),
    )
    return report


def sign_checkpoint(
    session: Session, actor: Actor, *, settings: Settings
) -> AuditCheckpoint | None:
    """Sign a checkpoint over the entries since the last one (IT admin's job).

    Raises:
        PolicyDenied: the actor may not sign checkpoints.
    """
    authorize(session, actor, "checkpoint", RESOURCE)
    return create_checkpoint(session, audit_signing_key(settings))


def checkpoint_job(
    settings: Settings,
) -> Callable[[sessionmaker[Session]], AuditCheckpoint | None]:
    """Return the periodic job that signs a checkpoint as the system actor."""

    def run(sessions: sessionmaker[Session]) -> AuditCheckpoint | None:
        with sessions.begin() as session:
            return sign_checkpoint(
                session, system_actor("audit-checkpoint"), settings=settings
            )

    return run


@dataclass(frozen=True)
class EntryFilter:
    """What to look for in the log; every part is optional."""

    username: str | None = None
    action: str | None = None
    resource: str | None = None
    result: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def list_audit_entries(
    session: Session,
    actor: Actor,
    *,
    where: EntryFilter,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Return entries newest first, for compliance review; the review is audited.

    Raises:
        PolicyDenied: the actor may not read the audit log.
    """
    authorize(session, actor, "read", RESOURCE)
    statement = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    conditions = {
        AuditEntry.username: where.username,
        AuditEntry.action: where.action,
        AuditEntry.resource: where.resource,
        AuditEntry.result: where.result,
    }
    for column, wanted in conditions.items():
        if wanted is not None:
            statement = statement.where(column == wanted)
    if where.since is not None:
        statement = statement.where(AuditEntry.occurred_at >= where.since)
    if where.until is not None:
        statement = statement.where(AuditEntry.occurred_at < where.until)
    if before_seq is not None:
        statement = statement.where(AuditEntry.seq < before_seq)
    entries = list(session.scalars(statement))
    record_audit(
        session,
        actor,
        action="read",
        resource=RESOURCE,
        record_ids=[entry.seq for entry in entries],
    )
    return entries
