"""The signals pages: sync status, quarantine, call heat map, deal events, tile."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Org, add_account, add_opportunity
from tests.web.helpers import log_in
from waggle.core.actor import system_actor
from waggle.core.db import transaction
from waggle.crm.service import CONTACTS
from waggle.governance.lineage_models import FigureProvenance
from waggle.governance.records import create_record
from waggle.signals.connectors.generic import GenericEventConnector
from waggle.signals.events import RawRecord
from waggle.signals.ingest import Pipeline, ingest_batch
from waggle.signals.models import (
    BehaviourEvent,
    QuarantinedRecord,
    QuarantineStatus,
    SignalSource,
)
from waggle.signals.service import create_source
from waggle.signals.trackers import default_engine

OPERATOR = system_actor("test-signals-pages")
BAD_BYTES = b"<b>not json</b> \xff \xe4\xbd\xa0\xe5\xa5\xbd"


@dataclass
class Seeded:
    opportunity_id: int
    bad_entry_id: int
    sourceless_entry_id: int


def _record(**body: object) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _seed_deal(sessions: sessionmaker[Session], org: Org) -> int:
    rep = org.actors["rep_a1"]
    with transaction(sessions) as session:
        account_id = add_account(
            session, rep, "上海星河机械有限公司", external_id="A-1"
        )
        create_record(
            session,
            rep,
            CONTACTS,
            {
                "external_id": "C-1",
                "account_id": account_id,
                "name": "王芳",
                "email": "wang.fang@xinghe.cn",
            },
        )
        create_source(
            session, OPERATOR, name="ticketing", connector="generic", config={}
        )
        return add_opportunity(session, rep, account_id, "星河二期", external_id="O-1")


def _first_batch() -> list[RawRecord]:
    chat = _record(
        source="chat",
        source_id="m1",
        event_type="chat_message",
        channel="wecom",
        occurred_at="2026-03-02T10:00:00+08:00",
        sender="email:wang.fang@xinghe.cn",
        recipients=["employee:E-rep_a1"],
        opportunity_ref="opportunity:O-1",
        text="请问这套系统的报价是多少钱？",
    )
    call = _record(
        source="chat",
        source_id="c1",
        event_type="call",
        channel="phone",
        occurred_at="2026-03-02T09:30:00+08:00",
        sender="employee:E-rep_a1",
    )
    logged = _record(
        source="crm",
        source_id="a1",
        event_type="activity_logged",
        channel="manual",
        occurred_at="2026-03-02T11:00:00+08:00",
        sender="employee:E-rep_a1",
        is_automatic=False,
    )
    payloads = [chat, call, logged, BAD_BYTES]
    return [RawRecord(payload, f"line {n}") for n, payload in enumerate(payloads, 1)]


@pytest.fixture
def seeded(sessions: sessionmaker[Session], org: Org, fixed_clock: object) -> Seeded:
    """A deal of rep_a1 with a chat, a call and a logged activity; two bad records."""
    opportunity_id = _seed_deal(sessions, org)
    first = ingest_batch(
        sessions,
        OPERATOR,
        Pipeline(GenericEventConnector({}), trackers=default_engine()),
        _first_batch(),
    )
    sourceless = _record(
        source_id="T-1",
        event_type="service_ticket",
        occurred_at="2026-03-02T12:00:00+08:00",
        sender="employee:E-rep_a1",
    )
    second = ingest_batch(
        sessions,
        OPERATOR,
        Pipeline(GenericEventConnector({}), source_name="ticketing"),
        [RawRecord(sourceless, "ticket 1")],
    )
    return Seeded(opportunity_id, first.quarantine_ids[0], second.quarantine_ids[0])


def _cell(html: str, row_attribute: str, cell_attribute: str) -> str:
    row = re.search(rf"<tr {row_attribute}>(.*?)</tr>", html, re.S)
    assert row is not None, html
    cell = re.search(rf"<td [^>]*{cell_attribute}[^>]*>([^<]*)<", row[1])
    assert cell is not None, row[1]
    return cell[1].strip()


def _status(session: Session, entry_id: int) -> str:
    session.expire_all()
    return session.get_one(QuarantinedRecord, entry_id).status


def test_status_page_shows_connector_counts_and_batches(
    client: TestClient, seeded: Seeded
) -> None:
    """Sync status sums received records and links the open quarantine count."""
    log_in(client, "ops")

    html = client.get("/signals").text

    assert _cell(html, 'data-connector="generic"', 'data-role="received"') == "5"
    assert (
        '<a href="/signals/quarantine?connector=generic&amp;status=open">2</a>' in html
    )
    assert "ticketing" in html
    assert "6 小时 0 分钟" in html
    assert "4 = 3 + 1 + 0 ✓" in html
    assert "1 = 0 + 1 + 0 ✓" in html
    assert '<a href="/signals" class="active" aria-current="page">行为信号</a>' in html


def test_a_rep_is_refused_the_status_page_and_has_no_nav_entry(
    client: TestClient, seeded: Seeded
) -> None:
    """Reps may not read signal sources: 403 refusal page, no navigation link."""
    log_in(client, "rep_a1")

    refused = client.get("/signals")
    home = client.get("/").text

    assert refused.status_code == 403
    assert "您没有执行此操作的权限" in refused.text
    assert 'href="/signals"' not in home


def test_quarantine_lists_reasons_and_shows_the_raw_bytes(
    client: TestClient, seeded: Seeded
) -> None:
    """Entries show their reason; raw views decode UTF-8 with replacement."""
    log_in(client, "ops")

    listing = client.get("/signals/quarantine", params={"connector": "generic"})
    other = client.get("/signals/quarantine", params={"connector": "email"})
    shown = client.get("/signals/quarantine", params={"raw": seeded.bad_entry_id})
    plain = client.get(f"/signals/quarantine/{seeded.bad_entry_id}/raw")

    assert f'<tr data-entry="{seeded.bad_entry_id}">' in listing.text
    assert "<code>malformed_payload</code>" in listing.text
    assert "line 4: not UTF-8 text" in listing.text
    assert "ticket 1: missing source" in listing.text
    assert "没有符合条件的隔离记录" in other.text
    assert '<pre class="prose">&lt;b&gt;not json&lt;/b&gt; \ufffd 你好</pre>' in (
        shown.text
    )
    assert plain.headers["content-type"] == "text/plain; charset=utf-8"
    assert plain.text == "<b>not json</b> \ufffd 你好"


def test_replay_all_runs_the_open_entries_and_reports_the_counts(
    client: TestClient, seeded: Seeded, sessions: sessionmaker[Session]
) -> None:
    """After the source is fixed, replay accepts one record and keeps the other."""
    token = log_in(client, "ops")
    with transaction(sessions) as session:
        source = session.scalars(select(SignalSource)).one()
        source.config = {"source": "ticketing"}

    response = client.post(
        "/signals/quarantine/replay", data={"csrf_token": token, "status": "all"}
    )

    assert response.status_code == 200
    assert "已重放 2 个批次：接收 2，接受 1，仍隔离 1，重复 0" in response.text
    with sessions() as session:
        assert _status(session, seeded.sourceless_entry_id) == QuarantineStatus.REPLAYED
        assert _status(session, seeded.bad_entry_id) == QuarantineStatus.OPEN


def test_discard_closes_the_entry_with_a_reason(
    client: TestClient, seeded: Seeded, session: Session
) -> None:
    """Discarding through the form closes the entry and says so in English too."""
    token = log_in(client, "ops")
    client.get("/lang/en?next=/")

    response = client.post(
        f"/signals/quarantine/{seeded.bad_entry_id}/discard",
        data={"csrf_token": token, "reason": "测试数据，无需处理", "status": "all"},
    )

    assert response.status_code == 200
    assert f"Quarantine entry #{seeded.bad_entry_id} was discarded" in response.text
    assert _status(session, seeded.bad_entry_id) == QuarantineStatus.DISCARDED


def test_forms_without_the_csrf_token_are_refused(
    client: TestClient, seeded: Seeded, session: Session
) -> None:
    """Replay and discard posted without the session's token change nothing."""
    log_in(client, "ops")

    replay = client.post("/signals/quarantine/replay", data={"status": "all"})
    discard = client.post(
        f"/signals/quarantine/{seeded.bad_entry_id}/discard",
        data={"reason": "x", "csrf_token": "forged"},
    )

    assert (replay.status_code, discard.status_code) == (403, 403)
    assert _status(session, seeded.bad_entry_id) == QuarantineStatus.OPEN
    assert _status(session, seeded.sourceless_entry_id) == QuarantineStatus.OPEN


