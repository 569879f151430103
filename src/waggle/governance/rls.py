"""PostgreSQL row-level security: the second wall behind the governance seam.

The application connects as its own database role, which neither owns the
tables nor may bypass row security. :func:`install_rls`, run as the owner
(the user that ran the migrations), creates that role, grants it what the
application needs and no more, and puts a policy on every owned business
table: a row is visible only when its owner is among the employee ids the
transaction declares::

    SELECT set_config('waggle.visible_owners', '1,2,3', true)  -- or 'all'

which :func:`apply_rls_scope` does from the actor's governance row scope
(``SET LOCAL``: the value ends with the transaction). When Waggle itself
connects as such a role (:func:`rls_enforced`), :func:`enforce_on_sessions`
makes every session of the application declare a scope in every
transaction: the actor's, once :func:`scope_to_actor` has been called for the
request (the API, the pages and ``--as`` on the command line do), and
otherwise the system's (every row) for Waggle's own jobs. With no value set, no
owned row is visible. Rows without an owner (the public pool, 公海) of
accounts, contacts and opportunities are visible when
``waggle.unowned_rows`` is ``on``, which the same call sets for the roles
that may see the pool.

The audit tables are append-only for the application role: it may insert
and read audit entries and checkpoints, never update or delete them, so a
compromised application cannot rewrite history.

The wall holds against queries that forget the row filter, not against an
application that lies about its own scope: whoever can run SQL as the
application role can also set the scope. SQLite has no row-level security;
the embedded mode relies on the application wall alone.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from psycopg import Error as DriverError
from psycopg import sql
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from waggle.core.actor import Actor
from waggle.core.errors import Conflict, InvalidInput, NotFound, UpstreamFailure
from waggle.governance.guard import active_policy, visible_owner_ids

logger = logging.getLogger(__name__)

VISIBLE_OWNERS = "waggle.visible_owners"
UNOWNED_ROWS = "waggle.unowned_rows"
POLICY_NAME = "waggle_row_scope"
DEFAULT_APP_ROLE = "waggle_app"
BUSINESS_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
# Tables the application may only append to (and, for the chain head, move).
LIMITED_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "audit_entries": ("SELECT", "INSERT"),
    "audit_checkpoints": ("SELECT", "INSERT"),
    "audit_chain_head": ("SELECT", "INSERT", "UPDATE"),
    # Provenance of figures and aggregate answers, and the field edit
    # history replay relies on.
    "figure_provenance": ("SELECT", "INSERT"),
    "aggregate_queries": ("SELECT", "INSERT"),
    "field_edits": ("SELECT", "INSERT"),
    "alembic_version": ("SELECT",),
}
APPEND_ONLY_TABLES = (
    "audit_entries",
    "audit_checkpoints",
    "figure_provenance",
    "aggregate_queries",
    "field_edits",
)
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class OwnedTable:
    """A table whose rows belong to an employee, and the column naming them."""

    name: str
    owner_column: str
    is_pooled: bool = False


# The owned resources of the default policy, with the owner column their
# services pass to row_filter.
OWNED_TABLES = (
    OwnedTable("accounts", "owner_id", is_pooled=True),
    OwnedTable("contacts", "owner_id", is_pooled=True),
    OwnedTable("opportunities", "owner_id", is_pooled=True),
    OwnedTable("activities", "owner_id"),
    OwnedTable("quotas", "owner_id"),
    OwnedTable("behaviour_events", "actor_id"),
    OwnedTable("rule_firings", "actor_id"),
    OwnedTable("tracked_links", "owner_id"),
)


@dataclass(frozen=True)
class RlsScope:
    """What one transaction declared: visible owner ids ('all', '1,2' or '')."""

    visible_owners: str
    unowned_rows: bool


@dataclass
class InstallReport:
    """What :func:`install_rls` did."""

    app_role: str
    role_created: bool
    granted_tables: list[str] = field(default_factory=list)
    protected_tables: list[str] = field(default_factory=list)


def policy_condition(table: OwnedTable) -> str:
    """Return the SQL condition the row policy of ``table`` applies.

    A malformed setting fails the statement rather than showing rows. The
    CASE keeps 'all' from being read as a number (OR does not promise an
    order) and leaves ``owner = ANY (array)`` free to use the owner index.
    """
    column = f'"{table.owner_column}"'
    owners = f"current_setting('{VISIBLE_OWNERS}', true)"
    condition = (
        f"({owners} = 'all' OR {column} = ANY (CASE WHEN {owners} = 'all'"
        f" THEN NULL ELSE string_to_array(NULLIF({owners}, ''), ',') END::bigint[])"
    )
    if table.is_pooled:
        condition += (
            f" OR ({column} IS NULL AND current_setting('{UNOWNED_ROWS}', true) = 'on')"
        )
    return condition + ")"


def install_rls(
    engine: Engine,
    *,
    app_role: str = DEFAULT_APP_ROLE,
    password: str | None = None,
) -> InstallReport:
    """Create the application role and the row policies; safe to run again.

    Run it as the owner of the tables after every ``waggle db upgrade``: new
    tables get their grants only then. With ``password`` the role may log in
    (and gets that password); without, a new role is NOLOGIN and an existing
    one keeps its login. Everything happens in one transaction.

    Raises:
        InvalidInput: not PostgreSQL, or a malformed role name.
        NotFound: an owned table is missing (migrate first).
        Conflict: the role is the connecting user or a member of the owner
            role, or the result still lets it bypass the policies.
        UpstreamFailure: PostgreSQL refused a statement (e.g. not the owner).
    """
    _check_install_target(engine, app_role)
    with engine.begin() as connection:
        try:
            report = _install(connection, app_role, password)
        except DriverError as exc:
            raise UpstreamFailure(
                f"row-level security install for role {app_role} failed: "
                f"{exc.diag.message_primary or exc}"
            ) from exc
        problems = check_rls(connection, app_role=app_role)
        if problems:
            raise Conflict(
                f"row-level security for role {app_role}: {problems[0]}",
                problems=problems,
            )
    logger.info(
        "row-level security installed",
        extra={
            "app_role": app_role,
            "tables": len(report.granted_tables),
            "protected": len(report.protected_tables),
        },
    )
    return report


def check_rls(connection: Connection, *, app_role: str) -> list[str]:
    """Return every way the database fails to confine ``app_role`` (none: sound)."""
    problems = _role_problems(connection, app_role)
    if problems:
        return problems
    problems += _table_problems(connection, app_role)
    for table in APPEND_ONLY_TABLES:
        for privilege in ("UPDATE", "DELETE", "TRUNCATE"):
            if _has_privilege(connection, app_role, table, privilege):
                problems.append(f"{app_role} may {privilege} {table}")
    return problems


def apply_rls_scope(
    session: Session, actor: Actor, *, scope: str | None = None
) -> RlsScope | None:
    """Declare the rows the current transaction may see, from the actor's scope.

    ``scope`` defaults to the actor's widest row scope under the policy (the
    one :func:`~waggle.governance.authorize` returns for owned resources).
    Call it at the start of every transaction, or once with
    :func:`bind_rls_scope`. Returns ``None`` on SQLite, which has no RLS.
    """
    if session.get_bind().dialect.name != "postgresql":
        return None
    policy = active_policy()
    scope = scope or policy.widest_scope(actor.roles)
    owners = visible_owner_ids(session, actor, scope)
    pool_roles = policy.roles_allowed("public_pool", "read")
    declared = RlsScope(
        visible_owners="all"
        if scope == "all"
        else ",".join(str(owner) for owner in sorted(owners)),
        unowned_rows=scope == "all" or bool(actor.roles & pool_roles),
    )
    _declare(session.connection(), declared)
    return declared


SYSTEM_SCOPE = RlsScope(visible_owners="all", unowned_rows=True)
_SCOPE_KEY = "waggle_rls_scope"
_ENFORCED_KEY = "waggle_rls_enforced"


def rls_enforced(engine: Engine) -> bool:
    """Whether the role ``engine`` logs in as is held by row security.

    True on PostgreSQL when the current user neither owns the opportunities
    table nor is a superuser or has BYPASSRLS, and the table has row security
    on (as :func:`install_rls` leaves it); false on SQLite.
    """
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as connection:
        held = connection.scalar(
            text(
                "SELECT c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls)"
                " AND c.relowner <> r.oid"
                " FROM pg_roles r, pg_class c"
                " WHERE r.rolname = current_user AND c.relname = 'opportunities'"
                " AND c.relkind = 'r'"
            )
        )
    return bool(held)


def enforce_on_sessions(sessions: sessionmaker[Session]) -> None:
    """Declare a scope at the start of every transaction of ``sessions``.

    A session scoped with :func:`scope_to_actor` declares its actor's rows;
    any other session (a periodic job, the local operator) declares every row.
    """
    sessions.kw.setdefault("info", {})[_ENFORCED_KEY] = True

    def declare(
        session: Session, _transaction: SessionTransaction, connection: Connection
    ) -> None:
        _declare(connection, session.info.get(_SCOPE_KEY, SYSTEM_SCOPE))

    event.listen(sessions, "after_begin", declare)


def scope_to_actor(session: Session, actor: Actor) -> RlsScope | None:
    """Hold ``session`` to ``actor``'s rows from now on, where row security is on.

    Does nothing (returns ``None``) for sessions of a factory without
    :func:`enforce_on_sessions`, and on SQLite.
    """
    if not session.info.get(_ENFORCED_KEY):
        return None
    declared = apply_rls_scope(session, actor)
    if declared is not None:
        session.info[_SCOPE_KEY] = declared
    return declared


def bind_rls_scope(
    session: Session, actor: Actor, *, scope: str | None = None
) -> RlsScope | None:
    """Apply the actor's scope now and at the start of every later transaction.

    The owner ids are computed once, as the governance row filter caches them
    for the session's life.
    """
    declared = apply_rls_scope(session, actor, scope=scope)
    if declared is None:
        return None

    def redeclare(
        _session: Session, _transaction: SessionTransaction, connection: Connection
    ) -> None:
        _declare(connection, declared)

    event.listen(session, "after_begin", redeclare)
    return declared


def _declare(connection: Connection, declared: RlsScope) -> None:
    connection.execute(
        text(
            "SELECT set_config(:owners_name, :owners, true),"
            " set_config(:unowned_name, :unowned, true)"
        ),
        {
            "owners_name": VISIBLE_OWNERS,
            "owners": declared.visible_owners,
            "unowned_name": UNOWNED_ROWS,
            "unowned": "on" if declared.unowned_rows else "off",
        },
    )


# ---- installing ---------------------------------------------------------


def _check_install_target(engine: Engine, app_role: str) -> None:
    if engine.dialect.name != "postgresql":
        raise InvalidInput(
            f"row-level security needs PostgreSQL, not {engine.dialect.name}; "
            "the embedded (SQLite) mode relies on the application wall"
        )
    if not _ROLE_NAME.fullmatch(app_role):
        raise InvalidInput(
            f"rls install: app role {app_role!r} is not a valid name; expected"
            " lower-case letters, digits and _ (at most 63)"
        )


def _install(
    connection: Connection, app_role: str, password: str | None
) -> InstallReport:
    if connection.scalar(text("SELECT current_user")) == app_role:
        raise Conflict(
            f"rls install: connected as {app_role}; run it as the tables' owner"
        )
    tables = list(
        connection.scalars(
            text(
                "SELECT tablename FROM pg_tables"
                " WHERE schemaname = current_schema() ORDER BY tablename"
            )
        )
    )
    missing = [table.name for table in OWNED_TABLES if table.name not in tables]
    if missing:
        raise NotFound(
            f"rls install: tables {missing} do not exist; run waggle db upgrade first"
        )
    cursor = _Cursor(connection)
    report = InstallReport(
        app_role=app_role, role_created=_ensure_role(cursor, app_role, password)
    )
    _grant(cursor, app_role, tables)
    report.granted_tables = tables
    for table in OWNED_TABLES:
        _protect(cursor, table)
        report.protected_tables.append(table.name)
    return report


class _Cursor:
    """Runs composed DDL on the connection's own driver connection.

    DDL takes no bind parameters, so names and the password are quoted by
    psycopg's ``sql`` module instead.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.schema = sql.Identifier(
            str(connection.scalar(text("SELECT current_schema()")))
        )

    def run(self, statement: str, *arguments: sql.Composable) -> None:
        composed = sql.SQL(statement).format(*arguments)
        driver: Any = self.connection.connection.driver_connection
        driver.execute(composed)

    def table(self, name: str) -> sql.Composable:
        return sql.SQL("{}.{}").format(self.schema, sql.Identifier(name))


