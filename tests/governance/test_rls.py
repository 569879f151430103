"""PostgreSQL row-level security: the application role behind the second wall.

These tests run on PostgreSQL only, always: SQLite has no row-level security.
They use a throwaway database and a throwaway login role, since roles belong
to the whole cluster.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import POSTGRES_ADMIN_URL
from tests.factories import Org, build_org
from waggle.apikit import ActorDep, SessionDep
from waggle.app import create_app
from waggle.cli import main
from waggle.core.actor import Actor, system_actor
from waggle.core.db import make_engine, make_session_factory, transaction
from waggle.core.errors import InvalidInput
from waggle.core.migrate import upgrade
from waggle.core.settings import Settings
from waggle.crm.models import Account, Quota
from waggle.crm.pipelines import ensure_default_pipeline
from waggle.governance.chain import ensure_chain_head
from waggle.governance.guard import visible_owner_ids
from waggle.governance.policy import SCOPE_ORDER, load_policy
from waggle.governance.rls import (
    OWNED_TABLES,
    apply_rls_scope,
    bind_rls_scope,
    check_rls,
    enforce_on_sessions,
    install_rls,
    rls_enforced,
    scope_to_actor,
)

PASSWORD = "app-secret-口令"


@dataclass
class RlsDatabase:
    """A migrated database with the org, some accounts and an installed app role."""

    owner: Engine
    app: Engine
    app_role: str
    org: Org
    owners: dict[str, int | None]


@pytest.fixture(scope="module")
def rls_database() -> Iterator[RlsDatabase]:
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    name, role = f"waggle_rls_{suffix}", f"waggle_app_{suffix}"
    admin = make_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    upgrade(f"{base}/{name}")
    owner = make_engine(f"{base}/{name}")
    app = make_engine(base.replace("postgres@", f"{role}:app-secret@") + f"/{name}")
    try:
        yield _populate(owner, app, role)
    finally:
        app.dispose()
        owner.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def _populate(owner: Engine, app: Engine, role: str) -> RlsDatabase:
    sessions = make_session_factory(owner)
    with transaction(sessions) as session:
        ensure_chain_head(session)
        ensure_default_pipeline(session, system_actor("test"))
    org = build_org(sessions)
    owners: dict[str, int | None] = {
        f"account of {name}": org.employees[name] for name in org.employees
    }
    owners["公海客户"] = None
    with transaction(sessions) as session:
        for number, (account, employee) in enumerate(owners.items()):
            session.add(
                Account(
                    external_id=f"A-{number}",
                    name=account,
                    normalized_name=account,
                    owner_id=employee,
                )
            )
            if employee is not None:
                session.add(_quota(number, employee))
    install_rls(owner, app_role=role, password=PASSWORD)
    return RlsDatabase(owner=owner, app=app, app_role=role, org=org, owners=owners)


def _quota(number: int, employee: int) -> Quota:
    return Quota(
        external_id=f"Q-{number}",
        owner_id=employee,
        period="2026-Q1",
        starts_on=dt.date(2026, 1, 1),
        ends_on=dt.date(2026, 3, 31),
        amount=Decimal("100000.00"),
    )


def _names_seen(db: RlsDatabase, *settings: str) -> list[str]:
    with db.app.begin() as connection:
        for setting in settings:
            connection.execute(text(setting))
        return list(connection.scalars(text("SELECT name FROM accounts ORDER BY id")))


def test_app_role_sees_only_the_accounts_of_declared_owners(
    rls_database: RlsDatabase,
) -> None:
    """With two owner ids declared, a plain SELECT returns their two accounts."""
    db = rls_database
    ids = f"{db.org.employees['rep_a1']},{db.org.employees['rep_w1']}"

    names = _names_seen(db, f"SET LOCAL waggle.visible_owners = '{ids}'")

    assert names == ["account of rep_a1", "account of rep_w1"]


def test_app_role_sees_no_owned_row_without_a_declaration(
    rls_database: RlsDatabase,
) -> None:
    """A transaction that declares nothing sees no accounts and no quotas."""
    db = rls_database

    with db.app.connect() as connection:
        counts = connection.execute(
            text(
                "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM quotas)"
            )
        ).one()

    assert tuple(counts) == (0, 0)


def test_all_shows_every_account(rls_database: RlsDatabase) -> None:
    """'all' shows every account, the unowned public-pool one included."""
    db = rls_database

    names = _names_seen(db, "SET LOCAL waggle.visible_owners = 'all'")

    assert names == list(db.owners)


def test_unowned_rows_need_their_own_declaration(rls_database: RlsDatabase) -> None:
    """The public-pool account shows only when unowned rows are declared visible."""
    db = rls_database

    without = _names_seen(db, "SET LOCAL waggle.visible_owners = ''")
    with_pool = _names_seen(db, "SET LOCAL waggle.unowned_rows = 'on'")

    assert (without, with_pool) == ([], ["公海客户"])


def test_a_declaration_ends_with_its_transaction(rls_database: RlsDatabase) -> None:
    """SET LOCAL lasts one transaction: the next one on the connection sees nothing."""
    db = rls_database

    with db.app.connect() as connection:
        with connection.begin():
            connection.execute(text("SET LOCAL waggle.visible_owners = 'all'"))
            first = connection.scalar(text("SELECT count(*) FROM accounts"))
        with connection.begin():
            second = connection.scalar(text("SELECT count(*) FROM accounts"))

    assert (first, second) == (len(db.owners), 0)


def test_a_malformed_declaration_fails_the_query(rls_database: RlsDatabase) -> None:
    """An owner list that is not integers raises rather than showing rows."""
    db = rls_database

    with pytest.raises(Exception, match="invalid input syntax for type bigint"):
        _names_seen(db, "SET LOCAL waggle.visible_owners = '1,x'")


def test_app_role_cannot_write_rows_outside_its_declaration(
    rls_database: RlsDatabase,
) -> None:
    """Inserting an account for an undeclared owner violates the row policy."""
    db = rls_database
    rep, other = db.org.employees["rep_a1"], db.org.employees["rep_a2"]

    with (
        pytest.raises(ProgrammingError, match="row-level security policy"),
        db.app.begin() as connection,
    ):
        connection.execute(text(f"SET LOCAL waggle.visible_owners = '{rep}'"))
        connection.execute(
            text(
                "INSERT INTO accounts (external_id, name, normalized_name,"
                " owner_id, is_in_public_pool, created_at, updated_at)"
                " VALUES ('A-x', 'x', 'x', :owner, false, now(), now())"
            ),
            {"owner": other},
        )


def test_app_role_cannot_move_a_row_out_of_its_declaration(
    rls_database: RlsDatabase,
) -> None:
    """Handing a visible account to an undeclared owner is refused by WITH CHECK."""
    db = rls_database
    rep, other = db.org.employees["rep_a1"], db.org.employees["rep_a2"]

    with (
        pytest.raises(ProgrammingError, match="row-level security policy"),
        db.app.begin() as connection,
    ):
        connection.execute(text(f"SET LOCAL waggle.visible_owners = '{rep}'"))
        connection.execute(
            text("UPDATE accounts SET owner_id = :other WHERE owner_id = :rep"),
            {"other": other, "rep": rep},
        )


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE accounts DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE accounts NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY waggle_row_scope ON accounts",
        "ALTER ROLE CURRENT_USER BYPASSRLS",
    ],
)
def test_app_role_cannot_take_the_wall_down(
    rls_database: RlsDatabase, statement: str
) -> None:
    """Disabling row security, dropping the policy or granting BYPASSRLS is refused."""
    db = rls_database

    with (
        pytest.raises(ProgrammingError) as caught,
        db.app.begin() as connection,
    ):
        connection.execute(text(statement))

    assert caught.value.orig.sqlstate == "42501"  # type: ignore[union-attr]


def test_app_role_owns_nothing_and_bypasses_nothing(rls_database: RlsDatabase) -> None:
    """The role is neither superuser nor BYPASSRLS, and owns no business table."""
    db = rls_database

    with db.owner.connect() as connection:
        flags = connection.execute(
            text(
                "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles"
                " WHERE rolname = :role"
            ),
            {"role": db.app_role},
        ).one()
        owned = connection.scalar(
            text("SELECT count(*) FROM pg_tables WHERE tableowner = :role"),
            {"role": db.app_role},
        )
        forced = connection.execute(
            text(
                "SELECT relname FROM pg_class WHERE relrowsecurity"
                " AND relforcerowsecurity ORDER BY relname"
            )
        ).scalars()
        problems = check_rls(connection, app_role=db.app_role)

    assert tuple(flags) == (False, False, True)
    assert owned == 0
    assert list(forced) == sorted(table.name for table in OWNED_TABLES)
    assert problems == []


def test_audit_entries_take_inserts_but_refuse_updates_and_deletes(
    rls_database: RlsDatabase,
) -> None:
    """The app role may append to the audit log but never change or remove a row."""
    db = rls_database
    insert = text(
        "INSERT INTO audit_entries (seq, prev_hash, entry_hash, occurred_at,"
        " username, roles, action, resource, record_ids, result)"
        " VALUES (-1, 'p', 'e', now(), 'app', '', 'read', 'accounts', '[]', 'ok')"
        " RETURNING id"
    )
    refusals = []

    with db.app.connect() as connection:
        inserted = connection.scalar(insert)
    for statement in (
        "UPDATE audit_entries SET detail = 'rewritten'",
        "DELETE FROM audit_entries",
        "TRUNCATE audit_entries",
        "UPDATE audit_checkpoints SET signature = 'forged'",
    ):
        with (
            pytest.raises(ProgrammingError) as caught,
            db.app.begin() as connection,
        ):
            connection.execute(text(statement))
        refusals.append(caught.value.orig.sqlstate)  # type: ignore[union-attr]

    assert isinstance(inserted, int)
    assert refusals == ["42501"] * 4


def test_install_twice_changes_nothing(rls_database: RlsDatabase) -> None:
    """A second install keeps the role and leaves grants and policies as they were."""
    db = rls_database
    before = _snapshot(db)

    report = install_rls(db.owner, app_role=db.app_role)

    assert report.role_created is False
    assert _snapshot(db) == before
    assert _names_seen(db, "SET LOCAL waggle.visible_owners = 'all'") == list(db.owners)


def test_install_repairs_a_role_given_bypassrls(rls_database: RlsDatabase) -> None:
    """check_rls reports a role given BYPASSRLS; installing again takes it away."""
    db = rls_database
    with db.owner.begin() as connection:
        connection.execute(text(f'ALTER ROLE "{db.app_role}" BYPASSRLS'))
    with db.owner.connect() as connection:
        problems = check_rls(connection, app_role=db.app_role)

    install_rls(db.owner, app_role=db.app_role)

    with db.owner.connect() as connection:
        assert check_rls(connection, app_role=db.app_role) == []
    assert problems == [f"{db.app_role} has BYPASSRLS"]


def test_install_refuses_sqlite(tmp_path: Path) -> None:
    """SQLite has no row-level security: install says so instead of pretending."""
    engine = make_engine(f"sqlite:///{tmp_path / 'embedded.db'}")

    with pytest.raises(InvalidInput) as caught:
        install_rls(engine, app_role="waggle_app")

    assert caught.value.message == (
        "row-level security needs PostgreSQL, not sqlite; the embedded (SQLite)"
        " mode relies on the application wall"
    )


def test_apply_rls_scope_does_nothing_on_sqlite(tmp_path: Path) -> None:
    """On SQLite there is nothing to declare, and the call says so with None."""
    engine = make_engine(f"sqlite:///{tmp_path / 'embedded.db'}")
    actor = Actor(user_id=1, username="rep", roles=frozenset({"rep"}), employee_id=1)

    with Session(engine) as session:
        declared = apply_rls_scope(session, actor)

    assert declared is None


def _cases(org: Org) -> list[tuple[str, str]]:
    """Every user of the org with their own widest scope and with each scope."""
    policy = load_policy(None)
    cases = [
        (name, policy.widest_scope(actor.roles)) for name, actor in org.actors.items()
    ]
    cases += [(name, scope) for name in org.actors for scope in SCOPE_ORDER]
    return sorted(set(cases))


def test_database_policy_matches_the_governance_scope_for_every_case(
    rls_database: RlsDatabase,
) -> None:
    """For every (user, scope) the app role sees exactly the policy's reference rows."""
    db = rls_database
    pool_roles = load_policy(None).roles_allowed("public_pool", "read")
    cases = _cases(db.org)
    owner_sessions = make_session_factory(db.owner)
    app_sessions = make_session_factory(db.app)

    mismatches = []
    for name, scope in cases:
        actor = db.org.actors[name]
        with owner_sessions() as session:
            allowed = visible_owner_ids(session, actor, scope)
        expected = {
            account
            for account, owner in db.owners.items()
            if scope == "all"
            or owner in allowed
            or (owner is None and bool(actor.roles & pool_roles))
        }
        with app_sessions() as session:
            apply_rls_scope(session, actor, scope=scope)
            seen = set(session.scalars(select(Account.name)))
        if seen != expected:
            mismatches.append((name, scope, sorted(seen ^ expected)))

    assert len(cases) == 13 * len(SCOPE_ORDER)
    assert mismatches == []


