"""A seeded stream of behaviour events for the demo company (演示行为数据流).

:func:`demo_event_stream` turns the demo company's opportunities, described
as :class:`DealFacts`, into :class:`~waggle.signals.events.EventDraft`
objects as connectors would produce them: WeCom chats (most of the volume),
calls, e-mails, meetings and their minutes, field visits, opened materials,
quotes, trials, tasks, service tickets, CRM stage changes and a minority of
manually logged activities. The full company (about 20,000 opportunities
over two years) gives about 1.5 million events; the facts come from the
generated rows (:func:`deal_facts_from_company`) or from the database after
``waggle demo`` (:func:`load_deal_facts`).

How it is built, per opportunity, from its own random source seeded by
``seed`` and the opportunity's external id (so a deal's events do not depend
on which other deals are in the run):

- a touch budget (one touch is one event): the owner's pace (4.1 to 13.6
  touches a week, fixed per employee by a hash of ``seed`` and the employee
  id), times an outcome factor (won deals are worked harder), times
  log-normal noise;
- touch instants: half spread over the deal's life, half clustered around
  its stage changes, moved into China office hours on working days
  (``chinese_calendar``, so National Day is quiet and make-up Saturdays are
  not); chats sometimes run into the evening;
- what a touch is: weighted by outcome (won deals see more meetings, visits
  and material opens, and more distinct contacts including the decision
  maker); chat topics follow the stage (needs early, price in the middle,
  procurement and contract late) tilted by outcome (lost deals hear more
  objections and competitors);
- ghosting: most lost deals (and some open ones) end in a long silence in
  which the rep's messages go unanswered and calls ring out.

Every rule is a tendency with noise, so outcome is not readable off one
feature. Events lie in ``[created_at, closed_at]`` (open deals: up to
``now``).

References. By default people are named directly, ``employee:<external id>``
for the rep and ``contact:<external id>`` for the customer, because the demo
database holds no identity links for chat platforms. With
``native_references=True`` each channel names them as its connector would:
chats ``wecom:<employee external id, lower case>`` and
``wechat:<contact wechat id>``, calls ``phone:<digits>``, e-mail
``email:<address>`` (meetings, visits, materials and CRM events keep the
direct references). Every draft carries ``account:<external id>`` and
``opportunity:<external id>``.

Sources and ids: ``demo_wecom``, ``demo_calls``, ``demo_email``,
``demo_calendar`` (meetings, minutes), ``demo_checkins`` (visits),
``demo_docs`` (materials), ``demo_crm`` (stage changes, field updates,
quotes, trials, tasks), ``demo_service`` (tickets) and ``demo_manual``
(activities typed in by reps, the only drafts with ``is_automatic`` False).
``source_id`` is ``<opportunity external id>:<n>`` with ``n`` counting the
deal's events in generation order, so it is unique across all sources.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import heapq
import itertools
import logging
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

# chinesecalendar ships no type information (no py.typed marker).
import chinese_calendar  # type: ignore[import-untyped]
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.crm.models import Account, Contact, Opportunity, PipelineStage, StageChange
from waggle.demo.catalog import ACTIVITY_BODIES, ACTIVITY_SUBJECTS
from waggle.demo.chat_text import (
    CHAT_LINES,
    COMPETITORS,
    CUSTOMER,
    DEAL_TOPICS,
    EMAIL_CLOSING,
    EMAIL_OPENING,
    EMAIL_RECEIVED_SUBJECTS,
    EMAIL_SENT_SUBJECTS,
    FIELD_UPDATES,
    MATERIALS,
    MEETING_DAYS,
    MEETING_TITLES,
    MINUTES_HEADING,
    OUTCOME_TILT,
    PHASE_TOPIC_WEIGHTS,
    REP,
    TASK_TITLES,
    TICKET_TITLES,
    VISIT_PURPOSES,
)
from waggle.demo.deals import PipelineShape
from waggle.demo.generator import DemoCompany
from waggle.governance import authorize, record_audit, row_filter
from waggle.identity.models import Employee
from waggle.signals.events import Channel, EventDraft, EventType

logger = logging.getLogger(__name__)

T = TypeVar("T")
# (instant in microseconds, number within the deal, draft)
_Timed = tuple[int, int, EventDraft]

SOURCE_CHAT = "demo_wecom"
SOURCE_CALLS = "demo_calls"
SOURCE_EMAIL = "demo_email"
SOURCE_CALENDAR = "demo_calendar"
SOURCE_VISITS = "demo_checkins"
SOURCE_DOCS = "demo_docs"
SOURCE_CRM = "demo_crm"
SOURCE_SERVICE = "demo_service"
SOURCE_MANUAL = "demo_manual"

# Touches a week of the weakest and the most active representative.
SLOWEST_PACE, FASTEST_PACE = 4.1, 13.6
OUTCOME_PACE = {"won": 1.35, "open": 1.0, "lost": 0.7}
PACE_SIGMA = 0.4
GHOST_CHANCE = {"won": 0.03, "open": 0.35, "lost": 0.65}
GHOST_SKIP = 0.7
CLUSTER_SHARE = 0.5
CLUSTER_DAYS = 2.5
EVENING_SHARE = 0.08
ANSWER_CHANCE = {"won": 0.82, "open": 0.72, "lost": 0.6}
EMAIL_REPLY_CHANCE = {"won": 0.6, "open": 0.45, "lost": 0.35}
TRIAL_CHANCE = {"won": 0.55, "open": 0.4, "lost": 0.3}
# How much faster (below 1) or slower each side answers a chat, by outcome.
REPLY_FACTOR = {"won": 0.6, "open": 1.0, "lost": 1.6}
CUSTOMER_REPLY_FACTOR = {"won": 0.7, "open": 1.0, "lost": 2.0}

# Touch kinds and their weights; OUTCOME_KIND_TILT multiplies them.
TOUCH_KINDS = (
    ("chat", 48.0),
    ("call", 15.0),
    ("email", 10.0),
    ("meeting", 4.0),
    ("visit", 3.0),
    ("material", 6.0),
    ("task", 4.0),
    ("manual", 5.0),
    ("field_update", 1.5),
)
OUTCOME_KIND_TILT = {
    "won": {"meeting": 1.5, "visit": 1.8, "material": 1.8},
    "open": {},
    "lost": {"meeting": 0.7, "visit": 0.5, "material": 0.6, "chat": 1.1},
}

SECOND = 1_000_000  # instants are integer microseconds since the epoch
MINUTE, HOUR, DAY = 60 * SECOND, 3600 * SECOND, 86400 * SECOND
CHINA_OFFSET = 8 * HOUR
OPEN_STAGE_COUNT = 5
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DATE = dt.date(1970, 1, 1)
_COMPOUND_SURNAMES = ("欧阳", "司马", "上官", "诸葛")


@dataclass(frozen=True, slots=True)
class ContactFacts:
    """A customer contact as the stream needs it."""

    external_id: str
    name: str
    decision_role: str | None = None
    phone: str | None = None
    email: str | None = None
    wechat_id: str | None = None


@dataclass(frozen=True, slots=True)
class DealFacts:
    """What the stream needs of one opportunity; ``status`` is won, lost or open.

    ``stage_history`` lists (stage key, entered at) from creation on, as the
    stage-change table holds it; ``contacts`` are the account's contacts.
    """

    opportunity_external_id: str
    account_external_id: str
    owner_external_id: str
    status: str
    created_at: dt.datetime
    closed_at: dt.datetime | None
    stage_history: tuple[tuple[str, dt.datetime], ...]
    contacts: tuple[ContactFacts, ...]
    amount: Decimal = Decimal(0)
    owner_email: str | None = None
    owner_phone: str | None = None


# --------------------------------------------------------------------------
# Loading the facts


def deal_facts_from_company(
    company: DemoCompany, pipeline: PipelineShape, *, limit: int | None = None
) -> list[DealFacts]:
    """Describe the generated company's opportunities (the first ``limit`` by id)."""
    tables = company.tables
    stage_keys = {
        stage.id: stage.key
        for stage in (*pipeline.open_stages, pipeline.won, pipeline.lost)
    }
    employees = {row["id"]: row for row in tables["employees"]}
    accounts = {row["id"]: row["external_id"] for row in tables["accounts"]}
    contacts: dict[int, list[ContactFacts]] = defaultdict(list)
    for row in tables["contacts"]:
        contacts[row["account_id"]].append(_contact_facts(row))
    history: dict[int, list[tuple[str, dt.datetime]]] = defaultdict(list)
    for row in tables["stage_changes"]:
        history[row["opportunity_id"]].append(
            (stage_keys[row["to_stage_id"]], row["changed_at"])
        )
    facts = []
    for row in tables["opportunities"][:limit]:
        owner = employees.get(row["owner_id"])
        if owner is None:
            logger.warning(
                "demo opportunity skipped",
                extra={"opportunity_id": row["id"], "reason": "no_owner"},
            )
            continue
        facts.append(
            _deal_facts(
                row,
                account=accounts[row["account_id"]],
                owner=owner,
                contacts=contacts[row["account_id"]],
                history=history[row["id"]],
            )
        )
    return facts


