"""The public customer pool (公海): idle accounts go back, reps claim them again.

The rules, and why:

- **Sweep (自动退回).** An account whose owner has not followed it up for N
  days returns to the pool: it loses its owner, and so do its contacts and
  open opportunities that the owner held (a stale deal should not block the
  next rep, see the 撞单 rule for opportunities in :mod:`waggle.crm.service`).
  Won and lost deals and logged activities stay with the people who did them.
  The idle clock starts at the latest of: the last follow-up
  (``Account.last_followed_at``, bumped by every logged activity), the last
  claim from the pool, the account's creation, and, unless
  ``opportunity_updates_count`` is off, the last change to one of its open
  opportunities (moving a deal along is sales work too). An account with an
  open opportunity at or beyond ``protected_stage_probability`` (60: 商务谈判
  in the default pipeline) is never swept, however quiet. An account becomes
  due when N whole days have passed: with N = 30 and a follow-up at 09:00 on
  1 March, the sweep after 09:00 on 31 March returns it. A sweep takes its
  ``now`` from :func:`waggle.core.clock.now`, writes one ``swept`` pool event
  per account and one audit row, and is idempotent: a second run finds
  nothing more to do. Run ``waggle pool sweep`` daily (cron or a systemd
  timer); the API offers the same at ``POST /api/v1/public-pool/sweep``.
- **Release (放弃).** The owner, or anyone whose scope covers the owner, puts an
  account back with a reason; the pool event keeps it.
- **Claim (领取).** Reps and managers (policy resource ``public_pool``, action
  ``update``) claim for themselves; a manager may name a member of their team
  as the new owner (分配). Refused with ``claim_cooling_off`` while the
  claimant is the one who released it or let it be swept less than
  ``cooling_off_days`` ago, and with ``claim_cap_reached`` when the claimant
  already holds ``claim_cap`` accounts taken from the pool (an account counts
  while its latest pool event is the claimant's own claim and they still own
  it) or has claimed ``daily_claim_cap`` in the last 24 hours or
  ``weekly_claim_cap`` in the last 7 days.
- **Listing.** Everyone who may read accounts sees the pool (policy resource
  ``public_pool``, action ``read``) but only what a rep needs to choose: the
  name, credit code, industry, size, place, website, a masked phone (the last
  four digits), when and why it entered the pool, and until when the viewer
  is cooling off. Address, coordinates, contacts, deals, activities and
  previous owners stay hidden until the account is claimed.

Configuration without code: ``settings.public_pool_days`` and
``settings.public_pool_claim_cap`` (``WAGGLE_PUBLIC_POOL_DAYS``,
``WAGGLE_PUBLIC_POOL_CLAIM_CAP``) give the defaults; a YAML file named by
``WAGGLE_PUBLIC_POOL_FILE`` overrides any rule and adds per-industry and
per-region idle periods::

    days_without_follow_up: 30      # default: settings.public_pool_days
    claim_cap: 50                   # null: no cap; default: settings
    daily_claim_cap: 5              # null (default): no cap
    weekly_claim_cap: 20            # null (default): no cap
    cooling_off_days: 7             # 0: the previous owner may claim at once
    protected_stage_probability: 60 # null: no account is protected
    opportunity_updates_count: true
    overrides:
      - {industry: 制造业, days_without_follow_up: 60}
      - {region: east, days_without_follow_up: 45}          # region code
      - {industry: 互联网, region: east, days_without_follow_up: 15}

The most specific matching override wins: one naming both industry and
region beats one naming the industry only, which beats one naming the region
only; a region override applies to the account's region and every region
under it, the nearest one winning.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Update,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from waggle.core.actor import Actor, system_actor
from waggle.core.clock import now
from waggle.core.errors import Conflict, InvalidInput, NotFound, PolicyDenied
from waggle.core.settings import Settings
from waggle.crm.models import (
    Account,
    Contact,
    Opportunity,
    OpportunityStatus,
    PipelineStage,
    PoolEvent,
)
from waggle.governance import authorize, ensure_in_scope, record_audit
from waggle.governance.records import Page, RecordSpec, list_records
from waggle.identity.models import Employee, EmploymentStatus, Region

logger = logging.getLogger(__name__)

_CHUNK = 500


class PoolEventKind(enum.StrEnum):
    """What happened to an account at the pool's edge."""

    CLAIMED = "claimed"
    RELEASED = "released"
    SWEPT = "swept"