def test_apply_rls_scope_declares_the_actor_widest_scope(
    rls_database: RlsDatabase,
) -> None:
    """A manager's declaration lists their team and opens the public pool."""
    db = rls_database
    team = sorted(db.org.employees[name] for name in ("manager_a", "rep_a1", "rep_a2"))

    with make_session_factory(db.app)() as session:
        declared = apply_rls_scope(session, db.org.actors["manager_a"])
        quotas = set(session.scalars(select(Quota.owner_id)))

    assert declared is not None
    assert declared.visible_owners == ",".join(str(owner) for owner in team)
    assert declared.unowned_rows is True
    assert quotas == set(team)


def test_it_admin_declares_no_owned_rows(rls_database: RlsDatabase) -> None:
    """IT administrators have row scope none: they see no account at all."""
    db = rls_database

    with make_session_factory(db.app)() as session:
        declared = apply_rls_scope(session, db.org.actors["admin"])
        count = len(session.scalars(select(Account.id)).all())

    assert declared is not None
    assert (declared.visible_owners, declared.unowned_rows, count) == ("", False, 0)


def test_bind_rls_scope_declares_again_in_every_transaction(
    rls_database: RlsDatabase,
) -> None:
    """After a commit, the next transaction of a bound session is still declared."""
    db = rls_database
    sessions: sessionmaker[Session] = make_session_factory(db.app)

    with sessions() as session:
        bind_rls_scope(session, db.org.actors["rep_a1"])
        first = list(session.scalars(select(Account.name)))
        session.commit()
        second = list(session.scalars(select(Account.name)))

    assert first == second == ["account of rep_a1", "公海客户"]


