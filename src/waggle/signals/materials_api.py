"""HTTP routes of tracked materials: the library API and the public viewer.

``/api/v1/materials`` is the authenticated side (library, links, who read
what). ``/t/{token}`` and its beacon are public: whoever holds the address may
read the material, and the only thing they can write is dwell time on the view
their browser opened.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from waggle.apikit import ActorDep, SessionDep, error_body, status_for
from waggle.core.db import transaction
from waggle.core.errors import WaggleError
from waggle.signals import materials
from waggle.signals.materials import (
    BeaconLimitExceeded,
    BeaconRejected,
    LinkStats,
    LinkUnavailable,
    OpenedView,
    ViewerSummary,
    ViewIngestor,
)

logger = logging.getLogger(__name__)

TAG = "materials"
VIEWER_COOKIE = "waggle_viewer"
VIEWER_COOKIE_SECONDS = 365 * 24 * 3600
MAX_BEACON_BYTES = 512
_VIEWER_KEY = re.compile(r"^[A-Za-z0-9_-]{22}$")
# Link previews (chat apps unfurling the address) and prefetches are not
# readers: they get the page but leave no view and no event.
_ROBOT = re.compile(
    r"bot|spider|crawl|preview|prefetch|slurp|facebookexternalhit|headless", re.I
)
VIEWER_TEXT = {
    "zh-CN": {
        "page": "第 {number} / {count} 页",
        "previous": "上一页",
        "next": "下一页",
        "pages": "页面导航",
        "missing_title": "链接不可用",
        "missing": "此链接不存在、已被撤销或已过期，请联系发送给您的人。",
        "notice": "为改进服务，本页面会记录阅读的页面和停留时间。",
    },
    "en": {
        "page": "Page {number} of {count}",
        "previous": "Previous",
        "next": "Next",
        "pages": "Pages",
        "missing_title": "Link unavailable",
        "missing": "This link does not exist, was revoked or has expired; "
        "please ask the person who sent it.",
        "notice": "This page records which pages are read and for how long.",
    },
}

MaterialKindName = Literal["deck", "case_study", "whitepaper", "price_sheet"]


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class MaterialCreate(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    kind: MaterialKindName
    pages: list[str] = Field(min_length=1, max_length=materials.MAX_PAGES)
    industry: str | None = Field(default=None, max_length=80)
    product: str | None = Field(default=None, max_length=120)
    stage_key: str | None = Field(default=None, max_length=40)
    language: Literal["zh-CN", "en"] = "zh-CN"


class MaterialRead(_Read):
    id: int
    title: str
    kind: str
    industry: str | None
    product: str | None
    stage_key: str | None
    language: str
    page_count: int
    created_by: str
    created_at: dt.datetime


class LinkCreate(BaseModel):
    material_id: int
    contact_id: int | None = None
    opportunity_id: int | None = None
    expires_at: dt.datetime | None = None


class LinkRead(BaseModel):
    id: int
    material_id: int
    contact_id: int | None
    opportunity_id: int | None
    owner_id: int
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    is_revoked: bool
    token_prefix: str
    views: int
    viewers: int
    total_dwell_seconds: int
    last_opened_at: dt.datetime | None


class LinkCreated(LinkRead):
    """A new link with its address, shown this once and never again."""

    url: str


class ViewRead(_Read):
    id: int
    opened_at: dt.datetime
    last_seen_at: dt.datetime
    pages: dict[int, int]
    max_page: int
    total_dwell_seconds: int


class ViewerRead(BaseModel):
    viewer: str
    opens: int
    first_opened_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    pages: dict[int, int]
    pages_viewed: int
    max_page: int
    total_dwell_seconds: int
    views: list[ViewRead]


class LinkViewsRead(BaseModel):
    link_id: int
    viewers: list[ViewerRead]


def routers() -> list[APIRouter]:
    routes = APIRouter(prefix="/api/v1/materials", tags=[TAG])
    _library_routes(routes)
    _link_routes(routes)
    return [routes, _public_router()]


def _library_routes(routes: APIRouter) -> None:
    @routes.post("", response_model=MaterialRead, status_code=201)
    def create_material(
        body: MaterialCreate, session: SessionDep, actor: ActorDep
    ) -> Any:
        """Add a deck, case study, white paper or price sheet to the library."""
        return materials.create_material(session, actor, **body.model_dump())

    @routes.get("", response_model=list[MaterialRead])
    def list_materials(
        session: SessionDep, actor: ActorDep, kind: str | None = None
    ) -> Any:
        """The library, newest first."""
        return materials.list_materials(session, actor, kind=kind)


def _link_routes(routes: APIRouter) -> None:
    @routes.post("/links", response_model=LinkCreated, status_code=201)
    def create_link(body: LinkCreate, session: SessionDep, actor: ActorDep) -> Any:
        """Make a tracked link for a contact or deal; its address is shown once."""
        link = materials.create_link(session, actor, **body.model_dump())
        stats = LinkStats(link, 0, 0, 0, None)
        return LinkCreated(
            **_link_read(stats).model_dump(),
            url=materials.LINK_PATH.format(token=link.token),
        )

    @routes.get("/links", response_model=list[LinkRead])
    def list_links(
        session: SessionDep,
        actor: ActorDep,
        material_id: Annotated[int | None, Query()] = None,
    ) -> Any:
        """Links in the caller's scope with their opens, viewers and dwell."""
        found = materials.list_links(session, actor, material_id=material_id)
        return [_link_read(stats) for stats in found]

    @routes.post("/links/{link_id}/revoke", response_model=LinkRead)
    def revoke_link(link_id: int, session: SessionDep, actor: ActorDep) -> Any:
        """Stop a link from opening; what it recorded is kept."""
        link = materials.revoke_link(session, actor, link_id)
        return _link_read(materials.stats_of(session, link))

    @routes.get("/links/{link_id}/views", response_model=LinkViewsRead)
    def link_views(link_id: int, session: SessionDep, actor: ActorDep) -> Any:
        """Per viewer of a link: opens, pages viewed and dwell per page."""
        viewers = materials.link_views(session, actor, link_id)
        return LinkViewsRead(
            link_id=link_id, viewers=[_viewer_read(item) for item in viewers]
        )