def test_heat_map_counts_the_call_in_its_weekday_and_hour(
    client: TestClient, seeded: Seeded, org: Org
) -> None:
    """A call at 09:30 China time on a Monday lands in Monday's hour-9 cell."""
    log_in(client, "manager_a")

    html = client.get(
        "/signals/heatmap",
        params={"employee_id": org.employees["rep_a1"], "weeks": 12},
    ).text

    assert _cell(html, 'data-weekday="0"', 'data-hour="9"') == "1"
    assert _cell(html, 'data-weekday="0"', 'data-hour="10"') == "0"
    assert "共 1 通电话" in html
    options = re.findall(r'<option value="(\d+)"', html)
    assert sorted(map(int, options)) == sorted(
        org.employees[name] for name in ("manager_a", "rep_a1", "rep_a2")
    )
    island = re.search(r'id="call-heatmap-data">(.*?)</script>', html, re.S)
    assert island is not None
    assert [9, 0, 1] in json.loads(island[1])["cells"]
    assert '<script src="/static/vendor/echarts.min.js" defer></script>' in html


def test_heat_map_of_someone_outside_the_scope_is_refused(
    client: TestClient, seeded: Seeded, org: Org
) -> None:
    """A rep sees their own heat map but not a colleague's."""
    log_in(client, "rep_a2")

    own = client.get("/signals/heatmap")
    other = client.get(
        "/signals/heatmap", params={"employee_id": org.employees["rep_a1"]}
    )

    assert own.status_code == 200
    assert "共 0 通电话" in own.text
    assert other.status_code == 403


