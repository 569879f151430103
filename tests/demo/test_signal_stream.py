"""The demo behaviour stream: deterministic, ordered, within each deal, plausible."""

from __future__ import annotations

import datetime as dt
import json
import re
import statistics
from collections import defaultdict
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.demo.test_generator import default_shape
from waggle.core.actor import Actor, system_actor
from waggle.core.clock import FixedClock
from waggle.core.db import transaction
from waggle.demo import build_demo_company, generate_company
from waggle.demo.builder import pipeline_shape
from waggle.demo.chat_text import CHAT_LINES, CUSTOMER
from waggle.demo.signals import (
    ContactFacts,
    DealFacts,
    deal_facts_from_company,
    demo_event_stream,
    load_deal_facts,
)
from waggle.signals.events import Channel, EventDraft, EventType
from waggle.signals.trackers import default_engine

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
SCALE = 0.01
CJK = re.compile(r"[\u4e00-\u9fff]")
CONTEXT = {
    "name": "王工",
    "topic": "MES系统",
    "competitor": "智云工联",
    "boss": "陈总",
    "day": "明天下午",
}


@pytest.fixture(scope="module")
def facts() -> list[DealFacts]:
    company = generate_company(seed=11, scale=SCALE, now=NOW, pipeline=default_shape())
    return deal_facts_from_company(company, default_shape())


@pytest.fixture(scope="module")
def events(facts: list[DealFacts]) -> list[EventDraft]:
    return list(demo_event_stream(facts, seed=5, now=NOW))


def one_deal(*, status: str = "won") -> DealFacts:
    created = dt.datetime(2025, 3, 3, 2, 0, tzinfo=dt.UTC)
    stages = ("lead", "discovery", "solution", "negotiation", "contract", status)
    history = tuple(
        (key, created + dt.timedelta(days=9 * step)) for step, key in enumerate(stages)
    )
    return DealFacts(
        opportunity_external_id="DEMO-O000042",
        account_external_id="DEMO-A00007",
        owner_external_id="DEMO-E0031",
        status=status,
        created_at=created,
        closed_at=history[-1][1],
        stage_history=history,
        contacts=(
            ContactFacts(
                "DEMO-C000101",
                "欧阳娜",
                "decision_maker",
                "13800000001",
                "na.ouyang@hengtai.cn",
                "wxid_ouyang000001",
            ),
            ContactFacts(
                "DEMO-C000102",
                "李强",
                "technical",
                "139-0000-0002",
                "qiang.li@hengtai.cn",
                "wxid_li000002",
            ),
        ),
        amount=Decimal("420000.00"),
        owner_email="wei.zhang@fengchao-demo.example",
        owner_phone="13600000003",
    )


def touches_per_week(
    facts: list[DealFacts], events: list[EventDraft]
) -> dict[str, list[float]]:
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        if event.event_type not in (EventType.STAGE_CHANGE, EventType.CRM_FIELD_UPDATE):
            counts[event.opportunity_ref or ""] += 1
    rates: dict[str, list[float]] = defaultdict(list)
    for deal in facts:
        weeks = ((deal.closed_at or NOW) - deal.created_at) / dt.timedelta(weeks=1)
        if weeks >= 2:
            ref = f"opportunity:{deal.opportunity_external_id}"
            rates[deal.status].append(counts[ref] / weeks)
    return rates


def test_same_seed_gives_the_same_stream(
    facts: list[DealFacts], events: list[EventDraft]
) -> None:
    """Two runs with one seed and anchor give identical drafts; another seed differs."""
    again = list(demo_event_stream(facts, seed=5, now=NOW))

    other = list(demo_event_stream(facts[:20], seed=6, now=NOW))

    assert again == events
    assert other != list(demo_event_stream(facts[:20], seed=5, now=NOW))


def test_a_deals_events_do_not_depend_on_the_other_deals(
    facts: list[DealFacts], events: list[EventDraft]
) -> None:
    """One deal streamed alone gives exactly its events from the full stream."""
    deal = facts[7]
    ref = f"opportunity:{deal.opportunity_external_id}"

    alone = list(demo_event_stream([deal], seed=5, now=NOW))

    assert alone == [event for event in events if event.opportunity_ref == ref]


def test_events_fall_within_each_deals_life(
    facts: list[DealFacts], events: list[EventDraft]
) -> None:
    """Every event lies between its deal's creation and its close (or now)."""
    lives = {
        f"opportunity:{d.opportunity_external_id}": (d.created_at, d.closed_at or NOW)
        for d in facts
    }

    outside = [
        event.source_id
        for event in events
        if not lives[event.opportunity_ref or ""][0]
        <= event.occurred_at
        <= lives[event.opportunity_ref or ""][1]
    ]

    assert outside == []
    assert {event.opportunity_ref for event in events} == set(lives)


def test_stream_is_in_global_time_order(events: list[EventDraft]) -> None:
    """Drafts come out sorted by occurred_at across all deals."""
    instants = [event.occurred_at for event in events]

    assert instants == sorted(instants)
    assert len(events) > 10_000