def _link_read(stats: LinkStats) -> LinkRead:
    link = stats.link
    return LinkRead(
        id=link.id,
        material_id=link.material_id,
        contact_id=link.contact_id,
        opportunity_id=link.opportunity_id,
        owner_id=link.owner_id,
        created_by=link.created_by,
        created_at=link.created_at,
        expires_at=link.expires_at,
        is_revoked=link.is_revoked,
        token_prefix=stats.token_prefix,
        views=stats.views,
        viewers=stats.viewers,
        total_dwell_seconds=stats.total_dwell_seconds,
        last_opened_at=stats.last_opened_at,
    )


def _viewer_read(summary: ViewerSummary) -> ViewerRead:
    return ViewerRead(
        viewer=summary.viewer,
        opens=summary.opens,
        first_opened_at=summary.first_opened_at,
        last_seen_at=summary.last_seen_at,
        pages=summary.pages,
        pages_viewed=summary.pages_viewed,
        max_page=summary.max_page,
        total_dwell_seconds=summary.total_dwell_seconds,
        views=[ViewRead.model_validate(view) for view in summary.views],
    )


def _public_router() -> APIRouter:
    routes = APIRouter(tags=[TAG])

    @routes.get("/t/{token}", include_in_schema=False)
    def view(token: str, request: Request) -> Response:
        """The viewer page; each new reading session becomes an event."""
        return open_page(request, token)

    @routes.post("/t/{token}/beacon", include_in_schema=False)
    async def beacon(token: str, request: Request) -> Response:
        """Dwell on one page of a view, sent by the viewer page's script."""
        body = await _bounded_body(request)
        if body is None:
            return _error(
                413,
                "payload_too_large",
                f"beacon: the body may hold at most {MAX_BEACON_BYTES} bytes",
            )
        return await run_in_threadpool(_record_beacon, request, token, body)

    return routes


