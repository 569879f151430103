"""Tracked materials: decks and case studies shared through ``/t/<token>`` links.

Sales ops curate the library (:func:`create_material`); a rep makes one link per
customer (:func:`create_link`) and sends its address. Whoever opens it gets the
viewer page; each browser is told apart by a random key in a cookie, and one
reading session (a new one after 30 minutes of silence) is one
:class:`~waggle.signals.models.MaterialView` and one ``material_opened`` event,
ingested through the pipeline like any other record. The page's script then
reports dwell per page in small beacons (:func:`record_beacon`), which add up
on the view and refresh the event's attributes.

The authenticated functions pass the governance seam; the public ones
(:func:`open_view`, :func:`record_beacon`) hold no actor: the link's token is
the only credential, and it never leaves this module whole except in the
address shown once to the link's creator.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import Actor, system_actor
from waggle.core.clock import now
from waggle.core.db import transaction
from waggle.core.errors import InvalidInput, NotFound
from waggle.crm.models import Contact, Opportunity
from waggle.crm.service import CONTACTS, OPPORTUNITIES
from waggle.governance import authorize, ensure_in_scope, record_audit, row_filter
from waggle.governance.records import get_record
from waggle.identity.models import Employee
from waggle.signals.connectors.materials import (
    NAME as CONNECTOR,
)
from waggle.signals.connectors.materials import (
    SOURCE,
    TOKEN_PREFIX_LENGTH,
    VIEWER_LENGTH,
    view_attributes,
)
from waggle.signals.events import RawRecord
from waggle.signals.ingest import BatchReport, Pipeline, ingest_batch
from waggle.signals.matching import directory_version
from waggle.signals.models import (
    BehaviourEvent,
    Material,
    MaterialKind,
    MaterialView,
    TrackedLink,
)
from waggle.signals.service import build_pipeline

logger = logging.getLogger(__name__)

MATERIALS = "materials"
LINKS = "material_links"
LINK_PATH = "/t/{token}"
# A viewer silent for longer than this starts a new reading session (view).
SESSION_GAP = dt.timedelta(minutes=30)
MAX_PAGES = 300
MAX_PAGE_CHARACTERS = 20_000
MAX_BEACON_SECONDS = 60
# Beacons per view: this many, plus one per two seconds the view has been open.
# The page sends one every ten seconds and on page turns, far below the limit.
BEACON_ALLOWANCE = 30
INGEST_ACTOR = system_actor("materials")

_BLANK_LINES = re.compile(r"\n[ \t]*\n")
_BULLET = re.compile(r"^[-*]\s+")


class LinkUnavailable(NotFound):
    """The token names no link, or its link was revoked or has expired."""

    code = "link_unavailable"


class BeaconRejected(InvalidInput):
    """A dwell beacon that does not fit its link's view or material."""

    code = "beacon_rejected"


class BeaconLimitExceeded(InvalidInput):
    """A view received more beacons or seconds than its open time allows."""

    code = "beacon_limit_exceeded"


def create_material(
    session: Session,
    actor: Actor,
    *,
    title: str,
    kind: str,
    pages: Sequence[str],
    industry: str | None = None,
    product: str | None = None,
    stage_key: str | None = None,
    language: str = "zh-CN",
) -> Material:
    """Add a material to the library; its pages are plain text, shown escaped.

    Raises:
        PolicyDenied: the actor may not curate materials.
        InvalidInput: an unknown kind, or no pages, too many or too long ones.
    """
    authorize(session, actor, "create", MATERIALS)
    _check_material(kind, pages)
    material = Material(
        title=title,
        kind=kind,
        industry=industry,
        product=product,
        stage_key=stage_key,
        language=language,
        page_count=len(pages),
        pages=list(pages),
        created_by=actor.username,
    )
    session.add(material)
    session.flush()
    record_audit(
        session, actor, action="create", resource=MATERIALS, record_ids=[material.id]
    )
    return material