def load_deal_facts(
    session: Session, actor: Actor, *, limit: int | None = None
) -> list[DealFacts]:
    """Read the opportunities the actor may see (the first ``limit`` by id).

    Read-only but for the audit rows of the read, added to the session's
    transaction (a caller that does not commit writes nothing). Opportunities
    without an owner are left out: the stream needs a representative.

    Raises:
        PolicyDenied: the actor may not read opportunities, accounts,
            contacts or employees.
    """
    scope = authorize(session, actor, "read", "opportunities")
    for resource in ("accounts", "contacts", "employees"):
        authorize(session, actor, "read", resource)
    visible = row_filter(session, actor, scope, Opportunity.owner_id)
    chosen = (
        select(Opportunity.id)
        .where(visible, Opportunity.owner_id.is_not(None))
        .order_by(Opportunity.id)
        .limit(limit)
    )
    opportunities = session.execute(
        select(Opportunity, Account.external_id, Employee)
        .join(Account, Account.id == Opportunity.account_id)
        .join(Employee, Employee.id == Opportunity.owner_id)
        .where(Opportunity.id.in_(chosen))
        .order_by(Opportunity.id)
    ).all()
    history = _load_history(session, chosen)
    contacts = _load_contacts(session, chosen)
    facts = [
        _deal_facts(
            _row_of(opportunity),
            account=account,
            owner=_row_of(owner),
            contacts=contacts[opportunity.account_id],
            history=history[opportunity.id],
        )
        for opportunity, account, owner in opportunities
    ]
    _audit_read(session, actor, opportunities, contacts)
    logger.info("demo deal facts loaded", extra={"opportunities": len(facts)})
    return facts