def open_page(request: Request, token: str) -> Response:
    """Render the viewer for ``token``, recording the view unless a robot asks."""
    sessions = _sessions(request)
    viewer_key = _viewer_key(request)
    try:
        with transaction(sessions) as session:
            opened = materials.open_view(
                session,
                token,
                viewer_key=viewer_key,
                client_ip=request.client.host if request.client else None,
                user_agent=request.headers.get("user-agent"),
                is_recorded=_is_reader(request),
            )
    except LinkUnavailable:
        return _missing_page(request)
    if opened.snapshot is not None:
        _ingest(request, sessions, opened)
    response = _viewer_page(request, token, opened)
    response.set_cookie(
        VIEWER_COOKIE,
        viewer_key,
        max_age=VIEWER_COOKIE_SECONDS,
        path="/t",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


def _sessions(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    return factory


def _viewer_key(request: Request) -> str:
    key = request.cookies.get(VIEWER_COOKIE, "")
    return key if _VIEWER_KEY.match(key) else secrets.token_urlsafe(16)


def _is_reader(request: Request) -> bool:
    agent = request.headers.get("user-agent", "")
    purpose = request.headers.get("sec-purpose", "") + request.headers.get(
        "purpose", ""
    )
    return bool(agent) and not _ROBOT.search(agent) and "prefetch" not in purpose


def _ingest(
    request: Request, sessions: sessionmaker[Session], opened: OpenedView
) -> None:
    state = request.app.state
    if not hasattr(state, "material_ingestor"):
        state.material_ingestor = ViewIngestor()
    ingestor: ViewIngestor = state.material_ingestor
    assert opened.snapshot is not None
    try:
        ingestor.ingest(sessions, opened.snapshot, locator=f"view {opened.view_id}")
    except Exception:
        # The reader still gets the page: the view is stored, and only its
        # event is missing, which an operator can see in the logs and batches.
        logger.exception(
            "material view not ingested", extra={"view_id": opened.view_id}
        )


def _locale(language: str) -> str:
    return language if language in VIEWER_TEXT else "zh-CN"


def _viewer_page(request: Request, token: str, opened: OpenedView) -> Response:
    from waggle.web.rendering import render

    locale = _locale(opened.language)
    return render(
        "material_viewer.html",
        {
            "locale": locale,
            "text": VIEWER_TEXT[locale],
            "is_missing": False,
            "title": opened.title,
            "pages": opened.pages,
            "view_id": opened.view_id or "",
            "beacon_url": f"/t/{token}/beacon",
        },
        headers={"X-Robots-Tag": "noindex, nofollow"},
    )


def _missing_page(request: Request) -> Response:
    from waggle.web.context import locale_of
    from waggle.web.rendering import render

    locale = _locale(locale_of(request))
    return render(
        "material_viewer.html",
        {
            "locale": locale,
            "text": VIEWER_TEXT[locale],
            "is_missing": True,
            "title": VIEWER_TEXT[locale]["missing_title"],
            "pages": [],
            "view_id": "",
            "beacon_url": "",
        },
        status_code=404,
        headers={"X-Robots-Tag": "noindex, nofollow"},
    )


async def _bounded_body(request: Request) -> bytes | None:
    """Return the body, or ``None`` once it passes :data:`MAX_BEACON_BYTES`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BEACON_BYTES:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BEACON_BYTES:
            return None
    return body


_BEACON_LOCK = threading.Lock()


def _record_beacon(request: Request, token: str, body: bytes) -> Response:
    cookie = request.cookies.get(VIEWER_COOKIE)
    try:
        fields = _beacon_json(body)
        # SQLite ignores FOR UPDATE: two beacons of one view in flight at once
        # (the periodic one and the hidden tab's) would both read the old dwell
        # and one addition would be lost. One lock per process serialises them;
        # PostgreSQL also locks the row.
        with _BEACON_LOCK, transaction(_sessions(request)) as session:
            materials.record_beacon(session, token, fields, viewer_key=cookie)
    except BeaconLimitExceeded as error:
        return _error(429, error.code, error.message)
    except WaggleError as error:
        return _error(status_for(error), error.code, error.message)
    return Response(status_code=204)


def _beacon_json(body: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BeaconRejected("beacon: expected a JSON object") from exc
    if not isinstance(fields, dict):
        raise BeaconRejected("beacon: expected a JSON object")
    return fields


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status)


__all__ = ["open_page", "routers"]
