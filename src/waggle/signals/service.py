"""Signals services: sources, pipelines, quarantine, events, links, reports.

Every function checks the policy and leaves its audit row in the caller's
transaction, as the rest of Waggle does; ingestion itself lives in
:mod:`waggle.signals.ingest`, which commits chunk by chunk.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.errors import Conflict, InvalidInput, NotFound
from waggle.crm.models import Account
from waggle.governance import authorize, record_audit, row_filter
from waggle.governance.guard import ensure_in_scope
from waggle.governance.masking import mask_records
from waggle.signals.connectors import build_connector, connector_names
from waggle.signals.events import EventType
from waggle.signals.ingest import RESOURCE as EVENTS
from waggle.signals.ingest import Pipeline
from waggle.signals.matching import Matcher, load_directory
from waggle.signals.models import (
    BehaviourEvent,
    IdentityLink,
    IngestBatch,
    MatchStatus,
    QuarantinedRecord,
    QuarantineStatus,
    SignalSource,
)
from waggle.signals.models import RawRecord as RawRow
from waggle.signals.trackers import default_engine

logger = logging.getLogger(__name__)

SOURCES = "signal_sources"
PULL_SETTINGS = "pull"
QUARANTINE = "signal_quarantine"
LINKS = "identity_links"
LINK_PLATFORMS = (
    "wecom",
    "dingtalk",
    "feishu",
    "wechat",
    "wecom_room",
    "dingtalk_room",
    "feishu_room",
)
REPORT_ZONE = ZoneInfo("Asia/Shanghai")
# Interactions with a customer, the unit of the coverage report; tracker hits,
# stage changes and field updates are derived facts, not interactions.
INTERACTION_TYPES = frozenset(
    {
        EventType.CHAT_MESSAGE,
        EventType.CALL,
        EventType.EMAIL_SENT,
        EventType.EMAIL_RECEIVED,
        EventType.MEETING_HELD,
        EventType.FIELD_VISIT,
        EventType.MATERIAL_OPENED,
        EventType.QUOTE_SENT,
        EventType.TRIAL_STARTED,
        EventType.ACTIVITY_LOGGED,
    }
)


def build_pipeline(
    session: Session,
    connector: str,
    *,
    source_name: str | None = None,
    config: Mapping[str, Any] | None = None,
    with_trackers: bool = True,
) -> Pipeline:
    """Return the pipeline of ``connector`` with its source's stored settings.

    ``config`` overrides the stored settings key by key. GPS visits get the
    accounts' coordinates as their geofence sites unless ``sites`` is given.

    Raises:
        NotFound: ``source_name`` names no source.
        InvalidInput: the connector is unknown or its settings are bad.
    """
    settings: dict[str, Any] = {}
    if source_name is not None:
        source = _source(session, source_name)
        if source.connector != connector:
            raise InvalidInput(
                f"source {source_name!r} uses connector {source.connector!r}, "
                f"not {connector!r}"
            )
        settings.update(source.config)
    settings.update(config or {})
    # A pull source keeps its server settings under "pull" (an IMAP mailbox's
    # host and login); they are for the fetching side, not the parser.
    settings.pop(PULL_SETTINGS, None)
    if connector == "gps" and "sites" not in settings:
        settings["sites"] = account_sites(session)
    return Pipeline(
        build_connector(connector, settings),
        trackers=default_engine() if with_trackers else None,
        source_name=source_name,
    )


def account_sites(session: Session) -> list[dict[str, Any]]:
    """Return every located account as a geofence site for visit detection."""
    rows = session.execute(
        select(Account.external_id, Account.latitude, Account.longitude).where(
            Account.latitude.is_not(None),
            Account.longitude.is_not(None),
            Account.merged_into_id.is_(None),
        )
    )
    return [
        {"account_ref": f"account:{external_id}", "lat": lat, "lon": lon}
        for external_id, lat, lon in rows
    ]


def create_source(
    session: Session,
    actor: Actor,
    *,
    name: str,
    connector: str,
    config: Mapping[str, Any],
) -> SignalSource:
    """Register a configured source; its settings are checked by the connector.

    Raises:
        PolicyDenied: the actor may not configure sources.
        InvalidInput: unknown connector or bad settings.
        Conflict: a source of that name exists.
    """
    authorize(session, actor, "create", SOURCES)
    if connector not in connector_names():
        build_connector(connector)  # raises the error that lists the names
    parser_settings = {k: v for k, v in config.items() if k != PULL_SETTINGS}
    build_connector(connector, {**parser_settings, **_probe_defaults(connector)})
    if session.scalar(select(SignalSource.id).where(SignalSource.name == name)):
        raise Conflict(f"signal source {name!r} already exists", source=name)
    source = SignalSource(name=name, connector=connector, config=dict(config))
    session.add(source)
    session.flush()
    record_audit(
        session, actor, action="create", resource=SOURCES, record_ids=[source.id]
    )
    return source


def _probe_defaults(connector: str) -> dict[str, Any]:
    # Visit detection is checked with an empty site list when none is stored.
    return {"sites": []} if connector == "gps" else {}


def list_sources(session: Session, actor: Actor) -> list[SignalSource]:
    """Return every configured source with its sync state.

    Raises:
        PolicyDenied: the actor may not read sources.
    """
    authorize(session, actor, "read", SOURCES)
    sources = list(session.scalars(select(SignalSource).order_by(SignalSource.name)))
    record_audit(
        session,
        actor,
        action="read",
        resource=SOURCES,
        record_ids=[source.id for source in sources],
    )
    return sources


@dataclass(frozen=True)
class ConnectorStatus:
    """Sync status of one connector, over its sources and its batches."""

    connector: str
    sources: list[str]
    last_success_at: dt.datetime | None
    last_batch_at: dt.datetime | None
    lag_seconds: int | None
    received: int
    quarantined_open: int
    error_count: int
    last_error: str | None
    last_error_at: dt.datetime | None


def sync_status(session: Session, actor: Actor) -> list[ConnectorStatus]:
    """Return the sync status of every connector that has sources or batches.

    Lag is the time since the newest event a connector delivered.

    Raises:
        PolicyDenied: the actor may not read sources.
    """
    authorize(session, actor, "read", SOURCES)
    sources = list(session.scalars(select(SignalSource)))
    batches = _batch_totals(session)
    quarantined = dict(
        session.execute(
            select(QuarantinedRecord.connector, func.count())
            .where(QuarantinedRecord.status == QuarantineStatus.OPEN)
            .group_by(QuarantinedRecord.connector)
        ).all()
    )
    newest = _newest_by_connector(session)
    names = sorted({s.connector for s in sources} | set(batches) | set(quarantined))
    statuses = [
        _status_of(name, sources, batches, quarantined, newest) for name in names
    ]
    record_audit(session, actor, action="read", resource=SOURCES, record_ids=names)
    return statuses


def _batch_totals(session: Session) -> dict[str, tuple[int, dt.datetime | None]]:
    rows = session.execute(
        select(
            IngestBatch.connector,
            func.sum(IngestBatch.received),
            func.max(IngestBatch.finished_at),
        ).group_by(IngestBatch.connector)
    )
    return {name: (int(total or 0), finished) for name, total, finished in rows}


def _newest_by_connector(session: Session) -> dict[str, dt.datetime]:
    rows = session.execute(
        select(IngestBatch.connector, func.max(BehaviourEvent.occurred_at))
        .join(IngestBatch, IngestBatch.id == BehaviourEvent.batch_id)
        .group_by(IngestBatch.connector)
    )
    return {name: newest for name, newest in rows if newest is not None}


def _status_of(
    name: str,
    sources: list[SignalSource],
    batches: dict[str, tuple[int, dt.datetime | None]],
    quarantined: dict[str, int],
    newest: dict[str, dt.datetime],
) -> ConnectorStatus:
    mine = [source for source in sources if source.connector == name]
    received, last_batch = batches.get(name, (0, None))
    successes = [s.last_success_at for s in mine if s.last_success_at] + (
        [last_batch] if last_batch else []
    )
    errors = [s for s in mine if s.last_error_at is not None]
    latest_error = max(errors, key=lambda s: s.last_error_at or now(), default=None)
    newest_at = newest.get(name)
    return ConnectorStatus(
        connector=name,
        sources=[source.name for source in mine],
        last_success_at=max(successes, default=None),
        last_batch_at=last_batch,
        lag_seconds=int((now() - newest_at).total_seconds()) if newest_at else None,
        received=received,
        quarantined_open=quarantined.get(name, 0),
        error_count=sum(source.error_count for source in mine),
        last_error=latest_error.last_error if latest_error else None,
        last_error_at=latest_error.last_error_at if latest_error else None,
    )


def list_batches(
    session: Session, actor: Actor, *, connector: str | None = None, limit: int = 50
) -> list[IngestBatch]:
    """Return the most recent batches, newest first.

    Raises:
        PolicyDenied: the actor may not read sources.
    """
    authorize(session, actor, "read", SOURCES)
    query = select(IngestBatch).order_by(IngestBatch.id.desc()).limit(limit)
    if connector is not None:
        query = query.where(IngestBatch.connector == connector)
    batches = list(session.scalars(query))
    record_audit(
        session,
        actor,
        action="read",
        resource=SOURCES,
        record_ids=[f"batch:{batch.id}" for batch in batches],
    )
    return batches


def list_quarantine(
    session: Session,
    actor: Actor,
    *,
    status: str | None = QuarantineStatus.OPEN,
    connector: str | None = None,
    limit: int = 100,
) -> list[QuarantinedRecord]:
    """Return quarantined records, oldest first.

    Raises:
        PolicyDenied: the actor may not read the quarantine.
    """
    authorize(session, actor, "read", QUARANTINE)
    query = select(QuarantinedRecord).order_by(QuarantinedRecord.id).limit(limit)
    if status is not None:
        query = query.where(QuarantinedRecord.status == status)
    if connector is not None:
        query = query.where(QuarantinedRecord.connector == connector)
    entries = list(session.scalars(query))
    record_audit(
        session,
        actor,
        action="read",
        resource=QUARANTINE,
        record_ids=[entry.id for entry in entries],
    )
    return entries


def raw_payload(session: Session, actor: Actor, quarantine_id: int) -> bytes:
    """Return the raw bytes of one quarantined record.

    Raises:
        PolicyDenied: the actor may not read the quarantine.
        NotFound: no such entry.
    """
    authorize(session, actor, "read", QUARANTINE)
    entry = session.get(QuarantinedRecord, quarantine_id)
    if entry is None:
        raise NotFound(f"quarantine entry {quarantine_id} does not exist")
    record_audit(
        session, actor, action="read", resource=QUARANTINE, record_ids=[entry.id]
    )
    return session.get_one(RawRow, entry.raw_id).payload


def open_quarantine_groups(
    session: Session, actor: Actor
) -> dict[tuple[str, str | None], list[int]]:
    """Return the open quarantine ids grouped by (connector, source name).

    Raises:
        PolicyDenied: the actor may not update the quarantine.
    """
    authorize(session, actor, "update", QUARANTINE)
    rows = session.execute(
        select(
            QuarantinedRecord.connector,
            QuarantinedRecord.source_name,
            QuarantinedRecord.id,
        )
        .where(QuarantinedRecord.status == QuarantineStatus.OPEN)
        .order_by(QuarantinedRecord.id)
    )
    groups: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for connector, source_name, entry_id in rows:
        groups[(connector, source_name)].append(entry_id)
    return dict(groups)


def discard_quarantined(
    session: Session, actor: Actor, quarantine_id: int, *, reason: str
) -> QuarantinedRecord:
    """Close a quarantine entry that will never be replayed; its raw bytes stay.

    Raises:
        PolicyDenied: the actor may not update the quarantine.
        NotFound: no such entry.
        Conflict: the entry is no longer open.
    """
    authorize(session, actor, "update", QUARANTINE)
    entry = session.get(QuarantinedRecord, quarantine_id)
    if entry is None:
        raise NotFound(f"quarantine entry {quarantine_id} does not exist")
    if entry.status != QuarantineStatus.OPEN:
        raise Conflict(f"quarantine entry {quarantine_id} is {entry.status}")
    entry.status = QuarantineStatus.DISCARDED
    entry.resolved_at = now()
    record_audit(
        session,
        actor,
        action="update",
        resource=QUARANTINE,
        record_ids=[entry.id],
        detail=f"discarded: {reason}"[:500],
    )
    return entry


def list_events(
    session: Session,
    actor: Actor,
    *,
    opportunity_id: int | None = None,
    account_id: int | None = None,
    actor_id: int | None = None,
    event_type: str | None = None,
    match_status: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[BehaviourEvent]:
    """Return events the actor may see, newest first.

    Raises:
        PolicyDenied: the actor may not read events.
    """
    scope = authorize(session, actor, "read", EVENTS)
    query = (
        select(BehaviourEvent)
        .where(row_filter(session, actor, scope, BehaviourEvent.actor_id))
        .order_by(BehaviourEvent.occurred_at.desc(), BehaviourEvent.id.desc())
        .limit(min(limit, 500))
    )
    for column, value in (
        (BehaviourEvent.opportunity_id, opportunity_id),
        (BehaviourEvent.account_id, account_id),
        (BehaviourEvent.actor_id, actor_id),
        (BehaviourEvent.event_type, event_type),
        (BehaviourEvent.match_status, match_status),
    ):
        if value is not None:
            query = query.where(column == value)
    if before_id is not None:
        query = query.where(BehaviourEvent.id < before_id)
    found = list(session.scalars(query))
    events, detail = mask_records(session, actor, found, owner_column="actor_id")
    record_audit(
        session,
        actor,
        action="read",
        resource=EVENTS,
        record_ids=[event.id for event in events],
        detail=detail,
    )
    return events


def get_event(session: Session, actor: Actor, event_id: int) -> BehaviourEvent:
    """Return one event the actor may see.

    Raises:
        NotFound: no such event.
        PolicyDenied: it lies outside the actor's scope.
    """
    scope = authorize(session, actor, "read", EVENTS)
    event = session.get(BehaviourEvent, event_id)
    if event is None:
        raise NotFound(f"behaviour event {event_id} does not exist")
    ensure_in_scope(
        session,
        actor,
        scope,
        owner_id=event.actor_id,
        action="read",
        resource=EVENTS,
        record_id=event_id,
    )
    (shown,), detail = mask_records(session, actor, [event], owner_column="actor_id")
    record_audit(
        session,
        actor,
        action="read",
        resource=EVENTS,
        record_ids=[event_id],
        detail=detail,
    )
    return shown


def create_link(
    session: Session,
    actor: Actor,
    *,
    platform: str,
    external_id: str,
    employee_id: int | None = None,
    contact_id: int | None = None,
    account_id: int | None = None,
    opportunity_id: int | None = None,
) -> IdentityLink:
    """Tie a platform identity to an employee or contact, or a room to a deal.

    Raises:
        PolicyDenied: the actor may not edit identity links.
        InvalidInput: unknown platform, or not exactly one person / a room target.
        Conflict: that identity is linked already.
    """
    authorize(session, actor, "create", LINKS)
    _check_link_target(
        platform,
        people=(employee_id, contact_id),
        records=(account_id, opportunity_id),
    )
    link = IdentityLink(
        platform=platform,
        external_id=external_id.strip(),
        employee_id=employee_id,
        contact_id=contact_id,
        account_id=account_id,
        opportunity_id=opportunity_id,
    )
    session.add(link)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"identity {platform}:{external_id} is already linked, or a target "
            "record does not exist",
            platform=platform,
        ) from exc
    record_audit(session, actor, action="create", resource=LINKS, record_ids=[link.id])
    return link


def _check_link_target(
    platform: str,
    *,
    people: tuple[int | None, int | None],
    records: tuple[int | None, int | None],
) -> None:
    if platform not in LINK_PLATFORMS:
        raise InvalidInput(
            f"identity link platform {platform!r}: expected one of "
            f"{', '.join(LINK_PLATFORMS)}",
            field="platform",
        )
    is_room = platform.endswith("_room")
    named_people = sum(value is not None for value in people)
    named_records = sum(value is not None for value in records)
    if is_room and (named_people or not named_records):
        raise InvalidInput(
            f"a {platform} link names an account_id or an opportunity_id, not a person",
            field="account_id",
        )
    if not is_room and (named_people != 1 or named_records):
        raise InvalidInput(
            f"a {platform} link names exactly one of employee_id or contact_id",
            field="employee_id",
        )


def list_links(session: Session, actor: Actor) -> list[IdentityLink]:
    """Return every identity link.

    Raises:
        PolicyDenied: the actor may not read identity links.
    """
    authorize(session, actor, "read", LINKS)
    links = list(session.scalars(select(IdentityLink).order_by(IdentityLink.id)))
    record_audit(
        session,
        actor,
        action="read",
        resource=LINKS,
        record_ids=[link.id for link in links],
    )
    return links


def delete_link(session: Session, actor: Actor, link_id: int) -> None:
    """Remove an identity link; events matched through it keep their match.

    Raises:
        PolicyDenied: the actor may not edit identity links.
        NotFound: no such link.
    """
    authorize(session, actor, "delete", LINKS)
    link = session.get(IdentityLink, link_id)
    if link is None:
        raise NotFound(f"identity link {link_id} does not exist")
    session.delete(link)
    record_audit(session, actor, action="delete", resource=LINKS, record_ids=[link_id])


@dataclass(frozen=True)
class RematchResult:
    examined: int
    improved: int
    still_unmatched: int
    still_partial: int


def rematch_events(
    session: Session, actor: Actor, *, chunk_size: int = 2000
) -> RematchResult:
    """Match again every event that is not fully matched, with today's directory.

    An event only ever gains links here: a reference that resolves now fills
    what was empty; nothing already matched is taken away.

    Raises:
        PolicyDenied: the actor may not update events.
    """
    authorize(session, actor, "update", EVENTS)
    matcher = Matcher(load_directory(session))
    examined = improved = 0
    last_id = 0
    changed: list[int] = []
    while True:
        events = list(
            session.scalars(
                select(BehaviourEvent)
                .where(
                    BehaviourEvent.match_status != MatchStatus.MATCHED,
                    BehaviourEvent.id > last_id,
                )
                .order_by(BehaviourEvent.id)
                .limit(chunk_size)
            )
        )
        if not events:
            break
        last_id = events[-1].id
        for event in events:
            examined += 1
            if _rematch_one(matcher, event):
                improved += 1
                changed.append(event.id)
        session.flush()
    counts = Counter(
        session.scalars(
            select(BehaviourEvent.match_status).where(
                BehaviourEvent.match_status != MatchStatus.MATCHED
            )
        )
    )
    record_audit(
        session,
        actor,
        action="update",
        resource=EVENTS,
        record_ids=changed[:1000],
        detail=f"rematched {examined} events, {improved} improved",
    )
    return RematchResult(
        examined=examined,
        improved=improved,
        still_unmatched=counts.get(MatchStatus.UNMATCHED, 0),
        still_partial=counts.get(MatchStatus.PARTIAL, 0),
    )


def _rematch_one(matcher: Matcher, event: BehaviourEvent) -> bool:
    found = matcher.match(
        sender=event.sender_ref,
        recipients=list(event.recipient_refs or []),
        account_ref=event.account_ref,
        opportunity_ref=event.opportunity_ref,
        thread_ref=event.thread_ref,
        occurred_at=event.occurred_at,
    )
    before = (event.actor_id, event.contact_id, event.account_id, event.opportunity_id)
    event.actor_id = event.actor_id or found.actor_id
    event.contact_id = event.contact_id or found.contact_id
    event.account_id = event.account_id or found.account_id
    event.opportunity_id = event.opportunity_id or found.opportunity_id
    event.speaker = event.speaker or found.speaker
    after = (event.actor_id, event.contact_id, event.account_id, event.opportunity_id)
    if after == before:
        return False
    event.match_status = _status_after(event)
    event.match_note = None if event.match_status == MatchStatus.MATCHED else found.note
    return True


def _status_after(event: BehaviourEvent) -> str:
    if event.actor_id is None:
        return MatchStatus.UNMATCHED
    if event.account_id is None:
        return MatchStatus.PARTIAL
    return MatchStatus.MATCHED


@dataclass(frozen=True)
class CoverageRow:
    """One rep's interactions in one ISO week, captured versus logged by hand."""

    employee_id: int
    week: str  # ISO week, e.g. 2026-W09
    automatic: dict[str, int]
    manual: dict[str, int]

    @property
    def automatic_total(self) -> int:
        return sum(self.automatic.values())

    @property
    def manual_total(self) -> int:
        return sum(self.manual.values())

    @property
    def captured_share(self) -> float | None:
        total = self.automatic_total + self.manual_total
        return self.automatic_total / total if total else None