_ENTERING = (PoolEventKind.RELEASED, PoolEventKind.SWEPT)


# Rules -----------------------------------------------------------------------


class PoolOverride(BaseModel):
    """An idle period for accounts of one industry, one region, or both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    industry: str | None = None
    region: str | None = None
    days_without_follow_up: int = Field(ge=1)

    @model_validator(mode="after")
    def _names_a_group(self) -> PoolOverride:
        if self.industry is None and self.region is None:
            raise ValueError("an override names an industry, a region or both")
        return self


class PoolRules(BaseModel):
    """The public pool's rules; see the module docstring for each one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days_without_follow_up: int = Field(default=30, ge=1)
    claim_cap: int | None = Field(default=50, ge=0)
    daily_claim_cap: int | None = Field(default=None, ge=0)
    weekly_claim_cap: int | None = Field(default=None, ge=0)
    cooling_off_days: int = Field(default=7, ge=0)
    protected_stage_probability: int | None = Field(default=60, ge=0, le=100)
    opportunity_updates_count: bool = True
    overrides: tuple[PoolOverride, ...] = ()

    def days_for(self, industry: str | None, region_codes: Sequence[str]) -> int:
        """Return the idle period of an account.

        ``region_codes`` is the account's region code followed by the codes of
        the regions above it, nearest first.
        """
        best: tuple[bool, bool, int] | None = None
        days = self.days_without_follow_up
        for override in self.overrides:
            if override.industry is not None and override.industry != industry:
                continue
            if override.region is not None and override.region not in region_codes:
                continue
            distance = region_codes.index(override.region) if override.region else 0
            rank = (
                override.industry is not None,
                override.region is not None,
                -distance,
            )
            if best is None or rank > best:
                best, days = rank, override.days_without_follow_up
        return days

    @property
    def shortest_days(self) -> int:
        """Return the shortest idle period any account may have."""
        return min(
            [self.days_without_follow_up]
            + [override.days_without_follow_up for override in self.overrides]
        )


def load_pool_rules(settings: Settings) -> PoolRules:
    """Return the pool rules: the settings' defaults, then the YAML file's.

    Raises:
        InvalidInput: the file cannot be read or breaks a rule (the message
            names the file and the field).
    """
    defaults = {
        "days_without_follow_up": settings.public_pool_days,
        "claim_cap": settings.public_pool_claim_cap,
    }
    path = settings.public_pool_file
    if path is None:
        return parse_pool_rules(defaults, origin="settings")
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise InvalidInput(f"{path}: the public pool rules file is missing") from exc
    document = _read_rules_file(path, stamp)
    return parse_pool_rules({**defaults, **document}, origin=str(path))


@functools.lru_cache(maxsize=8)
def _read_rules_file(path: Path, stamp: int) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path}: not a readable YAML file ({exc})") from exc
    if not isinstance(document, dict):
        raise InvalidInput(f"{path}: expected a mapping of rule names to values")
    return document


def parse_pool_rules(document: dict[str, Any], *, origin: str) -> PoolRules:
    """Validate a rules document.

    Raises:
        InvalidInput: naming ``origin`` and the first bad field.
    """
    try:
        return PoolRules.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(f"{origin}: {where}: {first['msg']}") from exc


# Listing ---------------------------------------------------------------------

POOL: RecordSpec[Account] = RecordSpec(
    name="public_pool",
    model=Account,
    filters=("industry", "region_id", "province", "city", "size"),
    search_columns=("name",),
    sort_keys=("id", "name", "pool_entered_at", "last_followed_at"),
    list_condition=and_(
        Account.is_in_public_pool.is_(True), Account.merged_into_id.is_(None)
    ),
)


