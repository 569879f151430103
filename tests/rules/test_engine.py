"""The streaming evaluator on hand-built event sequences with exact firings."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from waggle.rules.conditions import EngineEvent, StaticFacts
from waggle.rules.engine import Firing, RuleEngine
from waggle.rules.errors import RuleInvalid
from waggle.rules.language import parse_rule

T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)  # Monday 09:00 in Shanghai


def at(days: float = 0, hours: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(days=days, hours=hours)


def ev(number: int, kind: str, when: dt.datetime, *, opp: int = 1, **extra: Any):
    fields = {
        k: extra.pop(k)
        for k in ("speaker", "actor_id", "account_id", "contact_id", "channel")
        if k in extra
    }
    return EngineEvent(
        id=number,
        event_type=kind,
        occurred_at=when,
        opportunity_id=opp,
        attributes=extra,
        **fields,
    )


def rule(when: dict[str, Any], **extra: Any):
    return parse_rule({"key": "r", "name": "test rule", "when": when, **extra})


def run(rules: list, events: list, *, until: dt.datetime | None = None, **options):
    engine = RuleEngine(**options)
    engine.load_rules(rules)
    firings: list[Firing] = []
    for event in events:
        firings.extend(engine.process(event))
    if until is not None:
        firings.extend(engine.advance(until))
    return firings


def summary(firings: list[Firing]) -> list[tuple[str, int, list[int]]]:
    return [(f.status, f.key_id, [fact.event_id for fact in f.facts]) for f in firings]


OBJECTION = {"type": "tracker_hit", "category": "objection", "speaker": "customer"}


def test_a_stateless_match_fires_on_each_matching_event_within_the_throttle():
    """A customer competitor mention fires; a rep's or a negated one does not."""
    mention = rule({"match": {"category": "competitor", "speaker": "customer"}})
    events = [
        ev(1, "tracker_hit", at(0), category="competitor", speaker="customer"),
        ev(2, "tracker_hit", at(0, 1), category="competitor", speaker="rep"),
        ev(
            3,
            "tracker_hit",
            at(0, 2),
            category="competitor",
            speaker="customer",
            is_negated=True,
        ),
        ev(4, "tracker_hit", at(0, 3), category="competitor", speaker="customer"),
        ev(5, "tracker_hit", at(2), category="competitor", speaker="customer"),
    ]

    firings = run([mention], events)

    assert summary(firings) == [
        ("fired", 1, [1]),
        ("throttled", 1, [4]),
        ("fired", 1, [5]),
    ]


def test_three_objections_within_seven_days_fire_once_with_their_dates():
    """The third objection inside the window fires; the reason names all three."""
    objections = rule({"count": {"of": OBJECTION, "within": "7d", "at_least": 3}})
    events = [
        ev(1, "tracker_hit", at(0), category="objection", speaker="customer"),
        ev(2, "tracker_hit", at(2), category="objection", speaker="customer"),
        ev(3, "tracker_hit", at(9), category="objection", speaker="customer"),
        ev(4, "tracker_hit", at(10), category="objection", speaker="customer"),
        ev(5, "tracker_hit", at(11), category="objection", speaker="customer"),
    ]

    firings = run([objections], events)

    assert summary(firings) == [("fired", 1, [3, 4, 5])]
    assert firings[0].explanation["en"] == (
        "fired because: the count of customer objection within 7 days is at "
        "least 3 (03-11 09:00, 03-12 09:00 and 03-13 09:00)"
    )
    assert firings[0].explanation["zh-CN"] == (
        "触发原因：7 天内客户提出异议的次数至少 3"
        "（03-11 09:00、03-12 09:00、03-13 09:00）"
    )


def test_counts_are_kept_per_key():
    """Objections on two opportunities do not add up."""
    objections = rule({"count": {"of": OBJECTION, "within": "7d", "at_least": 2}})
    events = [
        ev(1, "tracker_hit", at(0), opp=1, category="objection", speaker="customer"),
        ev(2, "tracker_hit", at(1), opp=2, category="objection", speaker="customer"),
        ev(3, "tracker_hit", at(2), opp=2, category="objection", speaker="customer"),
    ]

    assert summary(run([objections], events)) == [("fired", 2, [2, 3])]


def test_distinct_contacts_at_most_one_checked_at_a_stage_change_is_single_threaded():
    """Entering a stage with one contact in 30 days fires; two contacts do not."""
    single = rule(
        {
            "count": {
                "of": {"type": ["chat_message", "call"]},
                "distinct": "event.contact_id",
                "within": "30d",
                "at_most": 1,
                "on": {"type": "stage_change"},
            }
        }
    )
    events = [
        ev(1, "chat_message", at(0), opp=1, contact_id=10),
        ev(2, "call", at(1), opp=1, contact_id=10),
        ev(3, "chat_message", at(0), opp=2, contact_id=20),
        ev(4, "call", at(1), opp=2, contact_id=21),
        ev(5, "stage_change", at(3), opp=1),
        ev(6, "stage_change", at(3), opp=2),
    ]

    assert summary(run([single], events)) == [("fired", 1, [1, 2, 5])]