def _check_material(kind: str, pages: Sequence[str]) -> None:
    if kind not in set(MaterialKind):
        kinds = ", ".join(member.value for member in MaterialKind)
        raise InvalidInput(f"material.kind: {kind!r} is not one of {kinds}")
    if not 1 <= len(pages) <= MAX_PAGES:
        raise InvalidInput(f"material.pages: expected 1 to {MAX_PAGES} pages")
    for number, text in enumerate(pages, start=1):
        if len(text) > MAX_PAGE_CHARACTERS:
            raise InvalidInput(
                f"material.pages[{number}]: at most {MAX_PAGE_CHARACTERS} characters"
            )


def list_materials(
    session: Session, actor: Actor, *, kind: str | None = None
) -> list[Material]:
    """Return the library, newest first.

    Raises:
        PolicyDenied: the actor may not read materials.
    """
    authorize(session, actor, "read", MATERIALS)
    query = select(Material).order_by(Material.id.desc())
    if kind is not None:
        query = query.where(Material.kind == kind)
    found = list(session.scalars(query))
    record_audit(
        session,
        actor,
        action="read",
        resource=MATERIALS,
        record_ids=[material.id for material in found],
    )
    return found


def create_link(
    session: Session,
    actor: Actor,
    *,
    material_id: int,
    contact_id: int | None = None,
    opportunity_id: int | None = None,
    expires_at: dt.datetime | None = None,
) -> TrackedLink:
    """Make a tracked link of a material for a contact and/or an opportunity.

    The link belongs to the actor's employee, else to the opportunity's or the
    contact's owner; views are attributed to that employee. The actor must be
    allowed to read the contact and the opportunity it names.

    Raises:
        PolicyDenied: the actor may not create links, or not for that customer.
        NotFound: the material, contact or opportunity does not exist.
        InvalidInput: neither customer record given, they disagree on the
            account, the expiry is past, or no employee can own the link.
    """
    authorize(session, actor, "create", LINKS)
    material = _material(session, material_id)
    contact, opportunity = _customer_records(
        session, actor, contact_id=contact_id, opportunity_id=opportunity_id
    )
    if expires_at is not None and expires_at <= now():
        raise InvalidInput("tracked link.expires_at: must lie in the future")
    link = TrackedLink(
        token=secrets.token_urlsafe(16),
        material_id=material.id,
        contact_id=contact.id if contact else None,
        opportunity_id=opportunity.id if opportunity else None,
        owner_id=_link_owner(actor, contact, opportunity),
        created_by=actor.username,
        expires_at=expires_at,
    )
    session.add(link)
    session.flush()
    record_audit(
        session,
        actor,
        action="create",
        resource=LINKS,
        record_ids=[link.id],
        detail=f"material {material.id}",
    )
    return link


def _customer_records(
    session: Session,
    actor: Actor,
    *,
    contact_id: int | None,
    opportunity_id: int | None,
) -> tuple[Contact | None, Opportunity | None]:
    if contact_id is None and opportunity_id is None:
        raise InvalidInput("tracked link: name a contact_id, an opportunity_id or both")
    contact = get_record(session, actor, CONTACTS, contact_id) if contact_id else None
    opportunity = (
        get_record(session, actor, OPPORTUNITIES, opportunity_id)
        if opportunity_id
        else None
    )
    if contact and opportunity and contact.account_id != opportunity.account_id:
        raise InvalidInput(
            f"tracked link: contact {contact.id} and opportunity {opportunity.id} "
            "belong to different accounts"
        )
    return contact, opportunity


def _link_owner(
    actor: Actor, contact: Contact | None, opportunity: Opportunity | None
) -> int:
    owner = (
        actor.employee_id
        or (opportunity.owner_id if opportunity else None)
        or (contact.owner_id if contact else None)
    )
    if owner is None:
        raise InvalidInput(
            "tracked link: no employee can own it; the caller has no employee "
            "record and the contact and opportunity have no owner"
        )
    return owner


