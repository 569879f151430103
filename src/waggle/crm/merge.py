"""Merging duplicate accounts (合并客户) with their history kept.

The rules:

- **Who.** Merging needs ``update`` on the survivor and ``delete`` on the
  merged account, both within the actor's scope: in the default policy a
  manager merges within their team, a director within their region, sales_ops
  anywhere; a rep asks their manager.
- **Refused.** Merging an account with itself (``InvalidInput``), an account
  already merged away (``already_merged``), and two accounts with different
  credit codes (``credit_code_mismatch``: different legal entities), unless
  forced; a forced merge is marked in the record and the audit row.
- **Fields.** The survivor keeps its values. With ``fill_blanks`` (the
  default) each empty field of the survivor takes the merged account's value:
  industry, region, size, province, city, address, coordinates, credit code,
  phone, email domain, website. ``last_followed_at`` becomes the later of both.
- **What moves.** Contacts, opportunities, activities and pool events of the
  merged account move to the survivor, and accounts merged earlier into the
  merged one now point at the survivor. Contacts owned by the merged account's
  owner pass to the survivor's owner; opportunities keep their owners (a deal
  belongs to whoever works it) and their ``updated_at``.
- **History.** The merged account is not deleted: it gets ``merged_into_id``,
  leaves the pool, drops out of every list and of duplicate checks, and can
  still be read by id. A :class:`~waggle.crm.models.MergeRecord` keeps a
  snapshot of its fields, the fields filled on the survivor and the ids of
  every row moved, enough to undo the merge by hand; an audit row
  (``merge``) records who did it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import CursorResult, Update, case, or_, select, update
from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.errors import Conflict, InvalidInput, NotFound
from waggle.crm.dedupe import (
    DuplicateMatch,
    account_keys,
    find_duplicates_of_keys,
    normalize_credit_code,
)
from waggle.crm.models import (
    Account,
    Activity,
    Contact,
    MergeRecord,
    Opportunity,
    PoolEvent,
)
from waggle.governance import authorize, ensure_in_scope, record_audit

logger = logging.getLogger(__name__)

FILLABLE_FIELDS = (
    "industry",
    "region_id",
    "size",
    "province",
    "city",
    "address",
    "latitude",
    "longitude",
    "credit_code",
    "phone",
    "phone_key",
    "email_domain",
    "website",
)


@dataclass(frozen=True)
class _Pair:
    survivor: Account
    merged: Account


def merge_accounts(
    session: Session,
    actor: Actor,
    survivor_id: int,
    merged_id: int,
    *,
    force: bool = False,
    fill_blanks: bool = True,
) -> MergeRecord:
    """Fold account ``merged_id`` into account ``survivor_id`` and return the record.

    Raises:
        PolicyDenied: either account is outside what the actor may change.
        NotFound: either account does not exist.
        InvalidInput: both ids name the same account.
        Conflict: ``already_merged`` or ``credit_code_mismatch``.
    """
    pair = _load_pair(session, actor, survivor_id, merged_id)
    _refuse(pair, force=force)
    snapshot = _snapshot(pair.merged)
    filled = _fill_blanks(pair) if fill_blanks else []
    moved = _move_children(session, pair)
    _retire(pair)
    record = MergeRecord(
        resource="accounts",
        survivor_id=survivor_id,
        merged_id=merged_id,
        merged_snapshot={
            "fields": snapshot,
            "filled": filled,
            "moved": moved,
            "forced": force,
        },
        merged_by=actor.username,
        merged_at=now(),
    )
    session.add(record)
    session.flush()
    record_audit(
        session,
        actor,
        action="merge",
        resource="accounts",
        record_ids=[survivor_id, merged_id],
        detail=_audit_detail(merged_id, survivor_id, moved, force=force),
    )
    logger.info(
        "accounts merged",
        extra={"account_id": survivor_id, "merged_id": merged_id, "forced": force},
    )
    return record


def _load_pair(
    session: Session, actor: Actor, survivor_id: int, merged_id: int
) -> _Pair:
    if survivor_id == merged_id:
        raise InvalidInput(
            f"account {survivor_id}: merged_id must name another account"
        )
    update_scope = authorize(session, actor, "update", "accounts")
    delete_scope = authorize(session, actor, "delete", "accounts")
    survivor = _account(session, survivor_id)
    merged = _account(session, merged_id)
    for account, scope, action in (
        (survivor, update_scope, "merge into"),
        (merged, delete_scope, "merge away"),
    ):
        ensure_in_scope(
            session,
            actor,
            scope,
            owner_id=account.owner_id,
            action=action,
            resource="accounts",
            record_id=account.id,
        )
    return _Pair(survivor, merged)


def _account(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    return account


def _refuse(pair: _Pair, *, force: bool) -> None:
    for account in (pair.survivor, pair.merged):
        if account.merged_into_id is not None:
            raise Conflict(
                f"account {account.id} was already merged into account "
                f"{account.merged_into_id}",
                code="already_merged",
                survivor_id=account.merged_into_id,
            )
    codes = (
        normalize_credit_code(pair.survivor.credit_code),
        normalize_credit_code(pair.merged.credit_code),
    )
    if all(codes) and codes[0] != codes[1] and not force:
        raise Conflict(
            f"accounts {pair.survivor.id} and {pair.merged.id} have different "
            f"credit codes ({codes[0]}, {codes[1]}): they are different legal "
            "entities; pass force to merge them anyway",
            code="credit_code_mismatch",
        )


def _snapshot(account: Account) -> dict[str, Any]:
    """Return every column of ``account`` as JSON-ready values."""
    return {
        column.key: _plain(getattr(account, column.key))
        for column in Account.__table__.columns
    }


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _fill_blanks(pair: _Pair) -> list[str]:
    filled = []
    for name in FILLABLE_FIELDS:
        mine, theirs = getattr(pair.survivor, name), getattr(pair.merged, name)
        if mine in (None, "") and theirs not in (None, ""):
            setattr(pair.survivor, name, theirs)
            filled.append(name)
    return filled


def _move_children(session: Session, pair: _Pair) -> dict[str, list[int]]:
    """Point the merged account's rows at the survivor; return the ids moved."""
    survivor, merged = pair.survivor, pair.merged
    moved = {
        "contacts": _ids(session, Contact, merged.id),
        "opportunities": _ids(session, Opportunity, merged.id),
        "activities": _ids(session, Activity, merged.id),
        "pool_events": _ids(session, PoolEvent, merged.id),
        "merged_accounts": list(
            session.scalars(
                select(Account.id)
                .where(Account.merged_into_id == merged.id)
                .order_by(Account.id)
            )
        ),
    }
    _execute(
        session,
        update(Contact)
        .where(Contact.account_id == merged.id)
        .values(
            account_id=survivor.id,
            owner_id=_contact_owner(merged.owner_id, survivor.owner_id),
        ),
    )
    _execute(
        session,
        update(Opportunity)
        .where(Opportunity.account_id == merged.id)
        .values(account_id=survivor.id, updated_at=Opportunity.updated_at),
    )
    for model in (Activity, PoolEvent):
        _execute(
            session,
            update(model)
            .where(model.account_id == merged.id)
            .values(account_id=survivor.id),
        )
    _execute(
        session,
        update(Account)
        .where(Account.merged_into_id == merged.id)
        .values(merged_into_id=survivor.id),
    )
    return moved