def _ensure_role(cursor: _Cursor, app_role: str, password: str | None) -> bool:
    role = sql.Identifier(app_role)
    flags = cursor.connection.execute(
        text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :name"),
        {"name": app_role},
    ).first()
    if flags is None:
        cursor.run(
            "CREATE ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
            " NOBYPASSRLS NOINHERIT NOLOGIN",
            role,
        )
    elif flags.rolsuper or flags.rolbypassrls:
        cursor.run("ALTER ROLE {} NOSUPERUSER NOBYPASSRLS", role)
    if password is not None:
        cursor.run("ALTER ROLE {} LOGIN PASSWORD {}", role, sql.Literal(password))
    return flags is None


def _grant(cursor: _Cursor, app_role: str, tables: list[str]) -> None:
    role = sql.Identifier(app_role)
    cursor.run("GRANT USAGE ON SCHEMA {} TO {}", cursor.schema, role)
    # Start from nothing so that a rerun also takes back what it once gave.
    cursor.run("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}", cursor.schema, role)
    cursor.run("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}", cursor.schema, role)
    for table in tables:
        privileges = LIMITED_PRIVILEGES.get(table, BUSINESS_PRIVILEGES)
        cursor.run(
            f"GRANT {', '.join(privileges)} ON TABLE {{}} TO {{}}",
            cursor.table(table),
            role,
        )
    cursor.run("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {} TO {}", cursor.schema, role)


