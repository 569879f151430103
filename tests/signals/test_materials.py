"""Tracked materials: the library API, the public viewer, beacons and events."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity, build_org
from tests.web.live import CHROMIUM, CHROMIUM_ARGS, serve_in_thread
from waggle.app import create_app
from waggle.core.actor import system_actor
from waggle.core.db import make_engine, make_session_factory, transaction
from waggle.core.settings import Settings
from waggle.crm.pipelines import ensure_default_pipeline
from waggle.crm.service import CONTACTS
from waggle.governance.models import AuditEntry
from waggle.governance.records import create_record
from waggle.signals import materials
from waggle.signals.connectors.materials import MaterialViewConnector
from waggle.signals.errors import MalformedPayload
from waggle.signals.events import Channel, EventType, RawRecord
from waggle.signals.materials import Block, page_blocks
from waggle.signals.models import BehaviourEvent, MaterialView
from waggle.signals.models import RawRecord as RawRow

PAGES = [
    "# 星河智能工厂方案\n\n第一页：产线数字化改造，交付周期 90 天。",
    "## 客户案例\n\n- 苏州工厂：良率提升 12%\n- 无锡工厂：能耗下降 8%",
    "报价与服务\n联系人：王芳",
]
OPENED_AT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@dataclass
class Deal:
    contact_id: int
    opportunity_id: int
    rep_id: int


@pytest.fixture
def deal(sessions: sessionmaker[Session], org: Org, fixed_clock: object) -> Deal:
    """An account of rep_a1 with contact C-1 and opportunity O-1."""
    rep = org.actors["rep_a1"]
    with transaction(sessions) as session:
        account_id = add_account(
            session, rep, "上海星河机械有限公司", external_id="A-1"
        )
        contact = create_record(
            session,
            rep,
            CONTACTS,
            {"external_id": "C-1", "account_id": account_id, "name": "王芳"},
        )
        opportunity_id = add_opportunity(
            session, rep, account_id, "星河二期", external_id="O-1"
        )
    return Deal(contact.id, opportunity_id, org.employees["rep_a1"])


def add_material(client, org: Org) -> int:
    response = client.post(
        "/api/v1/materials",
        json={"title": "星河智能工厂方案", "kind": "deck", "pages": PAGES},
        headers=org.headers("ops"),
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def add_link(client, org: Org, deal: Deal, **extra: object) -> dict[str, object]:
    material_id = add_material(client, org)
    response = client.post(
        "/api/v1/materials/links",
        json={
            "material_id": material_id,
            "contact_id": deal.contact_id,
            "opportunity_id": deal.opportunity_id,
            **extra,
        },
        headers=org.headers("rep_a1"),
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def beacon(client, url: object, view_id: int, page: int, seconds: int):
    return client.post(
        f"{url}/beacon", json={"view_id": view_id, "page": page, "seconds": seconds}
    )


def views(sessions: sessionmaker[Session]) -> list[MaterialView]:
    with sessions() as session:
        return list(session.scalars(select(MaterialView).order_by(MaterialView.id)))


def material_events(sessions: sessionmaker[Session]) -> list[BehaviourEvent]:
    with sessions() as session:
        return list(
            session.scalars(
                select(BehaviourEvent)
                .where(BehaviourEvent.event_type == EventType.MATERIAL_OPENED)
                .order_by(BehaviourEvent.id)
            )
        )


def viewer_of(client) -> str:
    key = client.cookies.get("waggle_viewer")
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def test_ops_adds_a_material_and_a_rep_links_it_for_a_contact(client, org, deal):
    """A link is made once with its address; lists show only the token prefix."""
    link = add_link(client, org, deal)

    listed = client.get("/api/v1/materials/links", headers=org.headers("rep_a1"))
    library = client.get("/api/v1/materials", headers=org.headers("rep_a1"))

    url = str(link["url"])
    assert url.startswith("/t/") and len(url) == len("/t/") + 22
    assert [(item["id"], item["token_prefix"]) for item in listed.json()] == [
        (link["id"], url[3:9])
    ]
    assert "url" not in listed.json()[0]
    assert (link["owner_id"], link["views"], link["created_by"]) == (
        deal.rep_id,
        0,
        "rep_a1",
    )
    assert [(m["title"], m["page_count"]) for m in library.json()] == [
        ("星河智能工厂方案", 3)
    ]


def test_creating_materials_and_links_leaves_audit_rows(client, org, deal, sessions):
    """Each create writes one audit row naming the new record."""
    link = add_link(client, org, deal)

    with sessions() as session:
        rows = session.execute(
            select(AuditEntry.username, AuditEntry.resource, AuditEntry.record_ids)
            .where(AuditEntry.action == "create")
            .where(AuditEntry.resource.in_(["materials", "material_links"]))
            .order_by(AuditEntry.id)
        ).all()

    assert [tuple(row) for row in rows] == [
        ("ops", "materials", [str(link["material_id"])]),
        ("rep_a1", "material_links", [str(link["id"])]),
    ]


def test_a_rep_may_not_add_materials_nor_link_another_reps_contact(client, org, deal):
    """Curating is for sales ops; a link needs a contact in the rep's scope."""
    material_id = add_material(client, org)

    added = client.post(
        "/api/v1/materials",
        json={"title": "x", "kind": "deck", "pages": ["x"]},
        headers=org.headers("rep_a1"),
    )
    linked = client.post(
        "/api/v1/materials/links",
        json={"material_id": material_id, "contact_id": deal.contact_id},
        headers=org.headers("rep_b1"),
    )

    assert (added.status_code, linked.status_code) == (403, 403)
    assert linked.json()["error"]["code"] == "policy_denied"


