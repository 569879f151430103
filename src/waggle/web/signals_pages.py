"""Pages of the behaviour signals: sync status, quarantine, call heat map.

Every page calls the governed services of :mod:`waggle.signals.service` with
the page's actor, so a refusal is the standard refusal page (and is audited).
The events of one opportunity come as an HTMX fragment that the opportunity
page loads on its own (``GET /opportunities/{id}/signals``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.responses import HTMLResponse, Response

from waggle.apikit import SessionDep, status_for
from waggle.core.errors import InvalidInput, PolicyDenied, WaggleError
from waggle.crm.service import CONTACTS
from waggle.identity.orgchart import EMPLOYEES
from waggle.signals import service
from waggle.signals.api import replay_open_entries
from waggle.signals.connectors import connector_names
from waggle.signals.events import EventType
from waggle.signals.ingest import RESOURCE as EVENTS
from waggle.signals.ingest import BatchReport
from waggle.signals.models import BehaviourEvent, QuarantineStatus
from waggle.signals.trackers import default_engine
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
from waggle.web.queries import names_by_id, owner_choices
from waggle.web.rendering import SECURITY_HEADERS

RECENT_BATCHES = 20
QUARANTINE_PAGE = 200
QUARANTINE_FILTERS = ("open", "replayed", "discarded", "all")
OPPORTUNITY_EVENTS = 50
# Tracker hits are stored as child events of the message they were found in;
# the fragment shows them as badges on that message, so it reads a few more
# rows than it shows.
EVENTS_READ = 200
EXCERPT_CHARS = 160
HEAT_MAP_WEEKS = 12
MAX_HEAT_MAP_WEEKS = 104
WEEKDAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

router = APIRouter(include_in_schema=False)


@router.get("/signals")
def signals_status(page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show the sync status per connector and the most recent batches."""
    statuses = service.sync_status(session, page.actor)
    batches = service.list_batches(session, page.actor, limit=RECENT_BATCHES)
    return page.render("signals_status.html", statuses=statuses, batches=batches)


@dataclass(frozen=True)
class QuarantineFilter:
    """The quarantine page's filter as chosen (status ``all`` means any)."""

    connector: str
    status: str

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> QuarantineFilter:
        status = str(values.get("status") or "").strip()
        connector = str(values.get("connector") or "").strip()
        return cls(
            connector=connector if connector in connector_names() else "",
            status=status if status in QUARANTINE_FILTERS else "open",
        )

    def href(self, **extra: str | int) -> str:
        chosen = {"connector": self.connector, "status": self.status}
        query = {name: value for name, value in chosen.items() if value} | extra
        return f"/signals/quarantine?{urlencode(query)}"


@router.get("/signals/quarantine")
def signals_quarantine(page: PageDep, session: SessionDep) -> HTMLResponse:
    """List quarantined records by connector and status, with the raw bytes."""
    params = page.request.query_params
    return _quarantine_view(
        page,
        session,
        QuarantineFilter.of(params),
        notice=_replay_notice(page, params),
        raw_id=query_int(params, "raw"),
    )


@router.get("/signals/quarantine/{entry_id}/raw")
def quarantine_raw(entry_id: int, page: PageDep, session: SessionDep) -> Response:
    """Return one quarantined record's bytes as UTF-8 text (bad bytes replaced)."""
    payload = service.raw_payload(session, page.actor, entry_id)
    return Response(
        payload.decode("utf-8", errors="replace"),
        media_type="text/plain; charset=utf-8",
        headers=SECURITY_HEADERS,
    )


@router.post("/signals/quarantine/replay")
def replay_quarantine(
    page: FormPageDep, session: SessionDep, form: FormDep
) -> Response:
    """Replay the open entries (all, or the ticked ``ids``); show the counts.

    A refusal propagates to the standard refusal page.
    """
    chosen = QuarantineFilter.of(form)
    ids = [int(str(value)) for value in form.getlist("ids") if str(value).isdigit()]
    sessions: sessionmaker[Session] = page.request.app.state.sessions
    try:
        reports = replay_open_entries(sessions, page.actor, ids=ids or None, config={})
    except PolicyDenied:
        raise
    except WaggleError as error:
        abandon(session, page.actor, error)
        return _quarantine_view(
            page,
            session,
            chosen,
            error=describe_error(page.t, error),
            status_code=status_for(error),
        )
    return RedirectResponse(chosen.href(**_replay_counts(reports)), 303)