def _load_history(
    session: Session, chosen: Select[Any]
) -> dict[int, list[tuple[str, dt.datetime]]]:
    history: dict[int, list[tuple[str, dt.datetime]]] = defaultdict(list)
    rows = session.execute(
        select(StageChange.opportunity_id, PipelineStage.key, StageChange.changed_at)
        .join(PipelineStage, PipelineStage.id == StageChange.to_stage_id)
        .where(StageChange.opportunity_id.in_(chosen))
        .order_by(StageChange.opportunity_id, StageChange.changed_at, StageChange.id)
    )
    for opportunity_id, key, changed_at in rows:
        history[opportunity_id].append((key, changed_at))
    return history


def _load_contacts(
    session: Session, chosen: Select[Any]
) -> dict[int, list[ContactFacts]]:
    accounts = select(Opportunity.account_id).where(Opportunity.id.in_(chosen))
    contacts: dict[int, list[ContactFacts]] = defaultdict(list)
    for contact in session.scalars(
        select(Contact).where(Contact.account_id.in_(accounts)).order_by(Contact.id)
    ):
        contacts[contact.account_id].append(_contact_facts(_row_of(contact)))
    return contacts


def _audit_read(
    session: Session,
    actor: Actor,
    opportunities: Sequence[Any],
    contacts: dict[int, list[ContactFacts]],
) -> None:
    detail = "demo signal stream facts"
    record_audit(
        session,
        actor,
        action="read",
        resource="opportunities",
        record_ids=[row[0].id for row in opportunities],
        detail=detail,
    )
    record_audit(
        session,
        actor,
        action="read",
        resource="contacts",
        record_ids=[c.external_id for group in contacts.values() for c in group],
        detail=detail,
    )


def _row_of(record: Any) -> dict[str, Any]:
    return {column.key: getattr(record, column.key) for column in record.__table__.c}


def _contact_facts(row: dict[str, Any]) -> ContactFacts:
    return ContactFacts(
        external_id=row["external_id"],
        name=row["name"],
        decision_role=row["decision_role"],
        phone=row["phone"],
        email=row["email"],
        wechat_id=row["wechat_id"],
    )


def _deal_facts(
    row: dict[str, Any],
    *,
    account: str,
    owner: dict[str, Any],
    contacts: list[ContactFacts],
    history: list[tuple[str, dt.datetime]],
) -> DealFacts:
    return DealFacts(
        opportunity_external_id=row["external_id"],
        account_external_id=account,
        owner_external_id=owner["external_id"],
        status=row["status"],
        created_at=row["created_at"],
        closed_at=row["closed_at"],
        stage_history=tuple(history),
        contacts=tuple(contacts),
        amount=row["amount"],
        owner_email=owner["email"],
        owner_phone=owner["phone"],
    )


# --------------------------------------------------------------------------
# The stream


def demo_event_stream(
    deals: Iterable[DealFacts],
    *,
    seed: int,
    now: dt.datetime,
    native_references: bool = False,
    include_stage_changes: bool = True,
) -> Iterator[EventDraft]:
    """Yield the behaviour events of ``deals`` in global time order.

    Events at the same instant come in the order of their deals' creation
    (then external id), then in generation order. A deal is scripted only
    when the stream reaches its creation and let go after its last event, so
    memory holds the deals alive at the current instant (a few thousand for
    the full company), not the whole stream. ``now`` ends the life of open
    deals; the same deals, seed and ``now`` always give the same drafts.
    """
    ordered = sorted(deals, key=lambda d: (d.created_at, d.opportunity_external_id))
    paces = _Paces(seed)
    now_us = _micros(now)

    def script(facts: DealFacts) -> list[_Timed]:
        return _DealScript(
            facts,
            seed=seed,
            now_us=now_us,
            pace=paces.of(facts.owner_external_id),
            native_references=native_references,
        ).events(include_stage_changes=include_stage_changes)

    yield from _merge_by_start(ordered, script)