def test_opening_a_link_renders_it_and_stores_one_attributed_event(
    client, org, deal, sessions
):
    """The viewer shows the pages escaped and intact; the open is one event."""
    link = add_link(client, org, deal)

    page = client.get(str(link["url"]))

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "第一页：产线数字化改造，交付周期 90 天。" in page.text
    assert "<li>苏州工厂：良率提升 12%</li>" in page.text
    assert '<script src="/static/js/material-tracker.js" defer></script>' in page.text
    (view,) = views(sessions)
    (event,) = material_events(sessions)
    assert f'data-view-id="{view.id}"' in page.text
    assert (event.source, event.source_id, event.channel) == (
        "materials",
        f"view:{view.id}",
        Channel.MATERIAL,
    )
    assert (event.contact_id, event.opportunity_id, event.actor_id) == (
        deal.contact_id,
        deal.opportunity_id,
        deal.rep_id,
    )
    assert (event.sender_ref, event.recipient_refs, event.opportunity_ref) == (
        "contact:C-1",
        ["employee:E-rep_a1"],
        "opportunity:O-1",
    )
    assert event.occurred_at == OPENED_AT
    assert event.attributes == {
        "material_id": link["material_id"],
        "title": "星河智能工厂方案",
        "kind": "deck",
        "page_count": 3,
        "link_id": link["id"],
        "token_prefix": str(link["url"])[3:9],
        "view_id": view.id,
        "viewer": viewer_of(client),
        "pages": {},
        "pages_viewed": 0,
        "max_page": 0,
        "total_dwell_seconds": 0,
    }


def test_beacons_add_up_per_page_and_refresh_the_event(client, org, deal, sessions):
    """Page 1: 10 + 5 s, page 2: 8 s gives {1: 15, 2: 8}, 23 s in all."""
    link = add_link(client, org, deal)
    client.get(str(link["url"]))
    (view,) = views(sessions)

    answers = [
        beacon(client, link["url"], view.id, page, seconds).status_code
        for page, seconds in [(1, 10), (1, 5), (2, 8)]
    ]
    report = client.get(
        f"/api/v1/materials/links/{link['id']}/views", headers=org.headers("rep_a1")
    )

    assert answers == [204, 204, 204]
    ((stored,), (event,)) = views(sessions), material_events(sessions)
    assert (stored.pages, stored.max_page, stored.total_dwell_seconds) == (
        {"1": 15, "2": 8},
        2,
        23,
    )
    assert {key: event.attributes[key] for key in ("pages", "pages_viewed")} == {
        "pages": {"1": 15, "2": 8},
        "pages_viewed": 2,
    }
    assert (event.attributes["max_page"], event.attributes["total_dwell_seconds"]) == (
        2,
        23,
    )
    (viewer,) = report.json()["viewers"]
    assert (viewer["opens"], viewer["pages"], viewer["total_dwell_seconds"]) == (
        1,
        {"1": 15, "2": 8},
        23,
    )


def test_a_second_browser_is_a_second_view(client, org, deal, sessions):
    """Two viewers of one forwarded link are two views and two events."""
    link = add_link(client, org, deal)
    client.get(str(link["url"]))
    first_viewer = viewer_of(client)
    client.cookies.clear()

    client.get(str(link["url"]))
    listed = client.get("/api/v1/materials/links", headers=org.headers("rep_a1"))

    assert len(views(sessions)) == 2
    assert [e.attributes["viewer"] for e in material_events(sessions)] == [
        first_viewer,
        viewer_of(client),
    ]
    assert first_viewer != viewer_of(client)
    assert (listed.json()[0]["views"], listed.json()[0]["viewers"]) == (2, 2)