def _replay_counts(reports: list[BatchReport]) -> dict[str, str | int]:
    return {
        "done": "replayed",
        "batches": len(reports),
        "received": sum(report.received for report in reports),
        "accepted": sum(report.accepted for report in reports),
        "quarantined": sum(report.quarantined for report in reports),
        "duplicates": sum(report.duplicates for report in reports),
    }


def _replay_notice(page: PageContext, params: Mapping[str, str]) -> str | None:
    done = query_text(params, "done")
    if done == "discarded":
        return page.t("signals.discarded", id=query_int(params, "entry") or "—")
    if done != "replayed":
        return None
    counts = {
        name: query_int(params, name) or 0
        for name in ("batches", "received", "accepted", "quarantined", "duplicates")
    }
    return page.t("signals.replayed", **counts)


@router.post("/signals/quarantine/{entry_id}/discard")
def discard_quarantine(
    entry_id: int, page: FormPageDep, session: SessionDep, form: FormDep
) -> Response:
    """Discard one open entry with the reason typed; a refusal is shown inline."""
    chosen = QuarantineFilter.of(form)
    reason = str(form.get("reason") or "").strip()
    try:
        if not reason:
            raise InvalidInput(
                f"quarantine entry {entry_id}: reason is required to discard it",
                field="reason",
            )
        service.discard_quarantined(session, page.actor, entry_id, reason=reason)
    except PolicyDenied:
        raise
    except WaggleError as error:
        abandon(session, page.actor, error)
        return _quarantine_view(
            page,
            session,
            chosen,
            error=describe_error(page.t, error),
            status_code=status_for(error),
        )
    return RedirectResponse(chosen.href(done="discarded", entry=entry_id), 303)