@dataclass(frozen=True)
class PoolEntry:
    """What a rep sees of an account in the pool before claiming it."""

    account_id: int
    name: str
    credit_code: str | None
    industry: str | None
    size: str | None
    province: str | None
    city: str | None
    region_id: int | None
    website: str | None
    phone_masked: str | None
    pool_entered_at: dt.datetime | None
    last_followed_at: dt.datetime | None
    entered_by: str | None
    entry_reason: str | None
    cooling_off_until: dt.datetime | None


@dataclass(frozen=True)
class PoolPage:
    items: list[PoolEntry]
    next_cursor: str | None


def list_public_pool(
    session: Session,
    actor: Actor,
    *,
    rules: PoolRules,
    filters: dict[str, Any] | None = None,
    search: str | None = None,
    sort: str = "-pool_entered_at",
    cursor: str | None = None,
    limit: int = 50,
) -> PoolPage:
    """Return one page of the pool as the actor may see it, newest first.

    Raises:
        PolicyDenied: the actor may not read the pool.
        InvalidInput: an unknown filter or sort key, or a damaged cursor.
    """
    page: Page[Account] = list_records(
        session,
        actor,
        POOL,
        filters=filters,
        search=search,
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    ids = [account.id for account in page.items]
    entries = _entering_events(session, ids)
    cooling = _cooling_until(session, ids, actor.employee_id, rules=rules, at=now())
    items = [
        _entry(account, entries.get(account.id), cooling.get(account.id))
        for account in page.items
    ]
    return PoolPage(items=items, next_cursor=page.next_cursor)


def _entry(
    account: Account, event: PoolEvent | None, cooling_until: dt.datetime | None
) -> PoolEntry:
    return PoolEntry(
        account_id=account.id,
        name=account.name,
        credit_code=account.credit_code,
        industry=account.industry,
        size=account.size,
        province=account.province,
        city=account.city,
        region_id=account.region_id,
        website=account.website,
        phone_masked=mask_phone(account.phone_key),
        pool_entered_at=account.pool_entered_at,
        last_followed_at=account.last_followed_at,
        entered_by=event.kind if event else None,
        entry_reason=event.reason if event else None,
        cooling_off_until=cooling_until,
    )


def mask_phone(phone_key: str | None) -> str | None:
    """Return a phone key with all but the last four digits hidden."""
    if not phone_key:
        return None
    if len(phone_key) == 11 and phone_key.startswith("1"):
        return phone_key[:3] + "****" + phone_key[-4:]
    return "****" + phone_key[-4:]


def _entering_events(session: Session, ids: Sequence[int]) -> dict[int, PoolEvent]:
    """Return the latest release or sweep of each account."""
    latest: dict[int, PoolEvent] = {}
    for chunk in _chunks(ids):
        events = session.scalars(
            select(PoolEvent)
            .where(PoolEvent.account_id.in_(chunk), PoolEvent.kind.in_(_ENTERING))
            .order_by(PoolEvent.occurred_at, PoolEvent.id)
        )
        latest.update({event.account_id: event for event in events})
    return latest


def _cooling_until(
    session: Session,
    ids: Sequence[int],
    employee_id: int | None,
    *,
    rules: PoolRules,
    at: dt.datetime,
) -> dict[int, dt.datetime]:
    """Return, per account, until when ``employee_id`` may not claim it."""
    if employee_id is None or rules.cooling_off_days == 0:
        return {}
    period = dt.timedelta(days=rules.cooling_off_days)
    until: dict[int, dt.datetime] = {}
    for chunk in _chunks(ids):
        rows = session.execute(
            select(PoolEvent.account_id, func.max(PoolEvent.occurred_at))
            .where(
                PoolEvent.account_id.in_(chunk),
                PoolEvent.employee_id == employee_id,
                PoolEvent.kind.in_(_ENTERING),
                PoolEvent.occurred_at > at - period,
            )
            .group_by(PoolEvent.account_id)
        )
        until.update({account_id: left + period for account_id, left in rows})
    return until


# Claiming and releasing ------------------------------------------------------


@dataclass(frozen=True)
class ClaimUsage:
    """How much of the claim caps an employee has used."""

    held_from_pool: int
    claims_last_day: int
    claims_last_week: int


def claim_account(
    session: Session,
    actor: Actor,
    account_id: int,
    *,
    rules: PoolRules,
    owner_id: int | None = None,
) -> Account:
    """Take an account out of the pool for the actor, or for ``owner_id`` (分配).

    Raises:
        PolicyDenied: the actor may not claim, or ``owner_id`` is outside
            their scope.
        NotFound: no such account.
        InvalidInput: the actor is not an employee and names no owner, or the
            named owner is not an active employee.
        Conflict: ``account_merged``, ``not_in_public_pool``,
            ``claim_cooling_off``, ``claim_cap_reached`` or ``already_claimed``.
    """
    authorize(session, actor, "update", "public_pool")
    claimant = _claimant(session, actor, owner_id, account_id)
    account = _pool_account(session, account_id)
    at = now()
    _refuse_cooling_off(session, account, claimant, rules=rules, at=at)
    _refuse_over_cap(session, claimant, rules=rules, at=at)
    claimed = _execute(
        session,
        update(Account)
        .where(
            Account.id == account_id,
            Account.is_in_public_pool.is_(True),
            Account.merged_into_id.is_(None),
        )
        .values(owner_id=claimant, is_in_public_pool=False, pool_entered_at=None),
    )
    if claimed != 1:
        raise Conflict(
            f"account {account_id} was claimed by someone else a moment ago",
            code="already_claimed",
        )
    _hand_over(session, account_id, from_owner=None, to_owner=claimant)
    assigned = claimant != actor.employee_id
    session.add(
        PoolEvent(
            account_id=account_id,
            employee_id=claimant,
            kind=PoolEventKind.CLAIMED,
            reason=f"assigned by {actor.username}" if assigned else None,
            occurred_at=at,
        )
    )
    record_audit(
        session,
        actor,
        action="pool_claim",
        resource="accounts",
        record_ids=[account_id],
        detail=f"owner {claimant}",
    )
    session.refresh(account)
    logger.info(
        "account claimed", extra={"account_id": account_id, "employee_id": claimant}
    )
    return account


def _claimant(
    session: Session, actor: Actor, owner_id: int | None, account_id: int
) -> int:
    if owner_id is None or owner_id == actor.employee_id:
        if actor.employee_id is None:
            raise InvalidInput(
                f"public pool claim: {actor.username} is not an employee and so "
                "cannot own accounts; name owner_id"
            )
        return actor.employee_id
    scope = authorize(session, actor, "update", "accounts")
    ensure_in_scope(
        session,
        actor,
        scope,
        owner_id=owner_id,
        action="assign",
        resource="accounts",
        record_id=account_id,
    )
    status = session.scalar(select(Employee.status).where(Employee.id == owner_id))
    if status != EmploymentStatus.ACTIVE:
        raise InvalidInput(
            f"public pool claim: owner_id {owner_id} is not an active employee"
        )
    return owner_id


def _pool_account(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    if account.merged_into_id is not None:
        raise Conflict(
            f"account {account_id} was merged into account {account.merged_into_id}",
            code="account_merged",
            survivor_id=account.merged_into_id,
        )
    if not account.is_in_public_pool:
        raise Conflict(
            f"account {account_id} is not in the public pool",
            code="not_in_public_pool",
        )
    return account


def _refuse_cooling_off(
    session: Session,
    account: Account,
    claimant: int,
    *,
    rules: PoolRules,
    at: dt.datetime,
) -> None:
    until = _cooling_until(session, [account.id], claimant, rules=rules, at=at).get(
        account.id
    )
    if until is not None:
        raise Conflict(
            f"account {account.id}: employee {claimant} gave it up recently and may "
            f"claim it again from {until.isoformat()} "
            f"(cooling-off period of {rules.cooling_off_days} days)",
            code="claim_cooling_off",
            until=until.isoformat(),
        )


def claim_usage(session: Session, employee_id: int, *, at: dt.datetime) -> ClaimUsage:
    """Return how many pool accounts an employee holds and has claimed lately."""
    return ClaimUsage(
        held_from_pool=_held_from_pool(session, employee_id),
        claims_last_day=_claims_since(session, employee_id, at - dt.timedelta(days=1)),
        claims_last_week=_claims_since(session, employee_id, at - dt.timedelta(days=7)),
    )


def _refuse_over_cap(
    session: Session, claimant: int, *, rules: PoolRules, at: dt.datetime
) -> None:
    usage = claim_usage(session, claimant, at=at)
    caps = [
        ("held", rules.claim_cap, usage.held_from_pool, "accounts held from the pool"),
        ("daily", rules.daily_claim_cap, usage.claims_last_day, "claims in 24 hours"),
        ("weekly", rules.weekly_claim_cap, usage.claims_last_week, "claims in 7 days"),
    ]
    for kind, limit, current, what in caps:
        if limit is not None and current >= limit:
            raise Conflict(
                f"employee {claimant} has reached the cap of {limit} {what}; "
                "release an account or wait",
                code="claim_cap_reached",
                cap=kind,
                limit=limit,
                current=current,
            )


def _held_from_pool(session: Session, employee_id: int) -> int:
    """Count owned accounts whose latest pool event is this employee's claim."""
    owned = select(Account.id).where(
        Account.owner_id == employee_id,
        Account.merged_into_id.is_(None),
        Account.is_in_public_pool.is_(False),
    )
    latest = (
        select(PoolEvent.account_id, func.max(PoolEvent.id).label("event_id"))
        .where(PoolEvent.account_id.in_(owned))
        .group_by(PoolEvent.account_id)
        .subquery()
    )
    count = session.scalar(
        select(func.count())
        .select_from(latest)
        .join(PoolEvent, PoolEvent.id == latest.c.event_id)
        .where(
            PoolEvent.kind == PoolEventKind.CLAIMED,
            PoolEvent.employee_id == employee_id,
        )
    )
    return int(count or 0)


def _claims_since(session: Session, employee_id: int, since: dt.datetime) -> int:
    count = session.scalar(
        select(func.count()).where(
            PoolEvent.employee_id == employee_id,
            PoolEvent.kind == PoolEventKind.CLAIMED,
            PoolEvent.occurred_at > since,
        )
    )
    return int(count or 0)


def release_account(
    session: Session, actor: Actor, account_id: int, *, reason: str
) -> Account:
    """Put an account back into the pool, giving the reason (放弃原因).

    Raises:
        PolicyDenied: the account's owner is outside the actor's scope.
        NotFound: no such account.
        InvalidInput: the reason is empty or longer than 200 characters.
        Conflict: ``account_merged`` or ``already_in_public_pool``.
    """
    scope = authorize(session, actor, "update", "accounts")
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    ensure_in_scope(
        session,
        actor,
        scope,
        owner_id=account.owner_id,
        action="release",
        resource="accounts",
        record_id=account_id,
    )
    _refuse_release(account, reason)
    at = now()
    if not _enter_pool(
        session,
        account_id,
        account.owner_id,
        kind=PoolEventKind.RELEASED,
        reason=reason.strip(),
        at=at,
    ):
        raise Conflict(
            f"account {account_id} changed hands a moment ago; reload it",
            code="already_in_public_pool",
        )
    record_audit(
        session,
        actor,
        action="pool_release",
        resource="accounts",
        record_ids=[account_id],
        detail=reason.strip(),
    )
    session.refresh(account)
    return account


def _refuse_release(account: Account, reason: str) -> None:
    if account.merged_into_id is not None:
        raise Conflict(
            f"account {account.id} was merged into account {account.merged_into_id}",
            code="account_merged",
            survivor_id=account.merged_into_id,
        )
    if account.is_in_public_pool:
        raise Conflict(
            f"account {account.id} is already in the public pool",
            code="already_in_public_pool",
        )
    if not reason.strip() or len(reason.strip()) > 200:
        raise InvalidInput(
            f"account {account.id}: reason: give why it is released "
            "(1 to 200 characters)"
        )


def _enter_pool(
    session: Session,
    account_id: int,
    previous_owner: int | None,
    *,
    kind: PoolEventKind,
    reason: str,
    at: dt.datetime,
) -> bool:
    """Move one account (and what its owner held of it) into the pool.

    The update only applies while the account still has ``previous_owner``
    and is outside the pool, so two sweeps racing each other return it once.
    """
    moved = _execute(
        session,
        update(Account)
        .where(
            Account.id == account_id,
            Account.owner_id == previous_owner,
            Account.is_in_public_pool.is_(False),
            Account.merged_into_id.is_(None),
        )
        .values(owner_id=None, is_in_public_pool=True, pool_entered_at=at),
    )
    if moved != 1:
        return False
    if previous_owner is not None:
        _hand_over(session, account_id, from_owner=previous_owner, to_owner=None)
    session.add(
        PoolEvent(
            account_id=account_id,
            employee_id=previous_owner,
            kind=kind,
            reason=reason[:200],
            occurred_at=at,
        )
    )
    return True


def _hand_over(
    session: Session,
    account_id: int,
    *,
    from_owner: int | None,
    to_owner: int | None,
) -> None:
    """Pass the account's contacts and open opportunities from one owner to another.

    An opportunity keeps its ``updated_at``: changing hands is not sales work.
    """
    _execute(
        session,
        update(Contact)
        .where(Contact.account_id == account_id, _owned_by(Contact, from_owner))
        .values(owner_id=to_owner),
    )
    _execute(
        session,
        update(Opportunity)
        .where(
            Opportunity.account_id == account_id,
            _owned_by(Opportunity, from_owner),
            Opportunity.status == OpportunityStatus.OPEN,
        )
        .values(owner_id=to_owner, updated_at=Opportunity.updated_at),
    )


def _owned_by(
    model: type[Contact] | type[Opportunity], owner_id: int | None
) -> ColumnElement[bool]:
    if owner_id is None:
        return model.owner_id.is_(None)
    return model.owner_id == owner_id


def _execute(session: Session, statement: Update) -> int:
    result = cast(
        CursorResult[Any],
        session.execute(statement.execution_options(synchronize_session=False)),
    )
    return int(result.rowcount)


# Sweeping --------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did."""

    swept_at: dt.datetime
    checked: int
    returned: list[int]
    protected: list[int]


@dataclass(frozen=True)
class _Candidate:
    account_id: int
    owner_id: int | None
    industry: str | None
    region_id: int | None
    followed_at: dt.datetime


def sweep_public_pool(
    session: Session, actor: Actor, *, rules: PoolRules
) -> SweepResult:
    """Return every account idle for its period to the pool (自动退回公海).

    Raises:
        PolicyDenied: the actor may not update every account.
    """
    scope = authorize(session, actor, "update", "accounts")
    if scope != "all":
        raise PolicyDenied(
            f"{actor.username} may not sweep the public pool: that needs update "
            "rights over every account",
            action="pool_sweep",
            resource="accounts",
        )
    at = now()
    candidates = _idle_candidates(session, at - dt.timedelta(days=rules.shortest_days))
    returned, protected = _sweep(session, candidates, rules=rules, at=at)
    record_audit(
        session,
        actor,
        action="pool_sweep",
        resource="accounts",
        record_ids=returned,
        detail=(
            f"{len(returned)} returned, {len(protected)} protected, "
            f"{len(candidates)} checked"
        ),
    )
    logger.info(
        "public pool swept",
        extra={
            "returned": len(returned),
            "protected": len(protected),
            "checked": len(candidates),
        },
    )
    return SweepResult(at, len(candidates), returned, protected)


def _sweep(
    session: Session,
    candidates: list[_Candidate],
    *,
    rules: PoolRules,
    at: dt.datetime,
) -> tuple[list[int], list[int]]:
    ids = [candidate.account_id for candidate in candidates]
    claims = _latest_claims(session, ids)
    deals = _open_deal_facts(session, ids)
    regions = _region_chains(session)
    returned: list[int] = []
    protected: list[int] = []
    for candidate in candidates:
        days = rules.days_for(candidate.industry, regions.get(candidate.region_id, ()))
        last_update, top_probability = deals.get(candidate.account_id, (None, None))
        clocks = [candidate.followed_at, claims.get(candidate.account_id)]
        if rules.opportunity_updates_count:
            clocks.append(last_update)
        idle_since = max(clock for clock in clocks if clock is not None)
        if at - idle_since < dt.timedelta(days=days):
            continue
        threshold = rules.protected_stage_probability
        if threshold is not None and (top_probability or -1) >= threshold:
            protected.append(candidate.account_id)
            continue
        reason = (
            f"no_follow_up: {days} days without follow-up since {idle_since:%Y-%m-%d}"
        )
        if _enter_pool(
            session,
            candidate.account_id,
            candidate.owner_id,
            kind=PoolEventKind.SWEPT,
            reason=reason,
            at=at,
        ):
            returned.append(candidate.account_id)
    return returned, protected


def _idle_candidates(session: Session, cutoff: dt.datetime) -> list[_Candidate]:
    """Return live owned-or-orphan accounts outside the pool quiet since ``cutoff``."""
    rows = session.execute(
        select(
            Account.id,
            Account.owner_id,
            Account.industry,
            Account.region_id,
            Account.last_followed_at,
            Account.created_at,
        )
        .where(
            Account.is_in_public_pool.is_(False),
            Account.merged_into_id.is_(None),
            or_(
                Account.last_followed_at <= cutoff,
                and_(Account.last_followed_at.is_(None), Account.created_at <= cutoff),
            ),
        )
        .order_by(Account.id)
    )
    return [
        _Candidate(
            account_id,
            owner_id,
            industry,
            region_id,
            max(created_at, followed_at) if followed_at else created_at,
        )
        for account_id, owner_id, industry, region_id, followed_at, created_at in rows
    ]


def _latest_claims(session: Session, ids: Sequence[int]) -> dict[int, dt.datetime]:
    latest: dict[int, dt.datetime] = {}
    for chunk in _chunks(ids):
        rows = session.execute(
            select(PoolEvent.account_id, func.max(PoolEvent.occurred_at))
            .where(
                PoolEvent.account_id.in_(chunk),
                PoolEvent.kind == PoolEventKind.CLAIMED,
            )
            .group_by(PoolEvent.account_id)
        )
        latest.update({account_id: at for account_id, at in rows})
    return latest


def _open_deal_facts(
    session: Session, ids: Sequence[int]
) -> dict[int, tuple[dt.datetime, int]]:
    """Return, per account, the last change to an open deal and its top stage."""
    facts: dict[int, tuple[dt.datetime, int]] = {}
    for chunk in _chunks(ids):
        rows = session.execute(
            select(
                Opportunity.account_id,
                func.max(Opportunity.updated_at),
                func.max(PipelineStage.probability),
            )
            .join(PipelineStage, PipelineStage.id == Opportunity.stage_id)
            .where(
                Opportunity.account_id.in_(chunk),
                Opportunity.status == OpportunityStatus.OPEN,
            )
            .group_by(Opportunity.account_id)
        )
        facts.update({account_id: (updated, top) for account_id, updated, top in rows})
    return facts


def _region_chains(session: Session) -> dict[int | None, tuple[str, ...]]:
    """Return each region's code followed by its ancestors' codes."""
    regions = {
        region_id: (code, parent_id)
        for region_id, code, parent_id in session.execute(
            select(Region.id, Region.code, Region.parent_id)
        )
    }
    chains: dict[int | None, tuple[str, ...]] = {}
    for region_id in regions:
        chain: list[str] = []
        current: int | None = region_id
        while current is not None and current in regions and len(chain) < 32:
            code, current = regions[current]
            chain.append(code)
        chains[region_id] = tuple(chain)
    return chains


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


__all__ = [
    "POOL",
    "ClaimUsage",
    "PoolEntry",
    "PoolEventKind",
    "PoolOverride",
    "PoolPage",
    "PoolRules",
    "SweepResult",
    "claim_account",
    "claim_usage",
    "list_public_pool",
    "load_pool_rules",
    "mask_phone",
    "parse_pool_rules",
    "release_account",
    "sweep_public_pool",
]


def sweep_job(settings: Settings) -> Callable[[sessionmaker[Session]], SweepResult]:
    """Return the periodic job that sweeps the pool as the system actor.

    The rules file is read on every run, so a changed period takes effect at
    the next sweep without a restart.
    """

    def run(sessions: sessionmaker[Session]) -> SweepResult:
        with sessions.begin() as session:
            return sweep_public_pool(
                session, system_actor("pool-sweep"), rules=load_pool_rules(settings)
            )

    return run