def coverage_report(
    session: Session,
    actor: Actor,
    *,
    since: dt.datetime,
    until: dt.datetime,
    employee_id: int | None = None,
) -> list[CoverageRow]:
    """Count interactions per rep and week by channel, automatic versus manual.

    Manual interactions are the activities logged in the CRM (which reach
    the stream through the ``crm`` source) and any other event marked as not
    automatic; automatic ones are what connectors captured.

    Raises:
        PolicyDenied: the actor may not read events.
    """
    scope = authorize(session, actor, "read", EVENTS)
    counts: dict[tuple[int, str], dict[str, Counter[str]]] = defaultdict(
        lambda: {"automatic": Counter(), "manual": Counter()}
    )
    for owner, occurred, channel, automatic in _interaction_rows(
        session, actor, scope, since, until, employee_id
    ):
        side = "automatic" if automatic else "manual"
        counts[(owner, _iso_week(occurred))][side][channel] += 1
    record_audit(
        session,
        actor,
        action="read",
        resource=EVENTS,
        detail=f"coverage report {since.date()}..{until.date()}",
    )
    return [
        CoverageRow(owner, week, dict(sides["automatic"]), dict(sides["manual"]))
        for (owner, week), sides in sorted(counts.items())
    ]


def _interaction_rows(
    session: Session,
    actor: Actor,
    scope: str,
    since: dt.datetime,
    until: dt.datetime,
    employee_id: int | None,
) -> list[tuple[int, dt.datetime, str, bool]]:
    events = select(
        BehaviourEvent.actor_id,
        BehaviourEvent.occurred_at,
        BehaviourEvent.channel,
        BehaviourEvent.is_automatic,
    ).where(
        BehaviourEvent.actor_id.is_not(None),
        BehaviourEvent.event_type.in_(sorted(INTERACTION_TYPES)),
        BehaviourEvent.occurred_at >= since,
        BehaviourEvent.occurred_at < until,
        row_filter(session, actor, scope, BehaviourEvent.actor_id),
    )
    if employee_id is not None:
        events = events.where(BehaviourEvent.actor_id == employee_id)
    return [
        (owner, occurred, channel, bool(automatic))
        for owner, occurred, channel, automatic in session.execute(events)
        if owner is not None
    ]