def _quarantine_view(
    page: PageContext,
    session: Session,
    chosen: QuarantineFilter,
    *,
    notice: str | None = None,
    error: str | None = None,
    raw_id: int | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    entries = service.list_quarantine(
        session,
        page.actor,
        status=None if chosen.status == "all" else chosen.status,
        connector=chosen.connector or None,
        limit=QUARANTINE_PAGE,
    )
    raw_text = None
    if raw_id is not None:
        payload = service.raw_payload(session, page.actor, raw_id)
        raw_text = payload.decode("utf-8", errors="replace")
    return page.render(
        "signals_quarantine.html",
        status_code=status_code,
        entries=entries,
        chosen=chosen,
        connectors=connector_names(),
        statuses=QUARANTINE_FILTERS,
        open_status=QuarantineStatus.OPEN,
        may_update=page.may("update", service.QUARANTINE),
        raw_id=raw_id,
        raw_text=raw_text,
        notice=notice,
        error=error,
    )


@router.get("/signals/heatmap")
def signals_heat_map(page: PageDep, session: SessionDep) -> HTMLResponse:
    """Show one rep's calls by weekday and hour (China time), chart and table."""
    params = page.request.query_params
    choices = _employee_choices(session, page)
    employee_id = query_int(params, "employee_id") or page.actor.employee_id
    if employee_id is None and choices:
        employee_id = choices[0][0]
    weeks = query_int(params, "weeks") or HEAT_MAP_WEEKS
    weeks = min(max(weeks, 1), MAX_HEAT_MAP_WEEKS)
    counts: list[list[int]] | None = None
    if employee_id is not None:
        counts = service.call_heat_map_of(
            session, page.actor, employee_id=employee_id, weeks=weeks
        )
    return page.render(
        "signals_heatmap.html",
        choices=choices,
        employee_id=employee_id,
        weeks=weeks,
        counts=counts,
        weekdays=[page.t(f"signals.weekday.{key}") for key in WEEKDAY_KEYS],
        total=sum(map(sum, counts)) if counts else 0,
        peak=max(map(max, counts)) if counts else 0,
        chart=_heat_map_chart(page, counts) if counts else None,
    )


def _employee_choices(session: Session, page: PageContext) -> list[tuple[int, str]]:
    """Return the employees whose calls the actor may see (just self for a rep)."""
    choices = owner_choices(session, page.actor, EVENTS)
    own = page.actor.employee_id
    if own is not None and own not in {employee_id for employee_id, _ in choices}:
        name = names_by_id(session, page.actor, EMPLOYEES, [own]).get(own)
        choices = [(own, name or page.actor.username), *choices]
    return choices


def _heat_map_chart(page: PageContext, counts: list[list[int]]) -> dict[str, Any]:
    """Return the heat map's data for the page's JSON island (read by signals.js)."""
    return {
        "weekdays": [page.t(f"signals.weekday.{key}") for key in WEEKDAY_KEYS],
        "hours": [str(hour) for hour in range(24)],
        "cells": [
            [hour, weekday, count]
            for weekday, row in enumerate(counts)
            for hour, count in enumerate(row)
        ],
        "max": max(map(max, counts)),
        "label": page.t("signals.heatmap_calls"),
    }


@dataclass(frozen=True)
class EventRow:
    """One event of an opportunity as the fragment shows it."""

    event: BehaviourEvent
    who: str
    excerpt: str
    trackers: list[str]


@router.get("/opportunities/{opportunity_id}/signals")
def opportunity_signals(
    opportunity_id: int, page: PageDep, session: SessionDep
) -> HTMLResponse:
    """Return the newest events of an opportunity as an HTMX fragment."""
    try:
        events = service.list_events(
            session, page.actor, opportunity_id=opportunity_id, limit=EVENTS_READ
        )
    except PolicyDenied as error:
        # HTMX swaps only 2xx answers: the refusal is shown in the fragment.
        abandon(session, page.actor, error)
        status = 200 if page.request.headers.get("hx-request") == "true" else 403
        return page.render(
            "_signal_rows.html",
            status_code=status,
            rows=[],
            error=describe_error(page.t, error),
        )
    shown = [e for e in events if e.event_type != EventType.TRACKER_HIT]
    shown = shown[:OPPORTUNITY_EVENTS]
    return page.render(
        "_signal_rows.html", rows=_event_rows(session, page, shown), error=None
    )


def _event_rows(
    session: Session, page: PageContext, events: list[BehaviourEvent]
) -> list[EventRow]:
    reps = names_by_id(session, page.actor, EMPLOYEES, (e.actor_id for e in events))
    contacts = names_by_id(
        session, page.actor, CONTACTS, (e.contact_id for e in events)
    )
    return [
        EventRow(
            event=event,
            who=_who(page, event, reps, contacts),
            excerpt=_excerpt(event.text),
            trackers=_tracker_labels(page, event),
        )
        for event in events
    ]


def _who(
    page: PageContext,
    event: BehaviourEvent,
    reps: dict[int, str],
    contacts: dict[int, str],
) -> str:
    if event.speaker == "customer":
        name = contacts.get(event.contact_id or 0)
    else:
        name = reps.get(event.actor_id or 0)
    side = page.fmt.coded("signals.speaker", event.speaker or "unknown")
    return f"{side} · {name}" if name else side


def _excerpt(text: str | None) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def _tracker_labels(page: PageContext, event: BehaviourEvent) -> list[str]:
    """Return the tracker categories found in the event, in the page's language."""
    hits = event.attributes.get("trackers") if event.attributes else None
    if not isinstance(hits, list):
        return []
    categories = default_engine().categories
    labels: list[str] = []
    for hit in hits:
        category = str(hit.get("category") or "") if isinstance(hit, dict) else ""
        label = categories.get(category, {}).get(page.locale) or category
        if label and label not in labels:
            labels.append(label)
    return labels