def revoke_link(session: Session, actor: Actor, link_id: int) -> TrackedLink:
    """Stop a link from opening; its views and events are kept.

    Raises:
        PolicyDenied: the actor may not update links, or not this one.
        NotFound: no such link.
    """
    scope = authorize(session, actor, "update", LINKS)
    link = _link(session, link_id)
    ensure_in_scope(
        session,
        actor,
        scope,
        owner_id=link.owner_id,
        action="update",
        resource=LINKS,
        record_id=link_id,
    )
    link.is_revoked = True
    record_audit(
        session,
        actor,
        action="update",
        resource=LINKS,
        record_ids=[link_id],
        detail="revoked",
    )
    return link


@dataclass(frozen=True)
class LinkStats:
    """A link as its owner sees it: never the token, only its prefix."""

    link: TrackedLink
    views: int
    viewers: int
    total_dwell_seconds: int
    last_opened_at: dt.datetime | None

    @property
    def token_prefix(self) -> str:
        return self.link.token[:TOKEN_PREFIX_LENGTH]


def list_links(
    session: Session, actor: Actor, *, material_id: int | None = None
) -> list[LinkStats]:
    """Return the links in the actor's scope with their view counts, newest first.

    Raises:
        PolicyDenied: the actor may not read links.
    """
    scope = authorize(session, actor, "read", LINKS)
    query = (
        select(TrackedLink)
        .where(row_filter(session, actor, scope, TrackedLink.owner_id))
        .order_by(TrackedLink.id.desc())
    )
    if material_id is not None:
        query = query.where(TrackedLink.material_id == material_id)
    links = list(session.scalars(query))
    totals = _view_totals(session, [link.id for link in links])
    record_audit(
        session,
        actor,
        action="read",
        resource=LINKS,
        record_ids=[link.id for link in links],
    )
    return [LinkStats(link, *totals.get(link.id, (0, 0, 0, None))) for link in links]


def stats_of(session: Session, link: TrackedLink) -> LinkStats:
    """Return the view counts of a link the caller has already been allowed."""
    totals = _view_totals(session, [link.id])
    return LinkStats(link, *totals.get(link.id, (0, 0, 0, None)))


def _view_totals(
    session: Session, link_ids: list[int]
) -> dict[int, tuple[int, int, int, dt.datetime | None]]:
    if not link_ids:
        return {}
    rows = session.execute(
        select(
            MaterialView.link_id,
            func.count(),
            func.count(func.distinct(MaterialView.viewer_hash)),
            func.coalesce(func.sum(MaterialView.total_dwell_seconds), 0),
            func.max(MaterialView.opened_at),
        )
        .where(MaterialView.link_id.in_(link_ids))
        .group_by(MaterialView.link_id)
    )
    return {
        link_id: (views, viewers, int(dwell), last)
        for link_id, views, viewers, dwell, last in rows
    }


@dataclass
class ViewerSummary:
    """One browser's reading of a link: its sessions and dwell per page."""

    viewer: str
    opens: int = 0
    first_opened_at: dt.datetime | None = None
    last_seen_at: dt.datetime | None = None
    pages: dict[int, int] = field(default_factory=dict)
    views: list[MaterialView] = field(default_factory=list)

    @property
    def pages_viewed(self) -> int:
        return len(self.pages)

    @property
    def max_page(self) -> int:
        return max(self.pages, default=0)

    @property
    def total_dwell_seconds(self) -> int:
        return sum(self.pages.values())


def link_views(session: Session, actor: Actor, link_id: int) -> list[ViewerSummary]:
    """Return who read a link: per viewer, opens, pages and dwell per page.

    Raises:
        PolicyDenied: the link's owner lies outside the actor's scope.
        NotFound: no such link.
    """
    scope = authorize(session, actor, "read", LINKS)
    link = _link(session, link_id)
    ensure_in_scope(
        session,
        actor,
        scope,
        owner_id=link.owner_id,
        action="read",
        resource=LINKS,
        record_id=link_id,
    )
    views = session.scalars(
        select(MaterialView)
        .where(MaterialView.link_id == link_id)
        .order_by(MaterialView.opened_at, MaterialView.id)
    )
    viewers: dict[str, ViewerSummary] = {}
    for view in views:
        _add_view(viewers, view)
    record_audit(session, actor, action="read", resource=LINKS, record_ids=[link_id])
    return list(viewers.values())