def _iso_week(instant: dt.datetime) -> str:
    year, week, _ = instant.astimezone(REPORT_ZONE).isocalendar()
    return f"{year}-W{week:02d}"


def captured_share(
    session: Session, actor: Actor, *, since: dt.datetime, until: dt.datetime
) -> float | None:
    """Return the share of interactions captured automatically in the period."""
    rows = coverage_report(session, actor, since=since, until=until)
    automatic = sum(row.automatic_total for row in rows)
    total = automatic + sum(row.manual_total for row in rows)
    return automatic / total if total else None


def call_instants(
    session: Session, actor: Actor, *, employee_id: int, since: dt.datetime
) -> list[dt.datetime]:
    """Return when the employee's calls happened since ``since``.

    Raises:
        PolicyDenied: the employee lies outside the actor's scope.
    """
    scope = authorize(session, actor, "read", EVENTS)
    ensure_in_scope(
        session,
        actor,
        scope,
        owner_id=employee_id,
        action="read",
        resource=EVENTS,
        record_id=f"employee:{employee_id}",
    )
    instants = list(
        session.scalars(
            select(BehaviourEvent.occurred_at).where(
                BehaviourEvent.actor_id == employee_id,
                BehaviourEvent.event_type == EventType.CALL,
                BehaviourEvent.occurred_at >= since,
            )
        )
    )
    record_audit(
        session,
        actor,
        action="read",
        resource=EVENTS,
        record_ids=[f"employee:{employee_id}"],
        detail=f"call heat map, {len(instants)} calls",
    )
    return instants


def call_heat_map_of(
    session: Session, actor: Actor, *, employee_id: int, weeks: int
) -> list[list[int]]:
    """Return the employee's calls of the last ``weeks`` by weekday and hour.

    Raises:
        PolicyDenied: the employee lies outside the actor's scope.
    """
    from waggle.signals.connectors.calls import call_heat_map

    since = now() - dt.timedelta(weeks=weeks)
    instants = call_instants(session, actor, employee_id=employee_id, since=since)
    return call_heat_map(instants, timezone=str(REPORT_ZONE))


def source_named(session: Session, name: str) -> SignalSource:
    """Return the source ``name`` for internal plumbing (callbacks); no audit.

    Raises:
        NotFound: no such source.
    """
    return _source(session, name)


def _source(session: Session, name: str) -> SignalSource:
    source = session.scalar(select(SignalSource).where(SignalSource.name == name))
    if source is None:
        raise NotFound(f"signal source {name!r} does not exist", source=name)
    return source