def test_source_ids_are_unique_and_name_the_opportunity(
    events: list[EventDraft],
) -> None:
    """Each draft's source id is unique and starts with its opportunity's id."""
    ids = [event.source_id for event in events]

    prefixes = {
        event.source_id.rsplit(":", 1)[0]
        == (event.opportunity_ref or "").removeprefix("opportunity:")
        for event in events
    }

    assert len(set(ids)) == len(ids)
    assert prefixes == {True}


def test_won_deals_get_more_touches_a_week_than_lost_ones(
    facts: list[DealFacts], events: list[EventDraft]
) -> None:
    """On a fixed sample, won deals average at least 1.25 times the weekly touches."""
    rates = touches_per_week(facts, events)

    won, lost = statistics.mean(rates["won"]), statistics.mean(rates["lost"])

    assert len(rates["won"]) >= 30 and len(rates["lost"]) >= 30
    assert won > 1.25 * lost


def test_won_deals_reach_the_decision_maker_more_often(
    facts: list[DealFacts], events: list[EventDraft]
) -> None:
    """Most won deals involve a decision maker; fewer than half of lost ones do."""
    people: dict[str, set[str]] = defaultdict(set)
    for event in events:
        people[event.opportunity_ref or ""].update(
            [event.sender or "", *event.recipients]
        )

    reached: dict[str, list[bool]] = defaultdict(list)
    for deal in facts:
        deciders = {
            f"contact:{c.external_id}"
            for c in deal.contacts
            if c.decision_role == "decision_maker"
        }
        seen = people[f"opportunity:{deal.opportunity_external_id}"]
        reached[deal.status].append(bool(deciders & seen))

    assert statistics.mean(reached["won"]) > 0.7
    assert statistics.mean(reached["lost"]) < 0.5


def test_stream_mixes_every_captured_event_type(events: list[EventDraft]) -> None:
    """All event types but tracker hits (which the pipeline adds) occur."""
    types = {event.event_type for event in events}

    assert types == set(EventType) - {EventType.TRACKER_HIT}
    assert len(types) == 15


def test_chat_messages_are_the_largest_share(events: list[EventDraft]) -> None:
    """WeCom chat messages make up most of the stream, all on the WeCom channel."""
    chats = [e for e in events if e.event_type == EventType.CHAT_MESSAGE]

    assert len(chats) / len(events) > 0.5
    assert {e.channel for e in chats} == {Channel.WECOM}
    assert {e.source for e in chats} == {"demo_wecom"}


def test_manual_activities_are_the_only_non_automatic_events(
    events: list[EventDraft],
) -> None:
    """Hand-logged activities, on the manual channel, are all that is not captured."""
    manual = [event for event in events if not event.is_automatic]

    assert {(e.event_type, e.channel, e.source) for e in manual} == {
        (EventType.ACTIVITY_LOGGED, Channel.MANUAL, "demo_manual")
    }
    assert 0.005 < len(manual) / len(events) < 0.1


def test_most_events_fall_in_china_office_hours(events: list[EventDraft]) -> None:
    """Most touches happen 09:00-18:00 China time on a weekday."""
    china = dt.timezone(dt.timedelta(hours=8))
    local = [event.occurred_at.astimezone(china) for event in events]

    in_hours = [t for t in local if t.weekday() < 5 and 9 <= t.hour < 18]

    assert len(in_hours) / len(local) > 0.75


def test_chinese_text_survives_a_json_lines_round_trip(
    events: list[EventDraft],
) -> None:
    """Texts and attributes serialise as UTF-8 JSON and read back unchanged."""
    sample = events[:3000]

    lines = [
        json.dumps(
            {"text": e.text, "attributes": dict(e.attributes)}, ensure_ascii=False
        ).encode("utf-8")
        for e in sample
    ]
    read = [json.loads(line.decode("utf-8")) for line in lines]

    assert [r["text"] for r in read] == [e.text for e in sample]
    assert [r["attributes"] for r in read] == [dict(e.attributes) for e in sample]
    assert sum(bool(CJK.search(e.text or "")) for e in sample) > 1000


def test_chat_lines_trigger_the_trackers_they_are_written_for() -> None:
    """Customer lines hit their topic's tracker; negated and neutral ones do not."""
    engine = default_engine()
    categories = (
        "pricing",
        "trial",
        "tender",
        "competitor",
        "objection",
        "budget",
        "procurement",
        "legal",
        "decision_maker",
    )

    def found(line: str) -> set[tuple[str, bool]]:
        text = line.format_map(CONTEXT)
        return {
            (h.category, h.is_negated) for h in engine.match(text, speaker="customer")
        }

    misses = [
        line
        for topic in categories
        for line in CHAT_LINES[topic][CUSTOMER]
        if (topic, False) not in found(line)
    ]
    negated = {
        hit for line in CHAT_LINES["negated_pricing"][CUSTOMER] for hit in found(line)
    }
    neutral = {hit for line in CHAT_LINES["neutral"][CUSTOMER] for hit in found(line)}

    assert misses == []
    assert negated == {("pricing", True), ("trial", True)}
    assert neutral == set()