def _add_view(viewers: dict[str, ViewerSummary], view: MaterialView) -> None:
    key = view.viewer_hash[:VIEWER_LENGTH]
    summary = viewers.setdefault(key, ViewerSummary(viewer=key))
    summary.opens += 1
    summary.first_opened_at = summary.first_opened_at or view.opened_at
    summary.last_seen_at = max(
        view.last_seen_at, summary.last_seen_at or view.last_seen_at
    )
    for page, seconds in view.pages.items():
        summary.pages[int(page)] = summary.pages.get(int(page), 0) + seconds
    summary.pages = dict(sorted(summary.pages.items()))
    summary.views.append(view)


@dataclass(frozen=True)
class Block:
    """One block of a page's text: a heading, a list or a paragraph."""

    kind: str  # "heading", "subheading", "list" or "paragraph"
    lines: tuple[str, ...]


def page_blocks(text: str) -> list[Block]:
    """Split a page's text into blocks; ``#``/``##`` head, ``-`` or ``*`` list.

    Blocks hold plain text: the template escapes it, so no page can carry
    markup, scripts or links into the viewer.
    """
    blocks: list[Block] = []
    for chunk in _BLANK_LINES.split(text.replace("\r\n", "\n").strip()):
        lines = [line.rstrip() for line in chunk.strip("\n").split("\n")]
        while lines and lines[0].lstrip().startswith("#"):
            heading = lines.pop(0).lstrip()
            level = "subheading" if heading.startswith("##") else "heading"
            blocks.append(Block(level, (heading.lstrip("#").strip(),)))
        if not any(lines):
            continue
        if all(_BULLET.match(line.lstrip()) for line in lines):
            items = tuple(_BULLET.sub("", line.lstrip()) for line in lines)
            blocks.append(Block("list", items))
        else:
            blocks.append(Block("paragraph", tuple(lines)))
    return blocks


@dataclass(frozen=True)
class OpenedView:
    """What the viewer page needs, read inside the transaction that made it.

    ``snapshot`` is set only when the open began a new reading session: it is
    the record to ingest as that session's ``material_opened`` event.
    """

    view_id: int | None
    title: str
    language: str
    pages: list[list[Block]]
    snapshot: bytes | None


def open_view(
    session: Session,
    token: str,
    *,
    viewer_key: str,
    client_ip: str | None,
    user_agent: str | None,
    is_recorded: bool = True,
) -> OpenedView:
    """Open a link for a viewer: reuse their session's view or start a new one.

    With ``is_recorded`` false (a link-preview robot) nothing is written.

    Raises:
        LinkUnavailable: the token is unknown, revoked or expired.
    """
    link = usable_link(session, token)
    material = session.get_one(Material, link.material_id)
    pages = [page_blocks(text) for text in material.pages]
    if not is_recorded:
        return OpenedView(None, material.title, material.language, pages, None)
    view, is_new = _session_view(
        session, link, viewer_key, client_ip=client_ip, user_agent=user_agent
    )
    snapshot = view_snapshot(session, link, material, view) if is_new else None
    return OpenedView(view.id, material.title, material.language, pages, snapshot)


def usable_link(session: Session, token: str) -> TrackedLink:
    """Return the link of ``token`` when it may still be opened.

    Raises:
        LinkUnavailable: unknown, revoked or expired (one message for all three,
            so a guessed token learns nothing).
    """
    link = session.scalar(select(TrackedLink).where(TrackedLink.token == token))
    if link is None or link.is_revoked or _is_expired(link):
        raise LinkUnavailable("this tracked link does not exist or has expired")
    return link


def _is_expired(link: TrackedLink) -> bool:
    return link.expires_at is not None and link.expires_at <= now()


def viewer_hash(viewer_key: str) -> str:
    """Return the stored form of a browser's viewer key."""
    return hashlib.sha256(viewer_key.encode("utf-8")).hexdigest()


