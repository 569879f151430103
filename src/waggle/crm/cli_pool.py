"""Commands of the public pool (公海), duplicate search (撞单) and merges.

``waggle pool sweep`` is the one to schedule (daily, from cron or a systemd
timer); it acts as the local operator unless ``--as`` names a user.
"""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from waggle.cli import AsUser, out, resolve_actor, session_scope, settings
from waggle.core.errors import NotFound
from waggle.crm.dedupe import find_account_duplicates
from waggle.crm.models import Account
from waggle.governance import authorize, record_audit

AccountRef = Annotated[str, typer.Argument(help="Account id or external id.")]


def register(app: typer.Typer) -> None:
    """Add the ``pool`` and ``accounts`` command groups to the ``waggle`` command."""
    if any(group.name in {"pool", "accounts"} for group in app.registered_groups):
        return
    pool_app = typer.Typer(
        help="The public customer pool (公海): sweep, list, claim, release.",
        no_args_is_help=True,
    )
    accounts_app = typer.Typer(
        help="Accounts: duplicate search (撞单) and merges (合并).",
        no_args_is_help=True,
    )
    pool_app.command("sweep")(pool_sweep)
    pool_app.command("list")(pool_list)
    pool_app.command("claim")(pool_claim)
    pool_app.command("release")(pool_release)
    pool_app.command("rules")(pool_rules)
    accounts_app.command("duplicates")(accounts_duplicates)
    accounts_app.command("merge")(accounts_merge)
    accounts_app.command("merge-history")(accounts_merge_history)
    app.add_typer(pool_app, name="pool")
    app.add_typer(accounts_app, name="accounts")


def _say(text: str) -> None:
    out.print(text, soft_wrap=True, highlight=False, markup=False)


def _account_id(session: Session, reference: str) -> int:
    """Resolve an account id or external id.

    Raises:
        NotFound: no account has that id or external id.
    """
    if reference.isdigit():
        return int(reference)
    account_id = session.scalar(
        select(Account.id).where(Account.external_id == reference)
    )
    if account_id is None:
        raise NotFound(f"account {reference!r} does not exist")
    return account_id


def pool_sweep(as_user: AsUser = None) -> None:
    """Return every account idle for its period to the pool (run it daily)."""
    from waggle.crm.public_pool import load_pool_rules, sweep_public_pool

    rules = load_pool_rules(settings())
    with session_scope() as session:
        result = sweep_public_pool(
            session, resolve_actor(session, as_user), rules=rules
        )
    _say(
        f"swept at {result.swept_at.isoformat()}: {len(result.returned)} returned, "
        f"{len(result.protected)} protected, {result.checked} checked"
    )
    if result.returned:
        _say("returned: " + " ".join(str(i) for i in result.returned))


def pool_list(
    industry: Annotated[str | None, typer.Option(help="Only this industry.")] = None,
    province: Annotated[str | None, typer.Option(help="Only this province.")] = None,
    city: Annotated[str | None, typer.Option(help="Only this city.")] = None,
    search: Annotated[str | None, typer.Option("--search", "-q")] = None,
    limit: int = 50,
    as_user: AsUser = None,
) -> None:
    """List the pool, newest first: id, name, industry, city, since, why."""
    from waggle.crm.public_pool import list_public_pool, load_pool_rules

    rules = load_pool_rules(settings())
    filters = {"industry": industry, "province": province, "city": city}
    with session_scope() as session:
        page = list_public_pool(
            session,
            resolve_actor(session, as_user),
            rules=rules,
            filters={key: value for key, value in filters.items() if value},
            search=search,
            limit=limit,
        )
    for entry in page.items:
        since = (
            entry.pool_entered_at.date().isoformat() if entry.pool_entered_at else "-"
        )
        why = f"{entry.entered_by}: {entry.entry_reason}" if entry.entered_by else "-"
        cooling = (
            f"  (you may claim from {entry.cooling_off_until.date().isoformat()})"
            if entry.cooling_off_until
            else ""
        )
        _say(
            f"{entry.account_id}\t{entry.name}\t{entry.industry or '-'}\t"
            f"{entry.city or '-'}\t{since}\t{why}{cooling}"
        )
    if not page.items:
        _say("the public pool is empty")


