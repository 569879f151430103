"""Rules services: save, validate, preview, list, backtest, firings.

Every function checks the policy and writes its audit row in the caller's
transaction. A saved rule reaches the live engine at its next run (within
seconds), with no restart.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.errors import NotFound
from waggle.governance import authorize, record_audit, row_filter
from waggle.rules.backtest import BacktestReport, backtest
from waggle.rules.language import (
    FIELDS,
    Rule,
    load_rules_text,
    parse_rule,
    rule_to_data,
)
from waggle.rules.models import RuleFiring, RuleRecord
from waggle.rules.wording import preview

RULES = "rules"
FIRINGS = "rule_firings"
TEMPLATES_FILE = "templates.yaml"


def validate_rule(data: Any) -> tuple[Rule, dict[str, str]]:
    """Return the parsed rule and its plain-language preview.

    Raises:
        RuleInvalid: naming the place and what was expected.
    """
    rule = parse_rule(data)
    return rule, preview(rule)


def save_rule(
    session: Session, actor: Actor, data: Any, *, is_template: bool = False
) -> RuleRecord:
    """Create the rule, or a new revision of the rule with the same key.

    Raises:
        RuleInvalid: the definition is invalid.
        PolicyDenied: the actor may not write rules.
    """
    rule = parse_rule(data)
    record = session.scalar(select(RuleRecord).where(RuleRecord.key == rule.key))
    action = "create" if record is None else "update"
    authorize(session, actor, action, RULES)
    definition = rule_to_data(rule)
    if record is None:
        record = RuleRecord(
            key=rule.key,
            definition=definition,
            is_enabled=rule.enabled,
            is_template=is_template,
            updated_by=actor.username,
        )
        session.add(record)
    elif record.definition != definition:
        record.definition = definition
        record.revision += 1
        record.is_enabled = rule.enabled
        record.updated_by = actor.username
        record.updated_at = now()
    session.flush()
    record_audit(
        session,
        actor,
        action=action,
        resource=RULES,
        record_ids=[rule.key],
        detail=f"revision {record.revision}",
    )
    return record


def apply_rules_text(
    session: Session, actor: Actor, text: str, *, source: str = "rules.yaml"
) -> list[RuleRecord]:
    """Save every rule of a YAML document (one rule, a list, or ``rules:``).

    Raises:
        RuleInvalid: any rule is invalid (nothing is saved then).
        PolicyDenied: the actor may not write rules.
    """
    rules = load_rules_text(text, source=source)
    return [save_rule(session, actor, rule_to_data(rule)) for rule in rules]


def template_text() -> str:
    """Return the shipped templates (YAML)."""
    return resources.files("waggle.rules").joinpath(TEMPLATES_FILE).read_text("utf-8")


def install_templates(
    session: Session, actor: Actor, *, enable: bool = False
) -> list[RuleRecord]:
    """Save the built-in templates, switched off unless ``enable``; edits survive.

    A template already saved keeps its current definition, so re-installing
    never overwrites what a user configured.

    Raises:
        PolicyDenied: the actor may not write rules.
    """
    saved = []
    for rule in load_rules_text(template_text(), source=TEMPLATES_FILE):
        existing = session.scalar(select(RuleRecord).where(RuleRecord.key == rule.key))
        if existing is not None:
            saved.append(existing)
            continue
        data = rule_to_data(rule) | {"enabled": enable}
        saved.append(save_rule(session, actor, data, is_template=True))
    return saved


def list_rules(session: Session, actor: Actor) -> list[RuleRecord]:
    """Return every saved rule.

    Raises:
        PolicyDenied: the actor may not read rules.
    """
    authorize(session, actor, "read", RULES)
    records = list(session.scalars(select(RuleRecord).order_by(RuleRecord.key)))
    record_audit(
        session,
        actor,
        action="read",
        resource=RULES,
        record_ids=[record.key for record in records],
    )
    return records


def get_rule(session: Session, actor: Actor, key: str) -> RuleRecord:
    """Return one saved rule.

    Raises:
        PolicyDenied: the actor may not read rules.
        NotFound: no rule has that key.
    """
    authorize(session, actor, "read", RULES)
    record = _record(session, key)
    record_audit(session, actor, action="read", resource=RULES, record_ids=[key])
    return record


def set_enabled(
    session: Session, actor: Actor, key: str, *, enabled: bool
) -> RuleRecord:
    """Switch a rule on or off; the live engine follows at its next run.

    Raises:
        PolicyDenied: the actor may not update rules.
        NotFound: no rule has that key.
    """
    authorize(session, actor, "update", RULES)
    record = _record(session, key)
    if record.is_enabled != enabled:
        record.is_enabled = enabled
        record.definition = {**record.definition, "enabled": enabled}
        record.revision += 1
        record.updated_by = actor.username
        record.updated_at = now()
    record_audit(
        session,
        actor,
        action="update",
        resource=RULES,
        record_ids=[key],
        detail="enabled" if enabled else "disabled",
    )
    return record


def delete_rule(session: Session, actor: Actor, key: str) -> None:
    """Remove a rule; its firings stay in the log.

    Raises:
        PolicyDenied: the actor may not delete rules.
        NotFound: no rule has that key.
    """
    authorize(session, actor, "delete", RULES)
    session.delete(_record(session, key))
    record_audit(session, actor, action="delete", resource=RULES, record_ids=[key])


def _record(session: Session, key: str) -> RuleRecord:
    record = session.scalar(select(RuleRecord).where(RuleRecord.key == key))
    if record is None:
        raise NotFound(f"rule {key!r} does not exist", rule=key)
    return record


def list_firings(
    session: Session,
    actor: Actor,
    *,
    rule_key: str | None = None,
    opportunity_id: int | None = None,
    status: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[RuleFiring]:
    """Return firings the actor may see (by the rep they concern), newest first.

    Raises:
        PolicyDenied: the actor may not read firings.
    """
    scope = authorize(session, actor, "read", FIRINGS)
    query = (
        select(RuleFiring)
        .where(row_filter(session, actor, scope, RuleFiring.actor_id))
        .order_by(RuleFiring.id.desc())
        .limit(min(limit, 500))
    )
    for column, value in (
        (RuleFiring.rule_key, rule_key),
        (RuleFiring.opportunity_id, opportunity_id),
        (RuleFiring.status, status),
    ):
        if value is not None:
            query = query.where(column == value)
    if before_id is not None:
        query = query.where(RuleFiring.id < before_id)
    firings = list(session.scalars(query))
    record_audit(
        session,
        actor,
        action="read",
        resource=FIRINGS,
        record_ids=[firing.id for firing in firings],
    )
    return firings


def run_backtest(
    session: Session,
    actor: Actor,
    data: Any,
    *,
    since: dt.datetime,
    until: dt.datetime,
    event_limit: int | None = None,
) -> BacktestReport:
    """Backtest a rule (saved or not) over stored events; nothing is sent.

    Raises:
        RuleInvalid: the definition is invalid.
        PolicyDenied: the actor may not read rules and events.
    """
    authorize(session, actor, "read", RULES)
    authorize(session, actor, "read", "behaviour_events")
    rule = parse_rule(data)
    report = backtest(session, rule, since=since, until=until, event_limit=event_limit)
    record_audit(
        session,
        actor,
        action="read",
        resource=RULES,
        record_ids=[rule.key],
        detail=(
            f"backtest {since.date()}..{until.date()}: {report.events_read} events, "
            f"{len(report.firings)} firings"
        ),
    )
    return report


def rule_from_record(record: RuleRecord) -> Rule:
    return parse_rule(record.definition, source=record.key)


def field_catalogue() -> list[dict[str, str]]:
    """Return the fields conditions may name, for the editor's autocompletion."""
    return [{"field": name, "type": kind} for name, kind in sorted(FIELDS.items())]


__all__ = [
    "apply_rules_text",
    "delete_rule",
    "field_catalogue",
    "get_rule",
    "install_templates",
    "list_firings",
    "list_rules",
    "rule_from_record",
    "run_backtest",
    "save_rule",
    "set_enabled",
    "template_text",
    "validate_rule",
]