def test_reopening_within_thirty_minutes_is_the_same_view(
    client, org, deal, sessions, fixed_clock
):
    """Opens 29 minutes apart are one view; after a 31-minute gap, a new one."""
    link = add_link(client, org, deal)
    client.get(str(link["url"]))

    fixed_clock.advance(minutes=29)
    client.get(str(link["url"]))
    same = [view.id for view in views(sessions)]
    fixed_clock.advance(minutes=31)
    client.get(str(link["url"]))
    report = client.get(
        f"/api/v1/materials/links/{link['id']}/views", headers=org.headers("rep_a1")
    )

    assert len(same) == 1
    assert len(views(sessions)) == 2
    assert len(material_events(sessions)) == 2
    (viewer,) = report.json()["viewers"]
    assert viewer["opens"] == 2


def test_unknown_revoked_or_expired_links_answer_404_without_an_event(
    client, org, deal, sessions, fixed_clock
):
    """Only a live link opens; the others get the not-found page and no view."""
    revoked = add_link(client, org, deal)
    client.post(
        f"/api/v1/materials/links/{revoked['id']}/revoke", headers=org.headers("ops")
    )
    expiring = add_link(
        client, org, deal, expires_at=(OPENED_AT + dt.timedelta(hours=1)).isoformat()
    )
    fixed_clock.advance(hours=2)

    answers = [
        client.get(url)
        for url in ("/t/notatokenatall0000000", revoked["url"], expiring["url"])
    ]

    assert [answer.status_code for answer in answers] == [404, 404, 404]
    assert "此链接不存在、已被撤销或已过期" in answers[0].text
    assert (views(sessions), material_events(sessions)) == ([], [])


BAD_BEACONS: list[tuple[dict[str, object], str]] = [
    ({"page": 0, "seconds": 5}, "beacon.page: expected 1 to 3, got 0"),
    ({"page": 4, "seconds": 5}, "beacon.page: expected 1 to 3, got 4"),
    ({"page": 1, "seconds": 999}, "beacon.seconds: expected 0 to 60, got 999"),
    ({"page": 1, "seconds": -1}, "beacon.seconds: expected 0 to 60, got -1"),
    ({"page": "1", "seconds": 5}, "beacon.page: expected a whole number"),
    ({"seconds": 5}, "beacon.page: expected a whole number"),
]


def test_bad_beacons_are_refused_with_422(client, org, deal, sessions):
    """Out-of-range pages or seconds are refused with the standard error body."""
    link = add_link(client, org, deal)
    client.get(str(link["url"]))
    (view,) = views(sessions)

    answers = [
        client.post(f"{link['url']}/beacon", json={"view_id": view.id, **body})
        for body, _message in BAD_BEACONS
    ]

    assert [(answer.status_code, answer.json()) for answer in answers] == [
        (422, {"error": {"code": "beacon_rejected", "message": message, "details": {}}})
        for _body, message in BAD_BEACONS
    ]
    assert views(sessions)[0].pages == {}


def test_a_beacon_for_another_links_view_is_refused(client, org, deal, sessions):
    """A view id belongs to its own link; naming it through another is a 422."""
    first = add_link(client, org, deal)
    second = add_link(client, org, deal)
    client.get(str(first["url"]))
    (view,) = views(sessions)

    answer = beacon(client, second["url"], view.id, 1, 5)
    client.cookies.clear()
    client.cookies.set("waggle_viewer", "A" * 22)
    stolen = beacon(client, first["url"], view.id, 1, 5)

    assert (answer.status_code, stolen.status_code) == (422, 422)
    assert answer.json()["error"]["message"] == (
        f"beacon.view_id: {view.id} is not a view of this link"
    )
    assert views(sessions)[0].pages == {}


def test_beacons_are_limited_in_size_and_in_seconds(client, org, deal, sessions):
    """A large body is a 413; more dwell than the view's age allows is a 429."""
    link = add_link(client, org, deal)
    client.get(str(link["url"]))
    (view,) = views(sessions)

    large = client.post(
        f"{link['url']}/beacon",
        content=json.dumps({"view_id": view.id, "page": 1, "pad": "x" * 600}),
    )
    full = beacon(client, link["url"], view.id, 1, 60)
    over = beacon(client, link["url"], view.id, 2, 1)

    assert (large.status_code, full.status_code, over.status_code) == (413, 204, 429)
    assert over.json()["error"]["code"] == "beacon_limit_exceeded"
    assert views(sessions)[0].pages == {"1": 60}