def test_cli_installs_and_checks(
    rls_database: RlsDatabase,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """waggle governance rls install then check both succeed on the owner's URL."""
    db = rls_database
    url = db.owner.url.render_as_string(hide_password=False)
    monkeypatch.setenv("WAGGLE_DATA_DIR", str(tmp_path))
    role = ["--app-role", db.app_role, "--owner-url", url]

    main(["governance", "rls", "install", *role])
    installed = capsys.readouterr().out
    checked = main(["governance", "rls", "check", *role])

    assert installed == (
        f"role {db.app_role} kept; {len(_snapshot(db)[2])} tables granted, row"
        " security forced on 8: accounts, contacts, opportunities, activities,"
        " quotas, behaviour_events, rule_firings, tracked_links\n"
    )
    assert (checked, capsys.readouterr().out) == (
        None,
        f"confined: {db.app_role} owns nothing, bypasses nothing, audit append-only\n",
    )


def _snapshot(db: RlsDatabase) -> tuple[tuple[object, ...], ...]:
    with db.owner.connect() as connection:
        policies = connection.execute(
            text(
                "SELECT tablename, policyname, cmd, qual, with_check FROM pg_policies"
                " ORDER BY tablename"
            )
        ).all()
        grants = connection.execute(
            text(
                "SELECT table_name, privilege_type FROM"
                " information_schema.role_table_grants WHERE grantee = :role"
                " ORDER BY table_name, privilege_type"
            ),
            {"role": db.app_role},
        ).all()
        tables = connection.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).all()
    return tuple(policies), tuple(grants), tuple(sorted(tables))