def test_a_deal_streams_its_stage_history_as_stage_changes() -> None:
    """Stage-change drafts repeat the deal's history, the first at its creation."""
    deal = one_deal()

    drafts = list(demo_event_stream([deal], seed=1, now=NOW))

    changes = [
        (e.attributes["from_stage"], e.attributes["to_stage"], e.occurred_at)
        for e in drafts
        if e.event_type == EventType.STAGE_CHANGE
    ]
    assert changes == [
        (None, "lead", deal.created_at),
        ("lead", "discovery", deal.created_at + dt.timedelta(days=9)),
        ("discovery", "solution", deal.created_at + dt.timedelta(days=18)),
        ("solution", "negotiation", deal.created_at + dt.timedelta(days=27)),
        ("negotiation", "contract", deal.created_at + dt.timedelta(days=36)),
        ("contract", "won", deal.created_at + dt.timedelta(days=45)),
    ]
    assert drafts[0].event_type == EventType.STAGE_CHANGE
    assert {e.account_ref for e in drafts} == {"account:DEMO-A00007"}


def test_stage_changes_can_be_left_to_the_crm() -> None:
    """Without stage changes the stream holds only touches and milestones."""
    deal = one_deal()

    drafts = list(
        demo_event_stream([deal], seed=1, now=NOW, include_stage_changes=False)
    )

    assert drafts
    assert EventType.STAGE_CHANGE not in {e.event_type for e in drafts}


def test_direct_references_name_employees_and_contacts() -> None:
    """By default every sender is the owner's employee id or one of the contacts."""
    deal = one_deal()

    drafts = list(demo_event_stream([deal], seed=1, now=NOW))

    people = {e.sender for e in drafts} | {r for e in drafts for r in e.recipients}
    assert people <= {
        "employee:DEMO-E0031",
        "contact:DEMO-C000101",
        "contact:DEMO-C000102",
    }


def test_native_references_name_people_as_each_channel_does() -> None:
    """Chats use wecom/wechat ids, calls phone digits and e-mails addresses."""
    deal = one_deal()

    drafts = list(demo_event_stream([deal], seed=1, now=NOW, native_references=True))

    by_type: dict[EventType, set[str]] = defaultdict(set)
    for e in drafts:
        by_type[e.event_type].update([e.sender or "", *e.recipients])
    assert by_type[EventType.CHAT_MESSAGE] == {
        "wecom:demo-e0031",
        "wechat:wxid_ouyang000001",
        "wechat:wxid_li000002",
    }
    assert by_type[EventType.CALL] <= {
        "phone:13600000003",
        "phone:13800000001",
        "phone:13900000002",
    }
    assert by_type[EventType.EMAIL_SENT] <= {
        "email:wei.zhang@fengchao-demo.example",
        "email:na.ouyang@hengtai.cn",
        "email:qiang.li@hengtai.cn",
    }


def test_open_deals_stop_at_now() -> None:
    """An open deal's events run from its creation up to the anchor, not past it."""
    deal = one_deal(status="open")
    deal = DealFacts(
        **{
            **{f: getattr(deal, f) for f in DealFacts.__dataclass_fields__},
            "closed_at": None,
            "stage_history": deal.stage_history[:3],
        }
    )
    now = deal.created_at + dt.timedelta(days=40)

    drafts = list(demo_event_stream([deal], seed=2, now=now))

    assert max(e.occurred_at for e in drafts) <= now
    assert min(e.occurred_at for e in drafts) == deal.created_at


@pytest.fixture
def built(sessions: sessionmaker[Session], fixed_clock: FixedClock) -> int:
    with transaction(sessions) as session:
        build_demo_company(session, system_actor("demo"), seed=3, scale=SCALE)
    return 3


def test_loader_reads_the_built_company_as_generated(
    built: int, session: Session, fixed_clock: FixedClock
) -> None:
    """Facts loaded from the demo database equal those of the generated rows."""
    shape = pipeline_shape(session)
    company = generate_company(
        seed=built, scale=SCALE, now=fixed_clock(), pipeline=shape
    )
    expected = deal_facts_from_company(company, shape)

    loaded = load_deal_facts(session, system_actor("signals-demo"))
    first = load_deal_facts(session, system_actor("signals-demo"), limit=5)

    assert len(loaded) == 200
    assert loaded == expected
    assert first == expected[:5]
    assert any(CJK.search(c.name) for c in loaded[0].contacts)


def test_loader_keeps_a_rep_to_their_own_deals(built: int, session: Session) -> None:
    """A representative's actor loads only the opportunities they own."""
    everything = load_deal_facts(session, system_actor("signals-demo"))
    owner = everything[0].owner_external_id
    employee_id = int(owner.removeprefix("DEMO-E"))
    rep = Actor(
        user_id=None, username="rep", roles=frozenset({"rep"}), employee_id=employee_id
    )

    own = load_deal_facts(session, rep)

    assert own == [deal for deal in everything if deal.owner_external_id == owner]