def test_a_sum_over_a_window_compares_with_its_bound():
    """Call minutes are summed; the rule fires once they pass the bound."""
    minutes = rule(
        {
            "count": {
                "of": {"type": "call"},
                "sum": "event.duration_minutes",
                "within": "7d",
                "at_least": 30,
            }
        }
    )
    events = [
        ev(1, "call", at(0), duration_minutes=10),
        ev(2, "call", at(1), duration_minutes=15),
        ev(3, "call", at(2), duration_minutes=6),
    ]

    assert summary(run([minutes], events)) == [("fired", 1, [1, 2, 3])]


def test_two_consecutive_empty_pain_points_fire_and_a_filled_one_resets():
    """The same field left empty twice in a row fires; a filled update breaks it."""
    empty = rule(
        {
            "consecutive": {
                "of": {
                    "type": "crm_field_update",
                    "where": {"event.field": "customer_pain_points"},
                },
                "all": {"event.value": {"empty": True}},
                "times": 2,
            }
        },
        per="rep",
    )
    updates = [
        ("customer_pain_points", ""),
        ("customer_pain_points", "交期太长"),
        ("customer_pain_points", None),
        ("amount", None),
        ("customer_pain_points", ""),
    ]
    events = [
        ev(n, "crm_field_update", at(n), actor_id=7, field=field, value=value)
        for n, (field, value) in enumerate(updates, start=1)
    ]

    assert summary(run([empty], events)) == [("fired", 7, [3, 5])]


def test_five_skips_in_a_row_fire_at_the_fifth():
    """Skipping the competitor comparison five times in a row fires once."""
    skipped = rule(
        {
            "consecutive": {
                "of": {
                    "type": "task_completed",
                    "where": {"event.module": "competitor_comparison"},
                },
                "all": {"event.skipped": True},
                "times": 5,
            }
        },
        per="rep",
        throttle={"at_most": 5, "every": "1d"},
    )
    flags = [True, True, True, True, True, True]
    events = [
        ev(
            n,
            "task_completed",
            at(0, n),
            actor_id=3,
            module="competitor_comparison",
            skipped=flag,
        )
        for n, flag in enumerate(flags, start=1)
    ]

    assert summary(run([skipped], events)) == [("fired", 3, [1, 2, 3, 4, 5])]


PROPOSAL = {
    "absence": {
        "after": {"type": "quote_sent"},
        "expect": {"type": "chat_message", "speaker": "customer"},
        "within": "72h",
    }
}


def test_a_proposal_without_a_reply_fires_at_the_deadline():
    """No customer reply within 72 hours fires at exactly the deadline."""
    events = [ev(1, "quote_sent", at(0)), ev(2, "chat_message", at(1), speaker="rep")]

    firings = run([rule(PROPOSAL)], events, until=at(5))

    assert summary(firings) == [("fired", 1, [1])]
    assert firings[0].fired_at == at(3)
    assert firings[0].trigger_event_id is None


def test_a_reply_in_time_cancels_the_deadline():
    """A customer reply 71 hours later means nothing fires."""
    events = [
        ev(1, "quote_sent", at(0)),
        ev(2, "chat_message", at(0, 71), speaker="customer"),
    ]

    assert run([rule(PROPOSAL)], events, until=at(10)) == []


def test_a_reply_at_the_deadline_instant_is_still_in_time():
    """An event at the very instant of the deadline counts as in time."""
    events = [
        ev(1, "quote_sent", at(0)),
        ev(2, "chat_message", at(3), speaker="customer"),
    ]

    assert run([rule(PROPOSAL)], events, until=at(10)) == []


def test_the_deadline_fires_before_a_later_event_is_applied():
    """An event after the deadline sees the firing first, then starts afresh."""
    events = [
        ev(1, "quote_sent", at(0)),
        ev(2, "chat_message", at(4), speaker="customer"),
        ev(3, "quote_sent", at(5)),
    ]

    firings = run([rule(PROPOSAL)], events, until=at(20))

    assert [(f.fired_at, f.facts[0].event_id) for f in firings] == [
        (at(3), 1),
        (at(8), 3),
    ]


def test_restart_moves_the_deadline_with_every_new_cause():
    """No activity for 5 days, counted from the latest activity."""
    silent = rule(
        {
            "absence": {
                "after": {"type": ["call", "chat_message"]},
                "expect": {"type": ["call", "chat_message"]},
                "within": "5d",
                "restart": True,
            }
        }
    )
    events = [ev(1, "call", at(0)), ev(2, "chat_message", at(4)), ev(3, "call", at(8))]

    firings = run([silent], events, until=at(30))

    assert [(f.fired_at, f.facts[0].event_id) for f in firings] == [(at(13), 3)]


