"""HTTP routes of the public pool (公海), duplicate search (撞单) and merges.

=========================================  ======================================
``GET  /api/v1/public-pool``               the pool as the caller may see it
``GET  /api/v1/public-pool/rules``         the rules and the caller's claim usage
``POST /api/v1/public-pool/{id}/claim``    claim (``{"owner_id"}`` to assign)
``POST /api/v1/public-pool/sweep``         return idle accounts to the pool
``POST /api/v1/accounts/{id}/release``     put an account back (``{"reason"}``)
``GET  /api/v1/accounts/{id}/duplicates``  live accounts that look like this one
``POST /api/v1/accounts/{id}/merge``       fold ``{"merged_id"}`` into this one
``GET  /api/v1/accounts/{id}/merge-history``  the merges it took part in
=========================================  ======================================
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from waggle.apikit import ActorDep, SessionDep, query_filters
from waggle.core.clock import now
from waggle.crm.dedupe import describe_match
from waggle.crm.merge import account_duplicates, merge_accounts, merge_history
from waggle.crm.models import Account
from waggle.crm.public_pool import (
    POOL,
    PoolRules,
    claim_account,
    claim_usage,
    list_public_pool,
    load_pool_rules,
    release_account,
    sweep_public_pool,
)
from waggle.crm.schemas import AccountRead
from waggle.governance import authorize

TAG = "public pool"


def pool_rules(request: Request) -> PoolRules:
    """Return the pool rules of the application's settings."""
    return load_pool_rules(request.app.state.settings)


RulesDep = Annotated[PoolRules, Depends(pool_rules)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ClaimBody(_Body):
    owner_id: int | None = Field(
        default=None, description="Assign to this employee instead (分配)."
    )


class ReleaseBody(_Body):
    reason: str = Field(min_length=1, max_length=200, description="放弃原因")


class MergeBody(_Body):
    merged_id: int
    force: bool = Field(
        default=False, description="Merge even across different credit codes."
    )
    fill_blanks: bool = Field(
        default=True, description="Fill the survivor's empty fields."
    )


class PoolEntryOut(BaseModel):
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


class PoolPageOut(BaseModel):
    items: list[PoolEntryOut]
    next_cursor: str | None


class ReleaseOut(BaseModel):
    account_id: int
    is_in_public_pool: bool
    pool_entered_at: dt.datetime | None


class SweepOut(BaseModel):
    swept_at: dt.datetime
    checked: int
    returned: list[int]
    protected: list[int]


class UsageOut(BaseModel):
    held_from_pool: int
    claims_last_day: int
    claims_last_week: int


class RulesOut(BaseModel):
    rules: dict[str, Any]
    usage: UsageOut | None


class DuplicateOut(BaseModel):
    account_id: int
    name: str
    owner_id: int | None
    owner_name: str | None
    is_in_public_pool: bool
    matched_on: list[str]


class MergeRecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    survivor_id: int
    merged_id: int
    merged_snapshot: dict[str, Any]
    merged_by: str
    merged_at: dt.datetime


class MergeOut(BaseModel):
    record: MergeRecordOut
    survivor: AccountRead


def router() -> APIRouter:
    """Return the pool, duplicate and merge routes."""
    api = APIRouter(tags=[TAG])
    _pool_routes(api)
    _account_routes(api)
    return api


def _pool_routes(api: APIRouter) -> None:
    filter_docs = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in POOL.filters
    ]

    @api.get(
        "/api/v1/public-pool",
        response_model=PoolPageOut,
        openapi_extra={"parameters": filter_docs},
    )
    def list_pool(
        request: Request,
        session: SessionDep,
        actor: ActorDep,
        rules: RulesDep,
        cursor: str | None = None,
        limit: int = 50,
        sort: str = "-pool_entered_at",
        q: str | None = None,
    ) -> Any:
        """List the public pool, newest first; phones are masked, contacts hidden."""
        page = list_public_pool(
            session,
            actor,
            rules=rules,
            filters=query_filters(request, POOL),
            search=q,
            sort=sort,
            cursor=cursor,
            limit=limit,
        )
        return {
            "items": [dataclasses.asdict(entry) for entry in page.items],
            "next_cursor": page.next_cursor,
        }

    @api.get("/api/v1/public-pool/rules", response_model=RulesOut)
    def rules_and_usage(session: SessionDep, actor: ActorDep, rules: RulesDep) -> Any:
        """Show the pool rules in force and how much of the caps the caller used."""
        authorize(session, actor, "read", "public_pool")
        usage = None
        if actor.employee_id is not None:
            usage = dataclasses.asdict(
                claim_usage(session, actor.employee_id, at=now())
            )
        return {"rules": rules.model_dump(mode="json"), "usage": usage}

    @api.post("/api/v1/public-pool/sweep", response_model=SweepOut)
    def sweep(session: SessionDep, actor: ActorDep, rules: RulesDep) -> Any:
        """Return every account idle for its period to the pool (idempotent)."""
        return dataclasses.asdict(sweep_public_pool(session, actor, rules=rules))

    @api.post("/api/v1/public-pool/{account_id}/claim", response_model=AccountRead)
    def claim(
        account_id: int,
        session: SessionDep,
        actor: ActorDep,
        rules: RulesDep,
        body: ClaimBody | None = None,
    ) -> Any:
        """Claim an account from the pool (领取), or assign it with ``owner_id``."""
        owner_id = body.owner_id if body else None
        return claim_account(session, actor, account_id, rules=rules, owner_id=owner_id)


def _account_routes(api: APIRouter) -> None:
    @api.post("/api/v1/accounts/{account_id}/release", response_model=ReleaseOut)
    def release(
        account_id: int, body: ReleaseBody, session: SessionDep, actor: ActorDep
    ) -> Any:
        """Put an account back into the public pool with a reason (放弃)."""
        account = release_account(session, actor, account_id, reason=body.reason)
        return {
            "account_id": account.id,
            "is_in_public_pool": account.is_in_public_pool,
            "pool_entered_at": account.pool_entered_at,
        }

    @api.get(
        "/api/v1/accounts/{account_id}/duplicates", response_model=list[DuplicateOut]
    )
    def duplicates(account_id: int, session: SessionDep, actor: ActorDep) -> Any:
        """List live accounts that look like this one, strongest evidence first."""
        return [
            describe_match(match)
            for match in account_duplicates(session, actor, account_id)
        ]

    @api.post("/api/v1/accounts/{survivor_id}/merge", response_model=MergeOut)
    def merge(
        survivor_id: int, body: MergeBody, session: SessionDep, actor: ActorDep
    ) -> Any:
        """Fold ``merged_id`` into this account; the merged one is kept as history."""
        record = merge_accounts(
            session,
            actor,
            survivor_id,
            body.merged_id,
            force=body.force,
            fill_blanks=body.fill_blanks,
        )
        survivor = session.get_one(Account, survivor_id)
        session.refresh(survivor)
        return {"record": record, "survivor": survivor}

    @api.get(
        "/api/v1/accounts/{account_id}/merge-history",
        response_model=list[MergeRecordOut],
    )
    def history(account_id: int, session: SessionDep, actor: ActorDep) -> Any:
        """List the merges this account took part in, oldest first."""
        return merge_history(session, actor, account_id)
