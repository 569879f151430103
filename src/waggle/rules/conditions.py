"""Compiling filters and conditions into fast predicates.

A predicate takes the engine's view of one event and the facts about the
records it names (opportunity, account, rep) and answers yes or no. Filters
are compiled once per rule version, so evaluating an event costs a few
dictionary look-ups per condition, not a walk over the rule's YAML.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from waggle.rules.language import EventFilter


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One behaviour event as the engine reads it."""

    id: int
    event_type: str
    occurred_at: dt.datetime
    opportunity_id: int | None = None
    account_id: int | None = None
    actor_id: int | None = None
    contact_id: int | None = None
    speaker: str | None = None
    channel: str | None = None
    source: str | None = None
    is_automatic: bool = True
    text: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def timestamp(self) -> float:
        return self.occurred_at.timestamp()


class Facts(Protocol):
    """What the engine may know about the records an event names."""

    def opportunity(self, opportunity_id: int) -> Mapping[str, Any] | None: ...

    def account(self, account_id: int) -> Mapping[str, Any] | None: ...

    def rep(self, employee_id: int) -> Mapping[str, Any] | None: ...

    def contact(self, contact_id: int) -> Mapping[str, Any] | None: ...


class NoFacts:
    """Facts for rules that only look at events."""

    def opportunity(self, opportunity_id: int) -> Mapping[str, Any] | None:
        return None

    def account(self, account_id: int) -> Mapping[str, Any] | None:
        return None

    def rep(self, employee_id: int) -> Mapping[str, Any] | None:
        return None

    def contact(self, contact_id: int) -> Mapping[str, Any] | None:
        return None


@dataclass
class StaticFacts:
    """Facts held in dictionaries (tests, backtests over a snapshot, benchmarks)."""

    opportunities: dict[int, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[int, dict[str, Any]] = field(default_factory=dict)
    reps: dict[int, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)

    def opportunity(self, opportunity_id: int) -> Mapping[str, Any] | None:
        return self.opportunities.get(opportunity_id)

    def account(self, account_id: int) -> Mapping[str, Any] | None:
        return self.accounts.get(account_id)

    def rep(self, employee_id: int) -> Mapping[str, Any] | None:
        return self.reps.get(employee_id)

    def contact(self, contact_id: int) -> Mapping[str, Any] | None:
        return self.contacts.get(contact_id)


Predicate = Callable[[EngineEvent, Facts], bool]
Getter = Callable[[EngineEvent, Facts], Any]
_MISSING = object()
_EVENT_FIELDS: dict[str, Callable[[EngineEvent], Any]] = {
    "type": lambda e: e.event_type,
    "channel": lambda e: e.channel,
    "speaker": lambda e: e.speaker,
    "source": lambda e: e.source,
    "is_automatic": lambda e: e.is_automatic,
    "text": lambda e: e.text,
    "contact_id": lambda e: e.contact_id,
    "opportunity_id": lambda e: e.opportunity_id,
    "account_id": lambda e: e.account_id,
    "actor_id": lambda e: e.actor_id,
}


def getter(path: str) -> Getter:
    """Return a function reading ``path`` (``event.x``, ``opportunity.x`` ...)."""
    namespace, _, name = path.partition(".")
    if namespace == "event":
        direct = _EVENT_FIELDS.get(name)
        if direct is not None:
            return lambda event, facts: direct(event)
        key = name.removeprefix("attributes.")
        return lambda event, facts: event.attributes.get(key)
    if namespace == "opportunity":
        return lambda event, facts: _fact(facts.opportunity, event.opportunity_id, name)
    if namespace == "account":
        return lambda event, facts: _fact(facts.account, event.account_id, name)
    if namespace == "contact":
        return lambda event, facts: _fact(facts.contact, event.contact_id, name)
    return lambda event, facts: _fact(facts.rep, event.actor_id, name)


def _fact(
    lookup: Callable[[int], Mapping[str, Any] | None], record_id: int | None, name: str
) -> Any:
    if record_id is None:
        return None
    record = lookup(record_id)
    return None if record is None else record.get(name)


EVENT_DATE = "$event_date"


def compile_test(path: str, test: Any) -> Predicate:
    """Return the predicate of one condition ``path: test``.

    The value ``$event_date`` stands for the date the event happened on
    (``opportunity.expected_close_on: {lt: $event_date}``: the deal is overdue).
    """
    read = getter(path)
    if not isinstance(test, dict):
        return lambda event, facts: read(event, facts) == test
    if EVENT_DATE in test.values():
        return _relative_test(read, test)
    checks = [_operator(name, value) for name, value in test.items()]
    return lambda event, facts: all(check(read(event, facts)) for check in checks)


def _relative_test(read: Getter, test: dict[str, Any]) -> Predicate:
    def holds(event: EngineEvent, facts: Facts) -> bool:
        day = event.occurred_at.date()
        value = read(event, facts)
        return all(
            _operator(name, day if expected == EVENT_DATE else expected)(value)
            for name, expected in test.items()
        )

    return holds


def _operator(name: str, expected: Any) -> Callable[[Any], bool]:
    if name == "eq":
        return lambda value: value == expected
    if name == "ne":
        return lambda value: value != expected
    if name == "in":
        options = set(expected)
        return lambda value: value in options
    if name == "not_in":
        excluded = set(expected)
        return lambda value: value not in excluded
    if name == "contains":
        return lambda value: value is not None and expected in value
    if name == "empty":
        return lambda value: _is_empty(value) == bool(expected)
    if name == "exists":
        return lambda value: (value is not None) == bool(expected)
    return _comparison(name, expected)


def _comparison(name: str, expected: Any) -> Callable[[Any], bool]:
    def compare(value: Any) -> bool:
        if value is None:
            return False
        try:
            if name == "gt":
                return bool(value > expected)
            if name == "gte":
                return bool(value >= expected)
            if name == "lt":
                return bool(value < expected)
            return bool(value <= expected)
        except TypeError:
            return False

    return compare


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and not value)


