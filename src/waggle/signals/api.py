"""HTTP routes of the signals context: push, callbacks, status, quarantine, events.

Pushes and callbacks run the pipeline with the application's session factory,
one committed transaction per chunk, like the CLI; everything else uses the
request's session.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session, sessionmaker

from waggle.apikit import ActorDep, SessionDep
from waggle.core.actor import Actor, system_actor
from waggle.core.clock import now
from waggle.core.db import transaction
from waggle.core.errors import InvalidInput, NotFound
from waggle.signals import service
from waggle.signals.events import RawRecord
from waggle.signals.ingest import BatchReport, ingest_batch, replay_quarantined
from waggle.signals.schemas import (
    BatchRead,
    BatchReportRead,
    ConnectorStatusRead,
    CoverageRowRead,
    DiscardRequest,
    EventPage,
    EventRead,
    HeatMapRead,
    LinkCreate,
    LinkRead,
    PushRecords,
    QuarantineRead,
    RematchRead,
    ReplayRequest,
    SourceCreate,
    SourceRead,
)

TAG = "signals"
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
CALLBACK_PLATFORMS = {
    "wecom_callback": "wecom",
    "dingtalk_callback": "dingtalk",
    "feishu_events": "feishu",
}


def routers() -> list[APIRouter]:
    routes = APIRouter(prefix="/api/v1/signals", tags=[TAG])
    _ingestion_routes(routes)
    _status_routes(routes)
    _quarantine_routes(routes)
    _event_routes(routes)
    _link_routes(routes)
    _report_routes(routes)
    return [routes, _callback_router()]


def _sessions(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    return factory


def _ingestion_routes(routes: APIRouter) -> None:
    @routes.post("/{connector}/records", response_model=BatchReportRead)
    def push(
        connector: str, body: PushRecords, request: Request, actor: ActorDep
    ) -> Any:
        """Push raw records to a connector; the answer reconciles the batch."""
        sessions = _sessions(request)
        with transaction(sessions) as session:
            pipeline = service.build_pipeline(
                session, connector, source_name=body.source_name
            )
        records = [
            RawRecord(_payload(item), f"push item {number}")
            for number, item in enumerate(body.records, start=1)
        ]
        report = ingest_batch(sessions, actor, pipeline, records, label="api push")
        return report.as_dict()


def _payload(item: Any) -> bytes:
    if isinstance(item, str):
        return item.encode("utf-8")
    return json.dumps(item, ensure_ascii=False).encode("utf-8")


def _status_routes(routes: APIRouter) -> None:
    @routes.get("/status", response_model=list[ConnectorStatusRead])
    def status(session: SessionDep, actor: ActorDep) -> Any:
        """Sync status per connector: last success, lag, errors, open quarantine."""
        return service.sync_status(session, actor)

    @routes.get("/sources", response_model=list[SourceRead])
    def sources(session: SessionDep, actor: ActorDep) -> Any:
        """Configured sources with their cursor and sync state (no secrets)."""
        return service.list_sources(session, actor)

    @routes.post("/sources", response_model=SourceRead, status_code=201)
    def create_source(body: SourceCreate, session: SessionDep, actor: ActorDep) -> Any:
        """Configure a source; the connector checks the settings first."""
        return service.create_source(
            session, actor, name=body.name, connector=body.connector, config=body.config
        )

    @routes.get("/batches", response_model=list[BatchRead])
    def batches(
        session: SessionDep,
        actor: ActorDep,
        connector: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Any:
        """Recent batches, newest first, each with counts that reconcile."""
        return service.list_batches(session, actor, connector=connector, limit=limit)


def _quarantine_routes(routes: APIRouter) -> None:
    @routes.get("/quarantine", response_model=list[QuarantineRead])
    def quarantine(
        session: SessionDep,
        actor: ActorDep,
        status: str | None = "open",
        connector: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        """Quarantined records with their reason (``status=all`` for every one)."""
        wanted = None if status == "all" else status
        return service.list_quarantine(
            session, actor, status=wanted, connector=connector, limit=limit
        )

    @routes.get("/quarantine/{entry_id}/raw")
    def raw(entry_id: int, session: SessionDep, actor: ActorDep) -> Response:
        """The record's bytes exactly as they arrived."""
        payload = service.raw_payload(session, actor, entry_id)
        return Response(payload, media_type="application/octet-stream")

    @routes.post("/quarantine/replay", response_model=list[BatchReportRead])
    def replay(body: ReplayRequest, request: Request, actor: ActorDep) -> Any:
        """Parse quarantined records again after a fix; one batch per connector."""
        reports = replay_open_entries(
            _sessions(request), actor, ids=body.ids, config=body.config
        )
        return [report.as_dict() for report in reports]

    @routes.post("/quarantine/{entry_id}/discard", response_model=QuarantineRead)
    def discard(
        entry_id: int, body: DiscardRequest, session: SessionDep, actor: ActorDep
    ) -> Any:
        """Close an entry that will never be replayed; its bytes are kept."""
        return service.discard_quarantined(session, actor, entry_id, reason=body.reason)