def pool_claim(
    account: AccountRef,
    owner: Annotated[
        str | None,
        typer.Option(help="Assign to this employee (external id) instead (分配)."),
    ] = None,
    as_user: AsUser = None,
) -> None:
    """Claim an account from the pool (领取); the claimer becomes its owner."""
    from waggle.crm.public_pool import claim_account, load_pool_rules
    from waggle.identity.models import Employee

    rules = load_pool_rules(settings())
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        owner_id = None
        if owner is not None:
            owner_id = session.scalar(
                select(Employee.id).where(Employee.external_id == owner)
            )
            if owner_id is None:
                raise NotFound(f"employee {owner!r} does not exist")
        claimed = claim_account(
            session,
            actor,
            _account_id(session, account),
            rules=rules,
            owner_id=owner_id,
        )
        _say(f"account {claimed.id} ({claimed.name}) now owned by {claimed.owner_id}")


def pool_release(
    account: AccountRef,
    reason: Annotated[str, typer.Option(help="Why it is given up (放弃原因).")],
    as_user: AsUser = None,
) -> None:
    """Put an account back into the pool with a reason."""
    from waggle.crm.public_pool import release_account

    with session_scope() as session:
        released = release_account(
            session,
            resolve_actor(session, as_user),
            _account_id(session, account),
            reason=reason,
        )
        _say(f"account {released.id} ({released.name}) is back in the public pool")


def pool_rules() -> None:
    """Print the pool rules in force (settings and WAGGLE_PUBLIC_POOL_FILE)."""
    import yaml

    from waggle.crm.public_pool import load_pool_rules

    rules = load_pool_rules(settings()).model_dump(mode="json")
    _say(yaml.safe_dump(rules, allow_unicode=True, sort_keys=False).rstrip())


def accounts_duplicates(
    name: Annotated[str, typer.Argument(help="Company name as a rep would type it.")],
    credit_code: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    email_domain: Annotated[str | None, typer.Option()] = None,
    as_user: AsUser = None,
) -> None:
    """List live accounts a new account of this name would duplicate (撞单检查)."""
    with session_scope() as session:
        actor = resolve_actor(session, as_user)
        authorize(session, actor, "read", "accounts")
        matches = find_account_duplicates(
            session,
            name=name,
            credit_code=credit_code,
            phone=phone,
            email_domain=email_domain,
        )
        record_audit(
            session,
            actor,
            action="read",
            resource="accounts",
            record_ids=[match.account_id for match in matches],
            detail="duplicates",
        )
    for match in matches:
        owner = match.owner_name or ("public pool" if match.is_in_public_pool else "-")
        _say(
            f"{match.account_id}\t{match.name}\towner: {owner}\t"
            f"matched on {', '.join(match.matched_on)}"
        )
    if not matches:
        _say("no duplicates")


def accounts_merge(
    survivor: AccountRef,
    merged: AccountRef,
    force: Annotated[
        bool, typer.Option(help="Merge even across different credit codes.")
    ] = False,
    fill_blanks: Annotated[
        bool, typer.Option(help="Fill the survivor's empty fields.")
    ] = True,
    as_user: AsUser = None,
) -> None:
    """Fold MERGED into SURVIVOR; MERGED is kept as history (合并客户)."""
    from waggle.crm.merge import merge_accounts

    with session_scope() as session:
        record = merge_accounts(
            session,
            resolve_actor(session, as_user),
            _account_id(session, survivor),
            _account_id(session, merged),
            force=force,
            fill_blanks=fill_blanks,
        )
        moved = record.merged_snapshot["moved"]
        counts = ", ".join(
            f"{len(ids)} {name}"
            for name, ids in moved.items()  # type: ignore[attr-defined]
        )
        _say(
            f"account {record.merged_id} merged into {record.survivor_id} "
            f"(record {record.id}): moved {counts}"
        )


def accounts_merge_history(account: AccountRef, as_user: AsUser = None) -> None:
    """List the merges an account took part in, oldest first."""
    from waggle.crm.merge import merge_history

    with session_scope() as session:
        records = merge_history(
            session, resolve_actor(session, as_user), _account_id(session, account)
        )
        for record in records:
            name = record.merged_snapshot["fields"]["name"]  # type: ignore[index]
            _say(
                f"{record.merged_at.isoformat()}\t{record.merged_id} ({name}) into "
                f"{record.survivor_id}\tby {record.merged_by}"
            )
        if not records:
            _say("no merges")