def test_a_rep_cannot_read_another_teams_link_views(client, org, deal):
    """Link views follow the owner's row scope: team B's rep is refused."""
    link = add_link(client, org, deal)
    client.get(str(link["url"]))

    other = client.get(
        f"/api/v1/materials/links/{link['id']}/views", headers=org.headers("rep_b1")
    )
    manager = client.get(
        f"/api/v1/materials/links/{link['id']}/views", headers=org.headers("manager_a")
    )
    listed = client.get("/api/v1/materials/links", headers=org.headers("rep_b1"))

    assert (other.status_code, manager.status_code) == (403, 200)
    assert other.json()["error"]["code"] == "policy_denied"
    assert listed.json() == []


def test_the_whole_token_is_never_stored_outside_its_link(client, org, deal, sessions):
    """Events, raw records and audit rows carry at most the token's prefix."""
    link = add_link(client, org, deal)
    token = str(link["url"])[3:]
    client.get(str(link["url"]))
    (view,) = views(sessions)
    beacon(client, link["url"], view.id, 1, 4)

    with sessions() as session:
        (event,) = material_events(sessions)
        payloads = session.scalars(select(RawRow.payload)).all()
        details = session.scalars(select(AuditEntry.detail)).all()

    assert token not in json.dumps(event.attributes, ensure_ascii=False)
    assert all(token.encode() not in payload for payload in payloads)
    assert all(token not in (detail or "") for detail in details)
    assert event.attributes["token_prefix"] == token[:6]


def test_link_previews_get_the_page_but_leave_no_view(client, org, deal, sessions):
    """A chat app's link-preview robot is not a reader."""
    link = add_link(client, org, deal)

    page = client.get(str(link["url"]), headers={"User-Agent": "Slackbot 1.0"})

    assert page.status_code == 200
    assert (views(sessions), material_events(sessions)) == ([], [])


def snapshot(**changes: object) -> bytes:
    body: dict[str, object] = {
        "view_id": 7,
        "link_id": 3,
        "token_prefix": "Qm3x9a",
        "material": {"id": 1, "title": "案例", "kind": "case_study", "page_count": 2},
        "owner_ref": "employee:E-1",
        "contact_ref": "contact:C-1",
        "opportunity_ref": None,
        "viewer": "3f9a0c1d2e4b5a69",
        "opened_at": "2026-03-02T17:00:00+08:00",
        "pages": {"2": 4},
    }
    body.update(changes)
    return json.dumps(body, ensure_ascii=False).encode()


def test_the_connector_reads_a_view_snapshot_the_same_way_every_time():
    """One snapshot gives one material_opened draft, identical on every parse."""
    connector = MaterialViewConnector({})
    record = RawRecord(snapshot(), "view 7")

    first, second = connector.parse(record), connector.parse(record)

    assert first == second
    (draft,) = first
    assert (draft.source, draft.source_id, draft.event_type) == (
        "materials",
        "view:7",
        EventType.MATERIAL_OPENED,
    )
    assert (draft.sender, draft.recipients, draft.opportunity_ref) == (
        "contact:C-1",
        ("employee:E-1",),
        None,
    )
    assert draft.occurred_at == dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    assert dict(draft.attributes) == {
        "material_id": 1,
        "title": "案例",
        "kind": "case_study",
        "page_count": 2,
        "link_id": 3,
        "token_prefix": "Qm3x9a",
        "view_id": 7,
        "viewer": "3f9a0c1d2e4b5a69",
        "pages": {"2": 4},
        "pages_viewed": 1,
        "max_page": 2,
        "total_dwell_seconds": 4,
    }


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "view 7: not JSON (Expecting value)"),
        (b"[1]", "view 7: expected a JSON object"),
        (snapshot(view_id="7"), "view 7: view_id must be a non-negative integer"),
        (snapshot(material=None), "view 7: material must be an object"),
        (snapshot(owner_ref=""), "view 7: owner_ref must be a non-empty string"),
        (snapshot(opened_at="2026-03-02T09:00"), "view 7: opened_at="),
        (snapshot(pages={"0": 1}), "view 7: pages key '0' is not a page number"),
        (snapshot(pages={"1": 1.5}), "view 7: pages[1] must be whole seconds"),
    ],
)
def test_the_connector_refuses_malformed_snapshots(payload, message):
    """A snapshot it cannot read raises MalformedPayload naming the field."""
    connector = MaterialViewConnector({})

    with pytest.raises(MalformedPayload) as caught:
        connector.parse(RawRecord(payload, "view 7"))

    assert caught.value.message.startswith(message)