def _session_view(
    session: Session,
    link: TrackedLink,
    viewer_key: str,
    *,
    client_ip: str | None,
    user_agent: str | None,
) -> tuple[MaterialView, bool]:
    hashed, instant = viewer_hash(viewer_key), now()
    current = session.scalar(
        select(MaterialView)
        .where(
            MaterialView.link_id == link.id,
            MaterialView.viewer_hash == hashed,
            MaterialView.last_seen_at >= instant - SESSION_GAP,
        )
        .order_by(MaterialView.id.desc())
        .limit(1)
    )
    if current is not None:
        current.last_seen_at = instant
        return current, False
    view = MaterialView(
        link_id=link.id,
        viewer_hash=hashed,
        opened_at=instant,
        last_seen_at=instant,
        client_ip=client_ip[:64] if client_ip else None,
        user_agent=user_agent[:300] if user_agent else None,
        pages={},
    )
    session.add(view)
    session.flush()
    return view, True


def view_snapshot(
    session: Session, link: TrackedLink, material: Material, view: MaterialView
) -> bytes:
    """Return the record the materials connector reads for ``view``."""
    owner = session.get_one(Employee, link.owner_id)
    contact = session.get(Contact, link.contact_id) if link.contact_id else None
    opportunity = (
        session.get(Opportunity, link.opportunity_id) if link.opportunity_id else None
    )
    body = {
        "view_id": view.id,
        "link_id": link.id,
        "token_prefix": link.token[:TOKEN_PREFIX_LENGTH],
        "material": {
            "id": material.id,
            "title": material.title,
            "kind": material.kind,
            "page_count": material.page_count,
        },
        "owner_ref": f"employee:{owner.external_id}",
        "contact_ref": f"contact:{contact.external_id}" if contact else None,
        "opportunity_ref": (
            f"opportunity:{opportunity.external_id}" if opportunity else None
        ),
        "viewer": view.viewer_hash[:VIEWER_LENGTH],
        "opened_at": view.opened_at.isoformat(),
        "pages": dict(view.pages),
    }
    return json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")


def record_beacon(
    session: Session,
    token: str,
    body: Mapping[str, Any],
    *,
    viewer_key: str | None,
) -> MaterialView:
    """Add one beacon's seconds on one page to its view and to the view's event.

    A beacon is ``{"view_id", "page", "seconds"}``: whole seconds (0 to 60)
    spent on a page (1 to the page count) of a view of this link, sent by the
    browser that opened the view.

    Raises:
        LinkUnavailable: the token is unknown, revoked or expired.
        BeaconRejected: a field is missing or out of range, or the view is not
            this link's (or this browser's).
        BeaconLimitExceeded: more beacons or seconds than the view's age allows.
    """
    link = usable_link(session, token)
    view_id, page, seconds = _beacon_fields(body)
    view = session.scalar(
        select(MaterialView).where(MaterialView.id == view_id).with_for_update()
    )
    if view is None or view.link_id != link.id or not _same_viewer(view, viewer_key):
        raise BeaconRejected(f"beacon.view_id: {view_id} is not a view of this link")
    material = session.get_one(Material, link.material_id)
    if not 1 <= page <= material.page_count:
        raise BeaconRejected(
            f"beacon.page: expected 1 to {material.page_count}, got {page}"
        )
    _check_limits(view, seconds)
    pages = dict(view.pages)
    pages[str(page)] = pages.get(str(page), 0) + seconds
    view.pages = pages  # a new dict, so the JSON column is written
    view.max_page = max(map(int, pages))
    view.total_dwell_seconds = sum(pages.values())
    view.beacon_count += 1
    view.last_seen_at = now()
    _refresh_event(session, link, material, view)
    return view


def _beacon_fields(body: Mapping[str, Any]) -> tuple[int, int, int]:
    values = []
    for name in ("view_id", "page", "seconds"):
        value = body.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise BeaconRejected(f"beacon.{name}: expected a whole number")
        values.append(value)
    view_id, page, seconds = values
    if not 0 <= seconds <= MAX_BEACON_SECONDS:
        raise BeaconRejected(
            f"beacon.seconds: expected 0 to {MAX_BEACON_SECONDS}, got {seconds}"
        )
    return view_id, page, seconds