def _merge_by_start(
    ordered: Sequence[DealFacts], script: Callable[[DealFacts], list[_Timed]]
) -> Iterator[EventDraft]:
    """Merge per-deal event lists, scripting each deal only when it starts."""
    heap: list[tuple[int, int, EventDraft, Iterator[_Timed]]]
    heap = []
    starts = [_micros(facts.created_at) for facts in ordered]
    position = 0
    while position < len(ordered) or heap:
        if position < len(ordered) and (not heap or starts[position] <= heap[0][0]):
            events = _drain(script(ordered[position]))
            first = next(events, None)
            if first is not None:
                heapq.heappush(heap, (first[0], position, first[2], events))
            position += 1
            continue
        _instant_us, deal, draft, events = heap[0]
        yield draft
        following = next(events, None)
        if following is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (following[0], deal, following[2], events))


def _drain(events: list[_Timed]) -> Iterator[_Timed]:
    """Yield ``events`` in order, letting go of each one once it is yielded."""
    events.reverse()
    while events:
        yield events.pop()


class _Paces:
    """Each employee's touches a week, fixed by a hash of the seed and their id."""

    def __init__(self, seed: int):
        self.seed = seed
        self._known: dict[str, float] = {}

    def of(self, employee: str) -> float:
        if employee not in self._known:
            digest = hashlib.sha256(f"{self.seed}:{employee}".encode()).digest()
            share = int.from_bytes(digest[:4], "big") / 2**32
            self._known[employee] = SLOWEST_PACE + (FASTEST_PACE - SLOWEST_PACE) * share
        return self._known[employee]


def _micros(instant: dt.datetime) -> int:
    return (instant - _EPOCH) // dt.timedelta(microseconds=1)


def _instant(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=micros)


@functools.lru_cache(maxsize=4096)
def _is_workday(day: int) -> bool:
    """Whether China works on day number ``day`` since the epoch (holidays known)."""
    date = _EPOCH_DATE + dt.timedelta(days=day)
    try:
        return bool(chinese_calendar.is_workday(date))
    except NotImplementedError:
        return date.weekday() < 5


@functools.lru_cache(maxsize=4096)
def _next_workday(day: int) -> int:
    following = day + 1
    while not _is_workday(following):
        following += 1
    return following