def test_page_text_becomes_headings_lists_and_paragraphs():
    """``#`` and ``##`` head, dash lines list, other lines make a paragraph."""
    text = "# 标题\n## 小节\n\n- 一\n- 二\n\n第一行\n<b>第二行</b>"

    blocks = page_blocks(text)

    assert blocks == [
        Block("heading", ("标题",)),
        Block("subheading", ("小节",)),
        Block("list", ("一", "二")),
        Block("paragraph", ("第一行", "<b>第二行</b>")),
    ]


def test_markup_in_a_page_is_shown_as_text(client, org, deal):
    """A page's HTML is escaped on the viewer, never run."""
    response = client.post(
        "/api/v1/materials",
        json={
            "title": "<i>t</i>",
            "kind": "whitepaper",
            "pages": ["<script>x</script>"],
        },
        headers=org.headers("ops"),
    )
    link = client.post(
        "/api/v1/materials/links",
        json={"material_id": response.json()["id"], "contact_id": deal.contact_id},
        headers=org.headers("rep_a1"),
    ).json()

    page = client.get(link["url"])

    assert "&lt;script&gt;x&lt;/script&gt;" in page.text
    assert "<script>x</script>" not in page.text
    assert "<title>&lt;i&gt;t&lt;/i&gt;</title>" in page.text


@pytest.fixture
def live_link(sqlite_template, tmp_path):
    """A served SQLite company with one tracked link of a three-page deck."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; run scripts/ensure-system-packages.sh")
    shutil.copy(sqlite_template, tmp_path / "waggle.db")
    url = f"sqlite:///{tmp_path / 'waggle.db'}"
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with transaction(sessions) as session:
        ensure_default_pipeline(session, system_actor("test"))
    org = build_org(sessions)
    with transaction(sessions) as session:
        account_id = add_account(session, org.actors["rep_a1"], "星河", external_id="A")
        material = materials.create_material(
            session, org.actors["ops"], title="方案", kind="deck", pages=PAGES
        )
        link = materials.create_link(
            session,
            org.actors["rep_a1"],
            material_id=material.id,
            opportunity_id=add_opportunity(
                session, org.actors["rep_a1"], account_id, "二期", external_id="O"
            ),
        )
    app = create_app(Settings(database_url=url, data_dir=tmp_path, secret_key="s"))
    with serve_in_thread(app) as base_url:
        yield base_url + f"/t/{link.token}", sessions
    app.state.engine.dispose()
    engine.dispose()


def settled_view(sessions, *, total: int, attempts: int = 100):  # type: ignore[no-untyped-def]
    """Return the one view once its dwell reaches ``total`` (or after the attempts)."""
    import time

    for _ in range(attempts):
        (view,) = views(sessions)
        if view.total_dwell_seconds >= total:
            return view
        time.sleep(0.05)
    return view


@pytest.mark.browser
def test_the_tracker_script_reports_dwell_per_page_in_chromium(live_link):
    """The timer, a page turn and hiding the tab report 10 + 5 s and 8 s."""
    address, sessions = live_link
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        # Headless Chromium names itself in its user agent, which the viewer
        # takes for a link-preview robot; a reader's browser does not.
        page = browser.new_page(
            viewport={"width": 1280, "height": 300}, user_agent=READER_AGENT
        )
        page.clock.install(time=OPENED_AT)
        page.clock.pause_at(OPENED_AT + dt.timedelta(seconds=1))
        page.goto(address)

        with page.expect_response(lambda r: r.url.endswith("/beacon")):
            page.clock.run_for(10_000)
        page.click("#viewer-next")
        page.clock.run_for(8_000)
        with page.expect_response(lambda r: r.url.endswith("/beacon")):
            page.click("#viewer-previous")
        page.clock.run_for(5_000)
        page.evaluate(HIDE_TAB)
        position = page.text_content("#viewer-position")
        # The interval's beacon (2 s at the 21 s tick) and the hidden tab's
        # sendBeacon (3 s) are both in flight; wait until the server has both.
        view = settled_view(sessions, total=23)
        browser.close()

    assert (view.pages, view.total_dwell_seconds) == ({"1": 15, "2": 8}, 23)
    assert position == "第 1 / 3 页"


READER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0"
HIDE_TAB = """() => {
  Object.defineProperty(document, "visibilityState", {value: "hidden"});
  document.dispatchEvent(new Event("visibilitychange"));
}"""
