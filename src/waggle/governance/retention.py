"""Retention rules: what becomes read-only, and what content is removed, when.

Rules come from a YAML file (the shipped ``default_retention.yaml``, or the
file ``WAGGLE_RETENTION_FILE`` names). Two kinds:

* ``read_only_after_departure``: records owned by an employee whose
  ``departed_on`` lies at least ``days`` back refuse updates and deletes from
  every role but the exempt ones. :func:`ensure_writable` enforces it on the
  governed write path, by the clock, whether or not a sweep has run.
* ``delete_after``: behaviour events of the listed types older than ``years``
  lose their content (the text, the raw record's bytes, every attribute not
  kept); the event stays with its type, time and links.

:func:`apply_retention` is the sweep. Each record it touches gets one
:class:`~waggle.governance.models.RetentionTombstone` (which makes the sweep
idempotent) and each batch one audit entry with action ``retention``, naming
the rule, the records and the fields removed, never the content.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources as package_files
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import ColumnElement, Table, and_, exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import Actor, system_actor
from waggle.core.clock import now, today
from waggle.core.errors import InvalidInput, PolicyDenied
from waggle.governance.guard import authorize, record_audit
from waggle.governance.models import RetentionTombstone

logger = logging.getLogger(__name__)

RESOURCE = "retention"
RETENTION_FILE_VARIABLE = "WAGGLE_RETENTION_FILE"
BATCH_SIZE = 500
OWNED_RESOURCES = ("accounts", "contacts", "opportunities")
SINGULAR = {
    "accounts": "account",
    "contacts": "contact",
    "opportunities": "opportunity",
}
# Attributes that describe a message's form, not what it said.
KEPT_ATTRIBUTES = (
    "body_charset",
    "body_length",
    "date_source",
    "has_html",
    "is_forward",
    "is_group",
    "is_recall",
    "is_recognised",
    "is_reply",
    "msgtype",
)
REMOVED_PAYLOAD = b'{"removed_by_retention": true}'
_RULE_ID = r"^[a-z0-9][a-z0-9-]{0,59}$"
_EVENT_PATTERN = r"^[a-z][a-z0-9_]*\*?$"


# Rules ---------------------------------------------------------------------------


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    description: str = ""

    @field_validator("id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        if not re.fullmatch(_RULE_ID, value):
            raise ValueError(
                "expected lowercase letters, digits and '-' (at most 60), e.g. chat-3y"
            )
        return value


class ReadOnlyAfterDeparture(_Rule):
    """Owned records turn read-only ``days`` after their owner's departure date."""

    kind: Literal["read_only_after_departure"]
    resources: tuple[Literal["accounts", "contacts", "opportunities"], ...] = (
        "accounts",
        "contacts",
        "opportunities",
    )
    days: int = Field(gt=0)
    exempt_roles: frozenset[str] = frozenset({"it_admin"})

    @field_validator("exempt_roles")
    @classmethod
    def _known_roles(cls, roles: frozenset[str]) -> frozenset[str]:
        from waggle.identity.models import Role

        unknown = sorted(roles - {role.value for role in Role})
        if unknown:
            raise ValueError(f"unknown roles {unknown}")
        return roles