def _contact_owner(merged_owner: int | None, survivor_owner: int | None) -> Any:
    """Contacts the merged account's owner held go to the survivor's owner."""
    if merged_owner is None:
        return case(
            (Contact.owner_id.is_(None), survivor_owner), else_=Contact.owner_id
        )
    return case(
        (Contact.owner_id == merged_owner, survivor_owner), else_=Contact.owner_id
    )


def _ids(
    session: Session,
    model: type[Contact] | type[Opportunity] | type[Activity] | type[PoolEvent],
    account_id: int,
) -> list[int]:
    return list(
        session.scalars(
            select(model.id).where(model.account_id == account_id).order_by(model.id)
        )
    )


def _execute(session: Session, statement: Update) -> int:
    result = cast(
        CursorResult[Any],
        session.execute(statement.execution_options(synchronize_session=False)),
    )
    return int(result.rowcount)


def _retire(pair: _Pair) -> None:
    survivor, merged = pair.survivor, pair.merged
    followed = [at for at in (survivor.last_followed_at, merged.last_followed_at) if at]
    survivor.last_followed_at = max(followed) if followed else None
    merged.merged_into_id = survivor.id
    merged.is_in_public_pool = False
    merged.pool_entered_at = None


def _audit_detail(
    merged_id: int, survivor_id: int, moved: dict[str, list[int]], *, force: bool
) -> str:
    counts = ", ".join(f"{len(ids)} {name}" for name, ids in moved.items())
    forced = " (forced past different credit codes)" if force else ""
    return f"account {merged_id} into {survivor_id}{forced}: moved {counts}"


def merge_history(session: Session, actor: Actor, account_id: int) -> list[MergeRecord]:
    """Return the merges an account took part in, oldest first.

    Raises:
        NotFound: no such account.
        PolicyDenied: it is outside what the actor may read.
    """
    account = _readable_account(session, actor, account_id)
    records = list(
        session.scalars(
            select(MergeRecord)
            .where(
                MergeRecord.resource == "accounts",
                or_(
                    MergeRecord.survivor_id == account.id,
                    MergeRecord.merged_id == account.id,
                ),
            )
            .order_by(MergeRecord.merged_at, MergeRecord.id)
        )
    )
    record_audit(
        session,
        actor,
        action="read",
        resource="merge_records",
        record_ids=[record.id for record in records],
    )
    return records


def account_duplicates(
    session: Session, actor: Actor, account_id: int
) -> list[DuplicateMatch]:
    """Return the live accounts that look like this one: candidates to merge.

    Raises:
        NotFound: no such account.
        PolicyDenied: it is outside what the actor may read.
    """
    account = _readable_account(session, actor, account_id)
    matches = find_duplicates_of_keys(
        session, account_keys(account), exclude_ids=[account.id]
    )
    record_audit(
        session,
        actor,
        action="read",
        resource="accounts",
        record_ids=[account.id, *(match.account_id for match in matches)],
        detail="duplicates",
    )
    return matches


def _readable_account(session: Session, actor: Actor, account_id: int) -> Account:
    scope = authorize(session, actor, "read", "accounts")
    account = _account(session, account_id)
    ensure_in_scope(
        session,
        actor,
        scope,
        owner_id=account.owner_id,
        action="read",
        resource="accounts",
        record_id=account_id,
    )
    return account


__all__ = [
    "FILLABLE_FIELDS",
    "account_duplicates",
    "merge_accounts",
    "merge_history",
]