def _same_viewer(view: MaterialView, viewer_key: str | None) -> bool:
    # A browser that lost its cookie may still report on the view it opened;
    # one carrying another viewer's key may not.
    return viewer_key is None or secrets.compare_digest(
        viewer_hash(viewer_key), view.viewer_hash
    )


def _check_limits(view: MaterialView, seconds: int) -> None:
    elapsed = max(0, int((now() - view.opened_at).total_seconds()))
    if view.beacon_count >= BEACON_ALLOWANCE + elapsed // 2:
        raise BeaconLimitExceeded(
            f"material view {view.id}: too many beacons for its age"
        )
    if view.total_dwell_seconds + seconds > elapsed + MAX_BEACON_SECONDS:
        raise BeaconLimitExceeded(
            f"material view {view.id}: dwell would exceed the time it has been open"
        )


def _refresh_event(
    session: Session, link: TrackedLink, material: Material, view: MaterialView
) -> None:
    event = session.scalar(
        select(BehaviourEvent).where(
            BehaviourEvent.source == SOURCE,
            BehaviourEvent.source_id == f"view:{view.id}",
        )
    )
    if event is None:
        # Not ingested yet (the beacon beat the pipeline): the attributes are
        # recomputed in full on every beacon, so the next one catches up.
        return
    # The event is our own record of our own viewer, not a copy of an outside
    # source, so its dwell figures are updated in place rather than re-ingested
    # as new events; the raw snapshot keeps the state at opening.
    event.attributes = {
        **event.attributes,
        **view_attributes(
            material_id=material.id,
            title=material.title,
            kind=material.kind,
            page_count=material.page_count,
            link_id=link.id,
            token_prefix=link.token[:TOKEN_PREFIX_LENGTH],
            view_id=view.id,
            viewer=view.viewer_hash[:VIEWER_LENGTH],
            pages=view.pages,
        ),
    }


class ViewIngestor:
    """Runs view snapshots through the pipeline of the materials connector.

    The pipeline (and the directory its matcher loads) is kept while the
    directory is unchanged, so an open costs a few look-ups, not a reload of
    every employee and contact.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[object, Pipeline] | None = None

    def ingest(
        self, sessions: sessionmaker[Session], snapshot: bytes, *, locator: str
    ) -> BatchReport:
        """Store the view's ``material_opened`` event (once per view).

        Raises:
            PolicyDenied: the ingestion actor may not import events (a policy
                file that took the right away from sales ops).
        """
        pipeline = self._pipeline(sessions)
        record = RawRecord(snapshot, locator)
        return ingest_batch(
            sessions, INGEST_ACTOR, pipeline, [record], label="material view"
        )

    def _pipeline(self, sessions: sessionmaker[Session]) -> Pipeline:
        with transaction(sessions) as session:
            version = directory_version(session)
            with self._lock:
                if self._cached is None or self._cached[0] != version:
                    pipeline = build_pipeline(session, CONNECTOR, with_trackers=False)
                    self._cached = (version, pipeline)
                return self._cached[1]


def _material(session: Session, material_id: int) -> Material:
    material = session.get(Material, material_id)
    if material is None:
        raise NotFound(f"material {material_id} does not exist", material=material_id)
    return material


def _link(session: Session, link_id: int) -> TrackedLink:
    link = session.get(TrackedLink, link_id)
    if link is None:
        raise NotFound(f"tracked link {link_id} does not exist", link=link_id)
    return link


__all__ = [
    "LINKS",
    "LINK_PATH",
    "MATERIALS",
    "BeaconLimitExceeded",
    "BeaconRejected",
    "Block",
    "LinkStats",
    "LinkUnavailable",
    "OpenedView",
    "ViewIngestor",
    "ViewerSummary",
    "create_link",
    "create_material",
    "link_views",
    "list_links",
    "list_materials",
    "open_view",
    "page_blocks",
    "record_beacon",
    "revoke_link",
    "stats_of",
    "usable_link",
    "viewer_hash",
]