class DeleteAfter(_Rule):
    """The content of old behaviour events is removed; the events stay."""

    kind: Literal["delete_after"]
    event_types: tuple[str, ...] = Field(min_length=1)
    years: int = Field(gt=0, le=100)
    keep_attributes: tuple[str, ...] = KEPT_ATTRIBUTES

    @field_validator("event_types")
    @classmethod
    def _event_patterns(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        bad = [p for p in patterns if not re.fullmatch(_EVENT_PATTERN, p)]
        if bad:
            raise ValueError(
                f"{bad} are not event types; expected names like chat_message,"
                " or a prefix ending in * such as email_*"
            )
        return patterns


Rule = Annotated[ReadOnlyAfterDeparture | DeleteAfter, Field(discriminator="kind")]
RULE_KINDS = ("read_only_after_departure", "delete_after")


class RetentionRules(BaseModel):
    """A loaded retention file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[Rule, ...] = ()
    source: str = "default"

    @model_validator(mode="after")
    def _unique_ids(self) -> RetentionRules:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} appears twice")
            seen.add(rule.id)
        return self

    def read_only_rules(self) -> list[ReadOnlyAfterDeparture]:
        return [r for r in self.rules if isinstance(r, ReadOnlyAfterDeparture)]


def parse_retention_rules(document: Any, *, source: str) -> RetentionRules:
    """Validate a retention document (as parsed from YAML).

    Raises:
        InvalidInput: naming the file, the field (``rules[1].days``) and the
            expectation.
    """
    if not isinstance(document, dict):
        raise InvalidInput(f"retention file {source}: expected a mapping with 'rules'")
    try:
        return RetentionRules.model_validate({**document, "source": source})
    except ValidationError as exc:
        raise InvalidInput(_describe(exc, source)) from exc


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    where = ""
    for part in first["loc"]:
        if part in RULE_KINDS:
            continue
        if isinstance(part, int):
            where += f"[{part}]"
        else:
            where += f".{part}" if where else str(part)
    return f"retention file {source}: {where or 'rules'}: {first['msg']}"


@lru_cache(maxsize=8)
def load_retention_rules(path: Path | None = None) -> RetentionRules:
    """Load the rules from ``path`` or the shipped default.

    Raises:
        InvalidInput: the file cannot be read, is not YAML or breaks a rule.
    """
    if path is None:
        text = (
            package_files.files("waggle.governance")
            .joinpath("default_retention.yaml")
            .read_text(encoding="utf-8")
        )
        source = "default_retention.yaml"
    else:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"retention file {source}: cannot be read") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"retention file {source}: not valid YAML") from exc
    return parse_retention_rules(document or {}, source=source)


_configured_path: Path | None = None


def configure_retention(path: Path | None) -> None:
    """Use the rules at ``path``; ``None``: ``WAGGLE_RETENTION_FILE`` or the default."""
    global _configured_path
    _configured_path = path


def active_retention_rules() -> RetentionRules:
    """Return the rules in force.

    Raises:
        InvalidInput: the configured file is broken.
    """
    if _configured_path is not None:
        return load_retention_rules(_configured_path)
    named = os.environ.get(RETENTION_FILE_VARIABLE)
    return load_retention_rules(Path(named) if named else None)


# Enforcement on the write path ------------------------------------------------------


def ensure_writable(
    session: Session,
    actor: Actor,
    *,
    resource: str,
    record_id: object,
    owner_id: int | None,
    action: str,
) -> None:
    """Refuse a change to a record that a read-only rule has frozen.

    Raises:
        PolicyDenied: the record's owner left long enough ago and the actor
            holds no exempt role.
    """
    rules = [
        r for r in active_retention_rules().read_only_rules() if resource in r.resources
    ]
    if not rules or owner_id is None:
        return
    employees = _table("employees")
    departed_on = session.scalar(
        select(employees.c.departed_on).where(employees.c.id == owner_id)
    )
    if departed_on is None:
        return
    for rule in rules:
        if actor.roles & rule.exempt_roles:
            continue
        if (today() - departed_on).days >= rule.days:
            raise PolicyDenied(
                f"{SINGULAR.get(resource, resource)} {record_id} is read-only: its"
                f" owner left on {departed_on.isoformat()} (retention rule {rule.id})",
                code="retention_read_only",
                action=action,
                resource=resource,
                record_ids=(str(record_id),),
            )


# The sweep ----------------------------------------------------------------------------


@dataclass
class RuleOutcome:
    """What one rule did (or, in a dry run, would do): records per resource."""

    rule_id: str
    kind: str
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, resource: str, count: int) -> None:
        self.counts[resource] = self.counts.get(resource, 0) + count


@dataclass(frozen=True)
class RetentionReport:
    at: dt.datetime
    is_dry_run: bool
    outcomes: tuple[RuleOutcome, ...]

    def total(self) -> int:
        return sum(sum(outcome.counts.values()) for outcome in self.outcomes)


def apply_retention(
    session: Session,
    actor: Actor,
    *,
    at: dt.datetime | None = None,
    dry_run: bool = False,
    rules: RetentionRules | None = None,
) -> RetentionReport:
    """Apply every rule as of ``at`` (default: now) in the caller's transaction.

    A dry run counts what would change and writes nothing, not even an audit
    row. Records a rule handled before are skipped, so a second run changes
    nothing.

    Raises:
        PolicyDenied: the actor may not apply (or, dry, read) retention.
    """
    authorize(session, actor, "read" if dry_run else "update", RESOURCE)
    moment = at or now()
    outcomes = []
    for rule in (rules or active_retention_rules()).rules:
        outcome = RuleOutcome(rule_id=rule.id, kind=rule.kind)
        sweep = _Sweep(session, actor, rule_id=rule.id, dry_run=dry_run)
        if isinstance(rule, ReadOnlyAfterDeparture):
            _sweep_read_only(sweep, rule, moment, outcome)
        else:
            _sweep_content(sweep, rule, moment, outcome)
        outcomes.append(outcome)
    report = RetentionReport(at=moment, is_dry_run=dry_run, outcomes=tuple(outcomes))
    logger.info(
        "retention applied",
        extra={"dry_run": dry_run, "records": report.total(), "at": moment.isoformat()},
    )
    return report


def retention_job() -> Callable[[sessionmaker[Session]], RetentionReport]:
    """Return the daily job that applies the rules as the system actor."""

    def run(sessions: sessionmaker[Session]) -> RetentionReport:
        with sessions.begin() as session:
            return apply_retention(session, system_actor("retention-sweep"))

    return run


@dataclass
class _Sweep:
    """One rule's pass: writes tombstones and audit rows unless dry."""

    session: Session
    actor: Actor
    rule_id: str
    dry_run: bool

    def record(
        self,
        resource: str,
        removed: dict[int, list[str]],
        *,
        action: str,
        detail: str,
        notes: dict[int, str] | None = None,
    ) -> None:
        if self.dry_run or not removed:
            return
        self.session.add_all(
            RetentionTombstone(
                rule_id=self.rule_id,
                resource=resource,
                record_id=record_id,
                action=action,
                removed=fields,
                detail=(notes or {}).get(record_id),
                applied_at=now(),
            )
            for record_id, fields in removed.items()
        )
        self.session.flush()
        record_audit(
            self.session,
            self.actor,
            action=RESOURCE,
            resource=resource,
            record_ids=sorted(removed),
            detail=f"rule {self.rule_id}: {detail}",
        )

    def not_done(self, resource: str, column: Any) -> ColumnElement[bool]:
        return ~exists().where(
            RetentionTombstone.rule_id == self.rule_id,
            RetentionTombstone.resource == resource,
            RetentionTombstone.record_id == column,
        )


def _sweep_read_only(
    sweep: _Sweep, rule: ReadOnlyAfterDeparture, at: dt.datetime, outcome: RuleOutcome
) -> None:
    deadline = at.date() - dt.timedelta(days=rule.days)
    employees = _table("employees")
    for resource in rule.resources:
        table = _table(resource)
        statement = (
            select(table.c.id, employees.c.id, employees.c.departed_on)
            .join(employees, employees.c.id == table.c.owner_id)
            .where(employees.c.departed_on <= deadline)
            .where(sweep.not_done(resource, table.c.id))
        )
        for rows in _pages(sweep.session, statement, table.c.id):
            notes = {
                row[0]: f"owner {row[1]} left on {row[2].isoformat()}" for row in rows
            }
            sweep.record(
                resource,
                {row[0]: [] for row in rows},
                action="read_only",
                detail=f"read-only for all but {', '.join(sorted(rule.exempt_roles))}:"
                f" owners left on or before {deadline.isoformat()}",
                notes=notes,
            )
            outcome.add(resource, len(rows))


def _sweep_content(
    sweep: _Sweep, rule: DeleteAfter, at: dt.datetime, outcome: RuleOutcome
) -> None:
    events, raws = _table("behaviour_events"), _table("signal_raw_records")
    cutoff = _years_before(at, rule.years)
    due = and_(
        _type_condition(events.c.event_type, rule.event_types),
        events.c.occurred_at < cutoff,
    )
    statement = select(
        events.c.id,
        events.c.text.is_not(None).label("has_text"),
        events.c.attributes,
        events.c.raw_id,
    ).where(due, sweep.not_done("behaviour_events", events.c.id))
    for rows in _pages(sweep.session, statement, events.c.id):
        raw_ids = _freed_raw_records(sweep, rows, due)
        removed = {row.id: _strip_event(sweep, row, rule, raw_ids) for row in rows}
        names = sorted({name for fields in removed.values() for name in fields})
        sweep.record(
            "behaviour_events",
            removed,
            action="content_removed",
            detail=f"content of events before {cutoff.date().isoformat()} removed"
            f" ({', '.join(names) or 'nothing left to remove'})",
        )
        outcome.add("behaviour_events", len(rows))
        if raw_ids:
            if not sweep.dry_run:
                sweep.session.execute(
                    update(raws)
                    .where(raws.c.id.in_(raw_ids))
                    .values(payload=REMOVED_PAYLOAD)
                )
            sweep.record(
                "signal_raw_records",
                {raw_id: ["payload"] for raw_id in raw_ids},
                action="content_removed",
                detail="raw payload replaced by a removal marker",
            )
            outcome.add("signal_raw_records", len(raw_ids))


def _strip_event(
    sweep: _Sweep, row: Any, rule: DeleteAfter, raw_ids: set[int]
) -> list[str]:
    attributes = dict(row.attributes or {})
    kept = {
        key: value for key, value in attributes.items() if key in rule.keep_attributes
    }
    removed = ["text"] if row.has_text else []
    removed += [f"attributes.{key}" for key in sorted(set(attributes) - set(kept))]
    if row.raw_id in raw_ids:
        removed.append("raw_payload")
    if not sweep.dry_run and (row.has_text or kept != attributes):
        events = _table("behaviour_events")
        sweep.session.execute(
            update(events)
            .where(events.c.id == row.id)
            .values(text=None, attributes=kept)
        )
    return removed


def _freed_raw_records(
    sweep: _Sweep, rows: list[Any], due: ColumnElement[bool]
) -> set[int]:
    """Return the raw records of ``rows`` that no event still within retention needs."""
    events = _table("behaviour_events")
    candidates = {row.raw_id for row in rows if row.raw_id is not None}
    if not candidates:
        return set()
    still_needed = sweep.session.scalars(
        select(events.c.raw_id).where(events.c.raw_id.in_(candidates), ~due)
    )
    done = sweep.session.scalars(
        select(RetentionTombstone.record_id).where(
            RetentionTombstone.rule_id == sweep.rule_id,
            RetentionTombstone.resource == "signal_raw_records",
            RetentionTombstone.record_id.in_(candidates),
        )
    )
    return candidates - set(still_needed) - set(done)


def _pages(session: Session, statement: Any, key: Any) -> Iterable[list[Any]]:
    """Yield the rows of ``statement`` in batches, by ascending ``key``."""
    last = 0
    while True:
        rows = list(
            session.execute(statement.where(key > last).order_by(key).limit(BATCH_SIZE))
        )
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _type_condition(column: Any, patterns: Iterable[str]) -> ColumnElement[bool]:
    conditions = []
    for pattern in patterns:
        if pattern.endswith("*"):
            prefix = pattern[:-1].replace("_", "\\_")
            conditions.append(column.like(f"{prefix}%", escape="\\"))
        else:
            conditions.append(column == pattern)
    return or_(*conditions)


def _years_before(moment: dt.datetime, years: int) -> dt.datetime:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February in a year that has none
        return moment.replace(year=moment.year - years, day=28)


def _table(name: str) -> Table:
    from waggle.core.db import Base
    from waggle.models import load_all_models

    if name not in Base.metadata.tables:
        load_all_models()
    return Base.metadata.tables[name]


def describe_rule(rule: ReadOnlyAfterDeparture | DeleteAfter) -> str:
    """Return one line saying what ``rule`` does, for ``retention show``."""
    if isinstance(rule, ReadOnlyAfterDeparture):
        return (
            f"{', '.join(rule.resources)} of employees who left {rule.days}+ days ago"
            f" are read-only except for {', '.join(sorted(rule.exempt_roles))}"
        )
    return (
        f"content of {', '.join(rule.event_types)} events older than"
        f" {rule.years} years is removed (kept attributes: {len(rule.keep_attributes)})"
    )


def rules_as_json(rules: RetentionRules) -> str:
    """Return the rules as JSON (for ``retention show --json``)."""
    return json.dumps(
        [rule.model_dump(mode="json") for rule in rules.rules],
        ensure_ascii=False,
        sort_keys=True,
    )