def test_business_hours_deadlines_use_the_given_calendar():
    """A business-hours absence asks the calendar for its deadline."""
    business = rule(
        {**PROPOSAL, "absence": {**PROPOSAL["absence"], "business_hours": True}}
    )

    def two_days_later(start: dt.datetime, within: dt.timedelta) -> dt.datetime:
        return start + within + dt.timedelta(days=2)

    firings = run(
        [business],
        [ev(1, "quote_sent", at(0))],
        until=at(30),
        business_deadline=two_days_later,
    )

    assert [f.fired_at for f in firings] == [at(5)]


TRIAL_THEN_MEETING = {
    "sequence": {
        "steps": [{"type": "trial_started"}, {"type": "meeting_held"}],
        "within": "14d",
    }
}


def test_a_sequence_fires_when_its_steps_happen_in_order_in_time():
    """Trial then meeting within 14 days fires; a late meeting does not."""
    events = [
        ev(1, "meeting_held", at(0), opp=1),
        ev(2, "trial_started", at(1), opp=1),
        ev(3, "meeting_held", at(5), opp=1),
        ev(4, "trial_started", at(1), opp=2),
        ev(5, "meeting_held", at(20), opp=2),
    ]

    assert summary(run([rule(TRIAL_THEN_MEETING)], events)) == [("fired", 1, [2, 3])]


def test_a_score_drop_within_the_window_fires():
    """A health score falling by 20 within 7 days fires with both points."""
    drop = rule(
        {
            "change": {
                "of": {"type": "crm_field_update", "where": {"event.field": "health"}},
                "field": "event.value",
                "drop_by": 20,
                "within": "7d",
            }
        }
    )
    events = [
        ev(1, "crm_field_update", at(0), field="health", value=80),
        ev(2, "crm_field_update", at(2), field="health", value=70),
        ev(3, "crm_field_update", at(4), field="health", value=55),
        ev(4, "crm_field_update", at(30), field="health", value=30),
    ]

    assert summary(run([drop], events)) == [("fired", 1, [1, 3])]


def test_conditions_reach_the_opportunity_account_and_rep_facts():
    """A filter on the deal's amount and the account's industry reads the facts."""
    big = rule(
        {
            "match": {
                "type": "quote_sent",
                "where": {
                    "opportunity.amount": {"gte": 100000},
                    "account.industry": "制造业",
                },
            }
        }
    )
    facts = StaticFacts(
        opportunities={1: {"amount": 250000}, 2: {"amount": 5000}},
        accounts={9: {"industry": "制造业"}},
    )
    events = [
        ev(1, "quote_sent", at(0), opp=1, account_id=9),
        ev(2, "quote_sent", at(0), opp=2, account_id=9),
    ]

    assert summary(run([big], events, facts=facts)) == [("fired", 1, [1])]


def test_a_control_unit_of_an_experiment_is_held_out():
    """Under an experiment the control arm's firing is logged as holdout."""
    tested = rule(
        {"match": {"type": "quote_sent"}},
        experiment={"key": "quote-nudge", "holdout": 0.5},
    )
    events = [ev(1, "quote_sent", at(0), opp=1), ev(2, "quote_sent", at(0), opp=2)]

    firings = run(
        [tested], events, arm_of=lambda r, key: "control" if key == 2 else "treatment"
    )

    assert [(f.key_id, f.status, f.arm) for f in firings] == [
        (1, "fired", "treatment"),
        (2, "holdout", "control"),
    ]


def test_a_changed_pattern_resets_state_but_an_edited_action_keeps_it():
    """Hot reload: new actions keep the count, a new pattern starts it over."""
    first = rule({"count": {"of": OBJECTION, "within": "7d", "at_least": 2}})
    engine = RuleEngine()
    engine.load_rules([first])
    engine.process(
        ev(1, "tracker_hit", at(0), category="objection", speaker="customer")
    )

    engine.load_rules([first.model_copy(update={"then": []})])
    kept = engine.process(
        ev(2, "tracker_hit", at(1), category="objection", speaker="customer")
    )
    engine.load_rules(
        [rule({"count": {"of": OBJECTION, "within": "7d", "at_least": 3}})]
    )
    reset = engine.process(
        ev(3, "tracker_hit", at(3), category="objection", speaker="customer")
    )

    assert summary(kept) == [("fired", 1, [1, 2])]
    assert reset == []


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ({}, "when: Value error, when needs exactly one of match, count"),
        (
            {"count": {"of": {"type": "call"}}},
            "when.count: Value error, count needs at_least or at_most",
        ),
        (
            {"match": {"where": {"opportunity.colour": "red"}}},
            "when.match.where: Value error, field 'opportunity.colour' is unknown",
        ),
        (
            {"absence": {"after": {}, "expect": {}, "within": "soon"}},
            "when.absence.within: Value error, 'soon' is not a duration",
        ),
    ],
)
def test_invalid_rules_are_refused_naming_the_place(when, message):
    """A malformed rule is refused with the path and the expectation."""
    with pytest.raises(RuleInvalid) as caught:
        rule(when)

    assert caught.value.message.startswith(f"rule: {message}")