# ---- the application on the application role ---------------------------


def test_rls_enforced_tells_the_app_role_from_the_owner(
    rls_database: RlsDatabase,
) -> None:
    """The app role is held by row security; the owner that migrated is not."""
    db = rls_database

    assert (rls_enforced(db.app), rls_enforced(db.owner)) == (True, False)


def test_an_enforced_session_with_no_actor_sees_every_row(
    rls_database: RlsDatabase,
) -> None:
    """Waggle's own jobs run unscoped sessions: they declare every row."""
    db = rls_database
    sessions: sessionmaker[Session] = make_session_factory(db.app)
    enforce_on_sessions(sessions)

    with sessions() as session:
        names = set(session.scalars(select(Account.name)))

    assert names == set(db.owners)


def test_a_session_scoped_to_a_rep_sees_only_their_rows_in_every_transaction(
    rls_database: RlsDatabase,
) -> None:
    """A query that forgets the row filter still gets the rep's rows only."""
    db = rls_database
    sessions: sessionmaker[Session] = make_session_factory(db.app)
    enforce_on_sessions(sessions)

    with sessions() as session:
        scope_to_actor(session, db.org.actors["rep_b1"])
        first = list(session.scalars(select(Account.name).order_by(Account.id)))
        session.commit()
        second = list(session.scalars(select(Account.name).order_by(Account.id)))

    assert first == second == ["account of rep_b1", "公海客户"]


def test_every_api_request_on_the_app_role_is_held_to_its_actor(
    rls_database: RlsDatabase, tmp_path: Path
) -> None:
    """Through the real request chain, an unfiltered query sees the actor's rows."""
    db = rls_database
    url = db.app.url.render_as_string(hide_password=False)
    app = create_app(Settings(database_url=url, data_dir=tmp_path, secret_key="s"))

    @app.get("/test/unfiltered-accounts")
    def unfiltered(session: SessionDep, actor: ActorDep) -> list[str]:
        return list(session.scalars(select(Account.name).order_by(Account.id)))

    with TestClient(app) as client:
        rep = client.get("/test/unfiltered-accounts", headers=db.org.headers("rep_a2"))
        ops = client.get("/test/unfiltered-accounts", headers=db.org.headers("ops"))
        listed = client.get("/api/v1/accounts", headers=db.org.headers("rep_a2"))
    app.state.engine.dispose()

    assert rep.json() == ["account of rep_a2", "公海客户"]
    assert sorted(ops.json()) == sorted(db.owners)
    assert {item["name"] for item in listed.json()["items"]} == {"account of rep_a2"}