def replay_open_entries(
    sessions: sessionmaker[Session],
    actor: Actor,
    *,
    ids: list[int] | None,
    config: dict[str, Any],
) -> list[BatchReport]:
    """Replay the open quarantine entries (all, or those in ``ids``).

    Raises:
        PolicyDenied: the actor may not replay.
    """
    with transaction(sessions) as session:
        groups = service.open_quarantine_groups(session, actor)
        pipelines = {
            key: service.build_pipeline(
                session, key[0], source_name=key[1], config=config
            )
            for key in groups
        }
    wanted = set(ids) if ids is not None else None
    reports = []
    for key, entry_ids in groups.items():
        chosen = [i for i in entry_ids if wanted is None or i in wanted]
        if chosen:
            reports.append(replay_quarantined(sessions, actor, pipelines[key], chosen))
    return reports


def _event_routes(routes: APIRouter) -> None:
    @routes.get("/events", response_model=EventPage)
    def events(
        session: SessionDep,
        actor: ActorDep,
        opportunity_id: int | None = None,
        account_id: int | None = None,
        actor_id: int | None = None,
        event_type: str | None = None,
        match_status: str | None = None,
        before_id: int | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Any:
        """Events the caller may see, newest first; page on with ``before_id``."""
        found = service.list_events(
            session,
            actor,
            opportunity_id=opportunity_id,
            account_id=account_id,
            actor_id=actor_id,
            event_type=event_type,
            match_status=match_status,
            before_id=before_id,
            limit=limit,
        )
        items = [EventRead.model_validate(event) for event in found]
        last = min((item.id for item in items), default=None)
        return EventPage(
            items=items, next_before_id=last if len(items) == limit else None
        )

    @routes.get("/events/{event_id}", response_model=EventRead)
    def event(event_id: int, session: SessionDep, actor: ActorDep) -> Any:
        """One event with its match and its link to the raw record."""
        return service.get_event(session, actor, event_id)

    @routes.post("/rematch", response_model=RematchRead)
    def rematch(session: SessionDep, actor: ActorDep) -> Any:
        """Match unmatched and partial events again with today's directory."""
        return service.rematch_events(session, actor)


def _link_routes(routes: APIRouter) -> None:
    @routes.get("/links", response_model=list[LinkRead])
    def links(session: SessionDep, actor: ActorDep) -> Any:
        """Platform identities tied to employees, contacts, accounts or deals."""
        return service.list_links(session, actor)

    @routes.post("/links", response_model=LinkRead, status_code=201)
    def create_link(body: LinkCreate, session: SessionDep, actor: ActorDep) -> Any:
        """Tie an identity; waiting events are matched again right away."""
        link = service.create_link(session, actor, **body.model_dump())
        service.rematch_events(session, actor)
        return link

    @routes.delete("/links/{link_id}", status_code=204)
    def delete_link(link_id: int, session: SessionDep, actor: ActorDep) -> Response:
        """Remove a link; events it matched keep their match."""
        service.delete_link(session, actor, link_id)
        return Response(status_code=204)


def _report_routes(routes: APIRouter) -> None:
    @routes.get("/coverage", response_model=list[CoverageRowRead])
    def coverage(
        session: SessionDep,
        actor: ActorDep,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        employee_id: int | None = None,
    ) -> Any:
        """Per rep and ISO week: interactions captured versus logged by hand."""
        end = until or now()
        rows = service.coverage_report(
            session,
            actor,
            since=since or end - dt.timedelta(weeks=12),
            until=end,
            employee_id=employee_id,
        )
        return [
            CoverageRowRead(
                employee_id=row.employee_id,
                week=row.week,
                automatic=row.automatic,
                manual=row.manual,
                automatic_total=row.automatic_total,
                manual_total=row.manual_total,
                captured_share=row.captured_share,
            )
            for row in rows
        ]

    @routes.get("/heatmap/{employee_id}", response_model=HeatMapRead)
    def heat_map(
        employee_id: int,
        session: SessionDep,
        actor: ActorDep,
        weeks: Annotated[int, Query(ge=1, le=104)] = 12,
    ) -> Any:
        """Calls of one rep by weekday and hour (China time)."""
        counts = service.call_heat_map_of(
            session, actor, employee_id=employee_id, weeks=weeks
        )
        return HeatMapRead(
            employee_id=employee_id,
            timezone=str(service.REPORT_ZONE),
            weekdays=WEEKDAYS,
            counts=counts,
            total=sum(map(sum, counts)),
        )


def _callback_router() -> APIRouter:
    routes = APIRouter(prefix="/api/v1/signals/callbacks", tags=[TAG])

    @routes.get("/{source_name}")
    def verify_callback_url(source_name: str, request: Request) -> Response:
        """The URL check a platform makes when the callback is configured."""
        return handle_callback(
            request, source_name, b"", query=dict(request.query_params)
        )

    @routes.post("/{source_name}")
    async def callback(source_name: str, request: Request) -> Response:
        """The endpoint a platform calls; the signature is its credential."""
        body = await request.body()
        return handle_callback(
            request, source_name, body, query=dict(request.query_params)
        )

    return routes


def handle_callback(
    request: Request, source_name: str, body: bytes, *, query: dict[str, str]
) -> Response:
    """Verify and decrypt one platform callback, ingest it, answer the platform.

    Raises:
        NotFound: no callback source has that name.
        CallbackRejected: the signature, timestamp or ciphertext is wrong.
    """
    from waggle.signals import callbacks

    sessions = _sessions(request)
    with transaction(sessions) as session:
        source = service.source_named(session, source_name)
    platform = CALLBACK_PLATFORMS.get(source.connector)
    if platform is None:
        raise NotFound(f"source {source_name!r} does not take callbacks")
    crypto = _crypto(request, callbacks, platform, source.config, source_name)
    outcome = _outcome(callbacks, platform, crypto, request, query, body)
    if outcome.records:
        actor = system_actor(f"callback:{source_name}")
        with transaction(sessions) as session:
            pipeline = service.build_pipeline(
                session, source.connector, source_name=source_name
            )
        ingest_batch(sessions, actor, pipeline, outcome.records, label="callback")
    return Response(
        outcome.reply, status_code=outcome.status, media_type=outcome.content_type
    )


def _outcome(
    callbacks: Any,
    platform: str,
    crypto: Any,
    request: Request,
    query: dict[str, str],
    body: bytes,
) -> Any:
    if platform == "wecom":
        return callbacks.handle_wecom(
            crypto, method=request.method, query=query, body=body
        )
    if platform == "dingtalk":
        return callbacks.handle_dingtalk(
            crypto, method=request.method, query=query, body=body
        )
    if platform == "feishu":
        headers = {key.lower(): value for key, value in request.headers.items()}
        return callbacks.handle_feishu(
            crypto, method=request.method, headers=headers, body=body
        )
    raise InvalidInput(f"unknown callback platform {platform!r}")


def _crypto(
    request: Request,
    callbacks: Any,
    platform: str,
    config: dict[str, Any],
    source_name: str,
) -> Any:
    # One crypto object per source and settings, kept by the application, so
    # its replay guard remembers the nonces it has seen across requests.
    state = request.app.state
    if not hasattr(state, "callback_crypto"):
        state.callback_crypto = {}
    cache: dict[tuple[str, str], Any] = state.callback_crypto
    key = (source_name, json.dumps(config, sort_keys=True, default=str))
    if key not in cache:
        cache[key] = callbacks.callback_crypto_from_config(platform, config)
    return cache[key]