@functools.lru_cache(maxsize=64)
def _topic_table(phase: int, outcome: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    tilt = OUTCOME_TILT.get(outcome, {})
    weights = PHASE_TOPIC_WEIGHTS[phase]
    topics = tuple(weights)
    cumulative = itertools.accumulate(w * tilt.get(t, 1.0) for t, w in weights.items())
    return topics, tuple(cumulative)


@functools.lru_cache(maxsize=8)
def _kind_table(outcome: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    tilt = OUTCOME_KIND_TILT.get(outcome, {})
    kinds = tuple(kind for kind, _weight in TOUCH_KINDS)
    cumulative = itertools.accumulate(w * tilt.get(k, 1.0) for k, w in TOUCH_KINDS)
    return kinds, tuple(cumulative)


def _address(contact: ContactFacts) -> str:
    """How a rep addresses the contact in chat: 王总, 李经理, 张工."""
    name = contact.name
    surname = name[:2] if name[:2] in _COMPOUND_SURNAMES else name[:1]
    if contact.decision_role == "decision_maker":
        return f"{surname}总"
    if contact.decision_role == "technical":
        return f"{surname}工"
    return f"{surname}经理"


@dataclass(frozen=True, slots=True)
class _Person:
    """One participant's references, per channel."""

    direct: str
    chat: str
    phone: str
    email: str


class _DealScript:
    """Writes one opportunity's events; one instance per deal, used once."""

    def __init__(
        self,
        facts: DealFacts,
        *,
        seed: int,
        now_us: int,
        pace: float,
        native_references: bool,
    ):
        self.facts = facts
        self.rng = random.Random(f"{seed}:{facts.opportunity_external_id}")
        self.outcome = facts.status if facts.status in OUTCOME_PACE else "open"
        self.start = _micros(facts.created_at)
        closed = facts.closed_at
        self.end = max(self.start, _micros(closed) if closed else now_us)
        self.stage_starts = [_micros(entered) for _key, entered in facts.stage_history]
        self.pace = pace
        self.skill = (pace - SLOWEST_PACE) / (FASTEST_PACE - SLOWEST_PACE)
        self.account_ref = f"account:{facts.account_external_id}"
        self.opportunity_ref = f"opportunity:{facts.opportunity_external_id}"
        self.rep = _rep_person(facts, native_references)
        self.people = [_contact_person(c, native_references) for c in facts.contacts]
        self.pending: list[_Timed] = []
        self._plan_cast()

    # Who takes part --------------------------------------------------------

    def _plan_cast(self) -> None:
        """Choose the contacts the deal engages; won deals reach more, and the boss."""
        rng, contacts = self.rng, self.facts.contacts
        indexes = list(range(len(contacts)))
        rng.shuffle(indexes)
        deciders = [i for i in indexes if contacts[i].decision_role == "decision_maker"]
        others = [i for i in indexes if i not in deciders]
        limit = {"won": len(indexes), "open": 3, "lost": 2}[self.outcome]
        low = min(2 if self.outcome == "won" else 1, len(indexes))
        count = rng.randint(low, max(low, min(limit, len(indexes))))
        boss_chance = {"won": 0.85, "open": 0.5, "lost": 0.3}[self.outcome]
        chosen = others[:count]
        if deciders and (rng.random() < boss_chance or not chosen):
            chosen = [*chosen[: max(0, count - 1)], deciders[0]]
        self.cast = chosen or indexes[:1]
        self.cast_weights = list(
            itertools.accumulate(3.0 if n == 0 else 1.0 for n in range(len(self.cast)))
        )
        boss = next((contacts[i] for i in deciders), None)
        self.boss = _address(boss) if boss else "我们老总"
        self.topic = rng.choice(DEAL_TOPICS)
        self.competitor = rng.choice(COMPETITORS)
        self.contexts = [
            {
                "name": _address(contact),
                "topic": self.topic,
                "competitor": self.competitor,
                "boss": self.boss,
                "day": MEETING_DAYS[0],
            }
            for contact in contacts
        ]

    def _contact(self) -> int:
        return _weighted(self.rng, self.cast, self.cast_weights)

    # The plan --------------------------------------------------------------

    def events(self, *, include_stage_changes: bool) -> list[_Timed]:
        """Return the deal's events as (instant, number, draft) in time order."""
        if include_stage_changes:
            self._stage_changes()
        if self.people:
            self._milestones()
            self._touches()
        # Numbers are unique, so ties on the instant never compare drafts.
        self.pending.sort()
        return self.pending

    def _touches(self) -> None:
        """Spend the deal's touch budget (events) on touches of weighted kinds."""
        rng = self.rng
        weeks = max((self.end - self.start) / (7 * DAY), 1 / 7)
        noise = math.exp(rng.gauss(0.0, PACE_SIGMA))
        target = max(3, round(self.pace * OUTCOME_PACE[self.outcome] * weeks * noise))
        ghost_from = self._ghost_start()
        kinds, cumulative = _kind_table(self.outcome)
        made = 0
        while made < target:
            at = self._touch_instant()
            kind = _weighted(rng, kinds, cumulative)
            is_ghosted = at >= ghost_from
            if is_ghosted and rng.random() < GHOST_SKIP:
                made += 1
                continue
            made += _WRITERS[kind](self, at, is_ghosted)

    def _ghost_start(self) -> int:
        """Return when the customer stops answering (after the end: never)."""
        life = self.end - self.start
        if life < 10 * DAY or self.rng.random() >= GHOST_CHANCE[self.outcome]:
            return self.end + 1
        return self.end - int(life * self.rng.uniform(0.25, 0.6))

    def _touch_instant(self) -> int:
        """Draw an office-hours instant, clustered around stage changes."""
        rng = self.rng
        for _attempt in range(3):
            if self.stage_starts and rng.random() < CLUSTER_SHARE:
                anchor = _pick(rng, self.stage_starts)
                base = anchor + int(rng.gauss(0.0, CLUSTER_DAYS) * DAY)
            else:
                base = _between(rng, self.start, self.end)
            at = _office_instant(rng, base)
            if self.start <= at <= self.end:
                return at
        return rng.randint(self.start, self.end)

    def _near(self, around: int, *, days: float) -> int:
        """Draw an office-hours instant up to ``days`` after ``around``."""
        for _attempt in range(3):
            base = around + int(self.rng.uniform(0.0, days) * DAY)
            at = _office_instant(self.rng, base)
            if self.start <= at <= self.end:
                return at
        return min(max(around, self.start), self.end)

    def _phase(self, at: int) -> int:
        """Return 0 (lead, discovery), 1 (solution, negotiation) or 2 (contract)."""
        index = max(0, bisect.bisect_right(self.stage_starts, at) - 1)
        return min(2, index * 3 // OPEN_STAGE_COUNT)

    def _topic(self, at: int) -> str:
        topics, cumulative = _topic_table(self._phase(at), self.outcome)
        return _weighted(self.rng, topics, cumulative)

    def _lines(self, topic: str, speaker: int, count: int, index: int) -> list[str]:
        return [self._line(topic, speaker, index) for _ in range(count)]

    def _line(self, topic: str, speaker: int, index: int) -> str:
        lines = CHAT_LINES[topic][speaker] or CHAT_LINES["neutral"][speaker]
        return _pick(self.rng, lines).format_map(self.contexts[index])

    def _add(
        self,
        at: int,
        event_type: EventType,
        channel: Channel,
        source: str,
        sender: str,
        recipients: tuple[str, ...] = (),
        *,
        text: str | None = None,
        attributes: dict[str, Any] | None = None,
        thread: str | None = None,
        is_automatic: bool = True,
        occurred_at: dt.datetime | None = None,
    ) -> bool:
        """Record one event; refuse (False) one outside the deal's life."""
        if not self.start <= at <= self.end:
            return False
        number = len(self.pending)
        draft = EventDraft(
            source=source,
            source_id=f"{self.facts.opportunity_external_id}:{number}",
            event_type=event_type,
            occurred_at=occurred_at or _instant(at),
            channel=channel,
            sender=sender,
            recipients=recipients,
            account_ref=self.account_ref,
            opportunity_ref=self.opportunity_ref,
            thread_ref=thread,
            text=text,
            attributes=attributes if attributes is not None else {},
            is_automatic=is_automatic,
        )
        self.pending.append((at, number, draft))
        return True

    # Milestones ------------------------------------------------------------

    def _stage_changes(self) -> None:
        previous: str | None = None
        history = self.facts.stage_history
        for (key, entered), at in zip(history, self.stage_starts, strict=True):
            self._add(
                at,
                EventType.STAGE_CHANGE,
                Channel.CRM,
                SOURCE_CRM,
                self.rep.direct,
                attributes={"from_stage": previous, "to_stage": key},
                occurred_at=entered,
            )
            previous = key

    def _milestones(self) -> None:
        """Add the trial, the quote and (won deals) the revised quote."""
        rng = self.rng
        reached = len(self.stage_starts) - (0 if self.outcome == "open" else 1)
        if reached > 2 and rng.random() < TRIAL_CHANCE[self.outcome]:
            self._trial(self.stage_starts[2])
        if reached > 3:
            self._quote(self.stage_starts[3], version=1, share=rng.uniform(1.0, 1.25))
        elif reached > 2 and rng.random() < 0.4:
            self._quote(self.stage_starts[2], version=1, share=rng.uniform(1.0, 1.3))
        if self.outcome == "won" and reached > 4 and rng.random() < 0.6:
            self._quote(self.stage_starts[4], version=2, share=1.0)

    def _quote(self, around: int, *, version: int, share: float) -> None:
        amount = (self.facts.amount * Decimal(f"{share:.3f}")).quantize(Decimal("0.01"))
        person = self.people[self._decider_or_primary()]
        self._add(
            self._near(around, days=3),
            EventType.QUOTE_SENT,
            Channel.EMAIL,
            SOURCE_CRM,
            self.rep.email,
            (person.email,),
            attributes={"amount": str(amount), "currency": "CNY", "version": version},
        )

    def _trial(self, around: int) -> None:
        rng = self.rng
        at = self._near(around, days=5)
        days = rng.choice((14, 30))
        person = self.people[self.cast[0]]
        self._add(
            at,
            EventType.TRIAL_STARTED,
            Channel.CRM,
            SOURCE_CRM,
            self.rep.direct,
            (person.direct,),
            attributes={"trial_days": days, "seats": rng.randint(3, 30)},
        )
        for _ticket in range(rng.randint(0, 2)):
            self._add(
                self._near(at, days=days),
                EventType.SERVICE_TICKET,
                Channel.CRM,
                SOURCE_SERVICE,
                person.direct,
                (self.rep.direct,),
                text=rng.choice(TICKET_TITLES),
                attributes={
                    "priority": rng.choice(("low", "normal", "normal", "high")),
                    "status": "resolved",
                },
            )

    def _decider_or_primary(self) -> int:
        contacts = self.facts.contacts
        for index in self.cast:
            if contacts[index].decision_role == "decision_maker":
                return index
        return self.cast[0]

    # Touches (each returns how many events it wrote, at least one) ---------

    def _chat(self, at: int, is_ghosted: bool) -> int:
        """Write a burst of WeCom messages, rep and customer taking turns."""
        rng = self.rng
        index = self._contact()
        person = self.people[index]
        self.contexts[index]["day"] = _pick(rng, MEETING_DAYS)
        topic = "ghost" if is_ghosted else self._topic(at)
        count = _between(rng, 1, 2) if is_ghosted else _between(rng, 2, 9)
        speaker = REP if is_ghosted or rng.random() < 0.6 else CUSTOMER
        thread = f"wecom_chat:{self.rep.direct}/{person.direct}"
        made = 0
        for number in range(count):
            line_topic = topic if number < 2 or rng.random() < 0.5 else "neutral"
            text = self._line(line_topic, speaker, index)
            rep_speaks = speaker == REP
            if not self._add(
                at,
                EventType.CHAT_MESSAGE,
                Channel.WECOM,
                SOURCE_CHAT,
                self.rep.chat if rep_speaks else person.chat,
                (person.chat if rep_speaks else self.rep.chat,),
                text=text,
                thread=thread,
                attributes={"msgtype": "text"},
            ):
                break
            made += 1
            following = speaker if is_ghosted or rng.random() < 0.25 else 1 - speaker
            at += self._gap(speaker, following)
            speaker = following
        return max(made, 1)

    def _gap(self, speaker: int, following: int) -> int:
        """Return the pause before the next message: quick replies win deals."""
        rng = self.rng
        if following == speaker:
            return _between(rng, 5, 90) * SECOND
        if following == REP:
            median = (120 + 900 * (1 - self.skill)) * REPLY_FACTOR[self.outcome]
        else:
            median = 600 * CUSTOMER_REPLY_FACTOR[self.outcome]
        return int(median * math.exp(rng.gauss(0.0, 0.9)) * SECOND) + SECOND

    def _call(self, at: int, is_ghosted: bool) -> int:
        rng = self.rng
        person = self.people[self._contact()]
        is_inbound = not is_ghosted and rng.random() < 0.25
        chance = 0.15 if is_ghosted else ANSWER_CHANCE[self.outcome]
        is_answered = rng.random() < chance
        median = 240 if self.outcome == "won" else 150
        duration = round(median * math.exp(rng.gauss(0.0, 0.8))) if is_answered else 0
        sender, recipient = (
            (person.phone, self.rep.phone)
            if is_inbound
            else (self.rep.phone, person.phone)
        )
        self._add(
            at,
            EventType.CALL,
            Channel.PHONE,
            SOURCE_CALLS,
            sender,
            (recipient,),
            attributes={
                "duration_seconds": duration,
                "answered": is_answered,
                "direction": "inbound" if is_inbound else "outbound",
                "ring_seconds": rng.randint(3, 30),
            },
        )
        return 1

    def _email(self, at: int, is_ghosted: bool) -> int:
        rng = self.rng
        index = self._contact()
        person, context = self.people[index], self.contexts[index]
        topic = "ghost" if is_ghosted else self._topic(at)
        thread = f"mail:{self.facts.opportunity_external_id}/{len(self.pending)}"
        if not is_ghosted and rng.random() < 0.2:
            subject = rng.choice(EMAIL_RECEIVED_SUBJECTS).format_map(context)
            body = "\n".join(self._lines(topic, CUSTOMER, 2, index))
            self._mail(at, EventType.EMAIL_RECEIVED, person, subject, body, thread)
            return 1
        subject = rng.choice(EMAIL_SENT_SUBJECTS).format_map(context)
        body = (
            EMAIL_OPENING.format_map(context)
            + "\n".join(self._lines(topic, REP, 2, index))
            + EMAIL_CLOSING
        )
        self._mail(at, EventType.EMAIL_SENT, person, subject, body, thread)
        if is_ghosted or rng.random() >= EMAIL_REPLY_CHANCE[self.outcome]:
            return 1
        delay = 4 * HOUR * CUSTOMER_REPLY_FACTOR[self.outcome]
        reply_at = at + int(delay * math.exp(rng.gauss(0.0, 1.0)))
        reply = "\n".join(self._lines(topic, CUSTOMER, 2, index))
        self._mail(
            reply_at,
            EventType.EMAIL_RECEIVED,
            person,
            f"回复：{subject}",
            reply,
            thread,
        )
        return 2

    def _mail(
        self,
        at: int,
        event_type: EventType,
        person: _Person,
        subject: str,
        body: str,
        thread: str,
    ) -> None:
        is_sent = event_type == EventType.EMAIL_SENT
        self._add(
            at,
            event_type,
            Channel.EMAIL,
            SOURCE_EMAIL,
            self.rep.email if is_sent else person.email,
            (person.email if is_sent else self.rep.email,),
            text=body,
            thread=thread,
            attributes={
                "subject": subject,
                "has_attachment": self.rng.random() < 0.4,
            },
        )

    def _attendees(self) -> tuple[str, ...]:
        count = self.rng.randint(1, min(3, len(self.cast)))
        return tuple(self.people[i].direct for i in self.rng.sample(self.cast, count))

    def _meeting(self, at: int, is_ghosted: bool) -> int:
        rng = self.rng
        title = rng.choice(MEETING_TITLES)
        attendees = self._attendees()
        minutes = rng.choice((30, 45, 60, 60, 90, 120))
        self._add(
            at,
            EventType.MEETING_HELD,
            Channel.MEETING,
            SOURCE_CALENDAR,
            self.rep.direct,
            attendees,
            attributes={
                "title": title,
                "duration_minutes": minutes,
                "attendee_count": len(attendees) + 1,
                "is_online": rng.random() < 0.45,
            },
        )
        if rng.random() >= 0.6:
            return 1
        index = self.cast[0]
        topic = self._topic(at)
        points = [
            *self._lines(topic, CUSTOMER, 2, index),
            *self._lines(self._topic(at), REP, 1, index),
        ]
        text = MINUTES_HEADING.format_map(self.contexts[index]) + "\n".join(
            f"· {point}" for point in points
        )
        written_at = at + minutes * MINUTE + rng.randint(1, 6) * HOUR
        self._add(
            written_at,
            EventType.MEETING_MINUTES,
            Channel.MEETING,
            SOURCE_CALENDAR,
            self.rep.direct,
            attendees,
            text=text,
            attributes={"title": title},
        )
        return 2

    def _visit(self, at: int, is_ghosted: bool) -> int:
        rng = self.rng
        longest = 240 if self.outcome == "won" else 150
        self._add(
            at,
            EventType.FIELD_VISIT,
            Channel.VISIT,
            SOURCE_VISITS,
            self.rep.direct,
            self._attendees(),
            attributes={
                "purpose": rng.choice(VISIT_PURPOSES),
                "duration_minutes": rng.randint(30, longest),
                "is_checked_in": True,
            },
        )
        return 1

    def _material(self, at: int, is_ghosted: bool) -> int:
        """The customer opens a document the rep sent, once or a few times."""
        rng = self.rng
        index = self._contact()
        person = self.people[index]
        name, pages = rng.choice(MATERIALS)
        name = name.format_map(self.contexts[index])
        interest = {"won": 0.75, "open": 0.55, "lost": 0.35}[self.outcome]
        per_page = 25 if self.outcome == "won" else 14
        opens = rng.randint(1, 3 if self.outcome == "won" else 2)
        for _open in range(opens):
            viewed = max(1, min(pages, round(pages * interest * rng.uniform(0.4, 1.4))))
            dwell = round(viewed * per_page * math.exp(rng.gauss(0.0, 0.6))) + 5
            self._add(
                at,
                EventType.MATERIAL_OPENED,
                Channel.MATERIAL,
                SOURCE_DOCS,
                person.direct,
                (self.rep.direct,),
                attributes={
                    "material": name,
                    "pages_total": pages,
                    "pages_viewed": viewed,
                    "dwell_seconds": dwell,
                },
            )
            at += int(20 * HOUR * math.exp(rng.gauss(0.0, 1.0)))
        return opens

    def _task(self, at: int, is_ghosted: bool) -> int:
        self._add(
            at,
            EventType.TASK_COMPLETED,
            Channel.CRM,
            SOURCE_CRM,
            self.rep.direct,
            attributes={"title": self.rng.choice(TASK_TITLES)},
        )
        return 1

    def _manual(self, at: int, is_ghosted: bool) -> int:
        """A rep types in an activity by hand: the only non-automatic events."""
        rng = self.rng
        kind = rng.choice(_MANUAL_KINDS)
        person = self.people[self._contact()]
        self._add(
            at,
            EventType.ACTIVITY_LOGGED,
            Channel.MANUAL,
            SOURCE_MANUAL,
            self.rep.direct,
            (person.direct,),
            text=rng.choice(ACTIVITY_BODIES) if rng.random() < 0.6 else None,
            attributes={"kind": kind, "subject": rng.choice(ACTIVITY_SUBJECTS[kind])},
            is_automatic=False,
        )
        return 1

    def _field_update(self, at: int, is_ghosted: bool) -> int:
        self._add(
            at,
            EventType.CRM_FIELD_UPDATE,
            Channel.CRM,
            SOURCE_CRM,
            self.rep.direct,
            attributes={"field": self.rng.choice(FIELD_UPDATES)},
        )
        return 1


_MANUAL_KINDS = tuple(ACTIVITY_SUBJECTS)
_WRITERS = {
    "chat": _DealScript._chat,
    "call": _DealScript._call,
    "email": _DealScript._email,
    "meeting": _DealScript._meeting,
    "visit": _DealScript._visit,
    "material": _DealScript._material,
    "task": _DealScript._task,
    "manual": _DealScript._manual,
    "field_update": _DealScript._field_update,
}


def _pick(rng: random.Random, items: Sequence[T]) -> T:
    """Pick one item uniformly; cheaper than ``Random.choice`` on hot paths."""
    return items[int(rng.random() * len(items))]


def _weighted(rng: random.Random, items: Sequence[T], cumulative: Sequence[float]) -> T:
    """Pick one item by cumulative weights; cheaper than ``Random.choices``."""
    return items[bisect.bisect(cumulative, rng.random() * cumulative[-1])]


def _between(rng: random.Random, low: int, high: int) -> int:
    """Draw an integer in ``[low, high]``; cheaper than ``Random.randint``."""
    return low + int(rng.random() * (high - low + 1))


def _office_instant(rng: random.Random, base: int) -> int:
    """Move ``base`` to office hours (a few evenings) on a working day in China."""
    day = (base + CHINA_OFFSET) // DAY
    if not _is_workday(day) and rng.random() < 0.9:
        day = _next_workday(day)
    if rng.random() < EVENING_SHARE:
        second = _between(rng, 19 * 3600, 22 * 3600 - 1)
    else:
        second = _between(rng, 9 * 3600, 18 * 3600 - 1)
    return day * DAY + second * SECOND - CHINA_OFFSET


def _digits(phone: str | None) -> str:
    return "".join(character for character in phone or "" if character.isdigit())


def _rep_person(facts: DealFacts, native: bool) -> _Person:
    direct = f"employee:{facts.owner_external_id}"
    if not native:
        return _Person(direct, direct, direct, direct)
    phone = _digits(facts.owner_phone)
    return _Person(
        direct=direct,
        chat=f"wecom:{facts.owner_external_id.lower()}",
        phone=f"phone:{phone}" if phone else direct,
        email=f"email:{facts.owner_email}" if facts.owner_email else direct,
    )


def _contact_person(contact: ContactFacts, native: bool) -> _Person:
    direct = f"contact:{contact.external_id}"
    if not native:
        return _Person(direct, direct, direct, direct)
    phone = _digits(contact.phone)
    return _Person(
        direct=direct,
        chat=f"wechat:{contact.wechat_id}" if contact.wechat_id else direct,
        phone=f"phone:{phone}" if phone else direct,
        email=f"email:{contact.email}" if contact.email else direct,
    )


__all__ = [
    "ContactFacts",
    "DealFacts",
    "deal_facts_from_company",
    "demo_event_stream",
    "load_deal_facts",
]