def _protect(cursor: _Cursor, table: OwnedTable) -> None:
    target, policy = cursor.table(table.name), sql.Identifier(POLICY_NAME)
    condition = sql.SQL(policy_condition(table))
    cursor.run("ALTER TABLE {} ENABLE ROW LEVEL SECURITY", target)
    # FORCE: the owner is confined too, should anyone run the app as owner.
    cursor.run("ALTER TABLE {} FORCE ROW LEVEL SECURITY", target)
    cursor.run("DROP POLICY IF EXISTS {} ON {}", policy, target)
    cursor.run(
        "CREATE POLICY {} ON {} FOR ALL TO PUBLIC USING {} WITH CHECK {}",
        policy,
        target,
        condition,
        condition,
    )


# ---- checking -----------------------------------------------------------


def _role_problems(connection: Connection, app_role: str) -> list[str]:
    flags = connection.execute(
        text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :name"),
        {"name": app_role},
    ).first()
    if flags is None:
        return [f"role {app_role} does not exist"]
    problems = []
    if flags.rolsuper:
        problems.append(f"{app_role} is a superuser and bypasses every policy")
    if flags.rolbypassrls:
        problems.append(f"{app_role} has BYPASSRLS")
    return problems


def _table_problems(connection: Connection, app_role: str) -> list[str]:
    rows = connection.execute(
        text(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
            " pg_has_role(CAST(:role AS name), c.relowner, 'MEMBER') AS is_owner,"
            " EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid"
            "   AND p.polname = :policy) AS has_policy"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relname = ANY(:names)"
        ),
        {
            "role": app_role,
            "policy": POLICY_NAME,
            "names": [table.name for table in OWNED_TABLES],
        },
    ).all()
    found = {row.relname: row for row in rows}
    problems = []
    for table in OWNED_TABLES:
        row = found.get(table.name)
        if row is None:
            problems.append(f"table {table.name} does not exist")
        elif row.is_owner:
            problems.append(f"{app_role} owns (or acts as the owner of) {table.name}")
        elif not (row.relrowsecurity and row.relforcerowsecurity and row.has_policy):
            problems.append(f"{table.name} lacks forced row security or its policy")
    return problems


def _has_privilege(
    connection: Connection, app_role: str, table: str, privilege: str
) -> bool:
    return bool(
        connection.scalar(
            text("SELECT has_table_privilege(CAST(:role AS name), :table, :privilege)"),
            {"role": app_role, "table": table, "privilege": privilege},
        )
    )