def test_opportunity_fragment_lists_events_with_tracker_badges(
    client: TestClient, seeded: Seeded
) -> None:
    """The HTMX fragment shows the chat text, who wrote it and a tracker badge."""
    log_in(client, "rep_a1")

    fragment = client.get(
        f"/opportunities/{seeded.opportunity_id}/signals",
        headers={"HX-Request": "true"},
    ).text

    assert "<html" not in fragment
    assert "请问这套系统的报价是多少钱？" in fragment
    assert '<span class="badge">价格与报价</span>' in fragment
    assert "<td>客户 · 王芳</td>" in fragment
    assert "<td>聊天消息</td>" in fragment
    assert "<td>企业微信</td>" in fragment
    assert fragment.count("<tr data-event=") == 1


def test_dashboard_tile_shows_the_automatic_share(
    client: TestClient, seeded: Seeded
) -> None:
    """Two of three interactions were captured automatically: 67%."""
    log_in(client, "manager_a")

    html = client.get("/").text

    assert "自动采集占比" in html
    assert '<span class="figure-value">67%</span>' in html


def test_dashboard_share_links_to_the_interactions_behind_it(
    client: TestClient, sessions: sessionmaker[Session], seeded: Seeded
) -> None:
    """The share's lineage holds the three interactions and replays to 67."""
    token = log_in(client, "manager_a")

    html = client.get("/").text
    link = re.search(r'href="/lineage/(\d+)" data-figure="captured_share"', html)
    assert link is not None
    figure_id = int(link[1])
    replayed = client.post(
        f"/lineage/{figure_id}/replay", headers={"X-CSRF-Token": token}
    ).text

    with sessions() as session:
        figure = session.get_one(FigureProvenance, figure_id)
        automatic = session.scalars(
            select(BehaviourEvent.is_automatic).where(
                BehaviourEvent.id.in_(figure.record_ids)
            )
        ).all()
    assert figure.value == "67"
    assert sorted(automatic) == [False, True, True]
    assert "已精确复现：67" in replayed


def test_dashboard_tile_is_hidden_without_interactions(
    client: TestClient, org: Org, deals: dict[str, int], fixed_clock: object
) -> None:
    """Without any interaction in four weeks the tile is not shown."""
    log_in(client, "manager_a")

    html = client.get("/").text

    assert "自动采集占比" not in html
