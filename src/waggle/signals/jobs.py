"""Periodic jobs of the signals context in the embedded mode.

* ``signals-crm``: passes new stage changes and logged activities into the
  event stream (the ``crm`` source);
* ``signals-pull``: syncs every enabled pull source (IMAP mailboxes) that is
  due, honouring each source's backoff after failures;
* ``signals-rematch``: matches waiting events again when the directory of
  employees, contacts, accounts and identity links has changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import system_actor
from waggle.core.clock import now
from waggle.core.db import transaction
from waggle.core.errors import InvalidInput
from waggle.signals import service
from waggle.signals.connectors.crm import CrmChangeSource
from waggle.signals.events import PullSource
from waggle.signals.matching import directory_version
from waggle.signals.models import SignalSource
from waggle.signals.sync import SyncResult, is_due, sync_source

logger = logging.getLogger(__name__)

CRM_SOURCE = "crm"
PULL_CONNECTORS = ("email",)
Job = Callable[[sessionmaker[Session]], Any]


def ensure_crm_source(session: Session) -> SignalSource:
    """Return the built-in ``crm`` source, creating it on first use."""
    source = session.scalar(select(SignalSource).where(SignalSource.name == CRM_SOURCE))
    if source is None:
        source = SignalSource(name=CRM_SOURCE, connector=CRM_SOURCE, config={})
        session.add(source)
        session.flush()
    return source


def sync_crm_changes(sessions: sessionmaker[Session]) -> SyncResult:
    """Pass the CRM's new stage changes and activities into the event stream."""
    actor = system_actor("signals-crm")
    with transaction(sessions) as session:
        ensure_crm_source(session)
        pipeline = service.build_pipeline(session, CRM_SOURCE, source_name=CRM_SOURCE)
    return sync_source(
        sessions,
        actor,
        CRM_SOURCE,
        pull=CrmChangeSource(sessions),
        pipeline=pipeline,
        limit=2000,
    )


def sync_pull_sources(sessions: sessionmaker[Session]) -> list[SyncResult]:
    """Sync every enabled, due pull source once."""
    actor = system_actor("signals-pull")
    with sessions() as session:
        due = [
            source.name
            for source in session.scalars(
                select(SignalSource).where(SignalSource.connector.in_(PULL_CONNECTORS))
            )
            if is_due(source, now())
        ]
    results = []
    for name in due:
        with transaction(sessions) as session:
            source = service.source_named(session, name)
            pipeline = service.build_pipeline(
                session, source.connector, source_name=name
            )
            pull = pull_source_for(source.connector, source.config)
        results.append(sync_source(sessions, actor, name, pull=pull, pipeline=pipeline))
    return results


def pull_source_for(connector: str, config: dict[str, Any]) -> PullSource:
    """Build the pull side of ``connector`` from a source's settings.

    Raises:
        InvalidInput: the connector has no pull side or the settings are bad.
    """
    if connector == "email":
        from waggle.signals.connectors.imap import ImapSource

        pull = config.get(service.PULL_SETTINGS)
        if not isinstance(pull, dict):
            raise InvalidInput(
                "an email source keeps its IMAP settings (host, port, username, "
                "password, mailboxes) under 'pull'"
            )
        return ImapSource(pull)
    raise InvalidInput(f"connector {connector!r} has no pull side")


def rematch_job() -> Job:
    """Return the job that rematches waiting events when the directory changed."""
    seen: dict[str, object] = {}

    def run(sessions: sessionmaker[Session]) -> object:
        with transaction(sessions) as session:
            version = directory_version(session)
            if seen.get("version") == version:
                return None
            result = service.rematch_events(session, system_actor("signals-rematch"))
            seen["version"] = version
            return result

    return run


__all__ = [
    "ensure_crm_source",
    "pull_source_for",
    "rematch_job",
    "sync_crm_changes",
    "sync_pull_sources",
]