def compile_conditions(where: Mapping[str, Any]) -> Predicate:
    """Return the predicate that holds when every condition in ``where`` holds."""
    tests = [compile_test(path, test) for path, test in where.items()]
    if not tests:
        return lambda event, facts: True
    if len(tests) == 1:
        return tests[0]
    return lambda event, facts: all(test(event, facts) for test in tests)


def compile_filter(spec: EventFilter) -> Predicate:
    """Return the predicate of an event filter (its types are indexed apart).

    A filter on a tracker ``category`` ignores negated hits (不需要报价 is not a
    pricing request) unless it says ``negated`` itself.
    """
    return compile_conditions(filter_conditions(spec))


def filter_conditions(spec: EventFilter) -> dict[str, Any]:
    """Return every condition of a filter as ``path: test``, shorthands spelled out."""
    conditions: dict[str, Any] = dict(spec.where)
    if spec.category is not None:
        conditions.setdefault("event.category", spec.category)
        if spec.negated is None:
            conditions.setdefault("event.is_negated", {"ne": True})
    if spec.negated is not None:
        conditions.setdefault(
            "event.is_negated", {"eq": spec.negated} if spec.negated else {"ne": True}
        )
    if spec.speaker is not None:
        conditions.setdefault("event.speaker", spec.speaker)
    if spec.channel is not None:
        conditions.setdefault("event.channel", spec.channel)
    return conditions


def event_equalities(conditions: Mapping[str, Any]) -> dict[str, Any]:
    """Return the conditions that require an event field to equal one value.

    Only ``event.*`` paths with a plain or ``{eq: v}`` test of a hashable,
    non-date value: the engine indexes rules by these to skip the rules an
    event cannot match.
    """
    found: dict[str, Any] = {}
    for path, test in conditions.items():
        if not path.startswith("event.") or path == "event.type":
            continue
        value = test["eq"] if isinstance(test, dict) and set(test) == {"eq"} else test
        if isinstance(value, dict | list) or value == EVENT_DATE:
            continue
        try:
            hash(value)
        except TypeError:
            continue
        found[path] = value
    return found


def filter_types(spec: EventFilter) -> Sequence[str]:
    """Return the event types a filter listens to (``*``: every type)."""
    if spec.type:
        return spec.type
    if spec.category is not None:
        return ["tracker_hit"]
    return ["*"]


__all__ = [
    "EngineEvent",
    "Facts",
    "NoFacts",
    "Predicate",
    "StaticFacts",
    "compile_conditions",
    "compile_filter",
    "filter_types",
    "getter",
]
