"""Building the demo company into a database, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from waggle.cli import main
from waggle.core.actor import system_actor
from waggle.core.clock import FixedClock
from waggle.core.db import transaction
from waggle.core.errors import Conflict
from waggle.crm.models import Account, Opportunity
from waggle.crm.service import create_account
from waggle.demo import DemoResult, build_demo_company, generate_company
from waggle.demo.builder import TABLES, pipeline_shape
from waggle.governance.models import AuditEntry
from waggle.identity.models import User
from waggle.identity.service import authenticate

SCALE = 0.02


@pytest.fixture
def built(sessions: sessionmaker[Session], fixed_clock: FixedClock) -> DemoResult:
    with transaction(sessions) as session:
        return build_demo_company(session, system_actor("demo"), seed=3, scale=SCALE)


def test_tables_hold_what_the_build_reports(
    built: DemoResult, session: Session
) -> None:
    """Every table holds the row count the build reported."""
    stored = {
        table: session.scalar(select(func.count()).select_from(model))
        for table, (model, _resource) in TABLES.items()
    }

    assert stored == built.counts
    assert (built.counts["accounts"], built.counts["opportunities"]) == (100, 400)


def test_stored_rows_equal_the_generated_rows(
    built: DemoResult, session: Session, fixed_clock: FixedClock
) -> None:
    """Opportunities read back (Chinese text, amounts, instants) as generated."""
    expected = generate_company(
        seed=3, scale=SCALE, now=fixed_clock(), pipeline=pipeline_shape(session)
    ).tables

    columns = list(expected["opportunities"][0])
    stored = [
        dict(zip(columns, row, strict=True))
        for row in session.execute(
            select(*(Opportunity.__table__.c[c] for c in columns)).order_by(
                Opportunity.id
            )
        )
    ]
    names = session.scalars(select(Account.name).order_by(Account.id)).all()

    assert stored == expected["opportunities"]
    assert names == [row["name"] for row in expected["accounts"]]


def test_each_table_batch_is_audited_with_its_ids(
    built: DemoResult, session: Session
) -> None:
    """The demo actor leaves audit rows naming every record it created."""
    audited: dict[str, set[str]] = {}
    for entry in session.scalars(
        select(AuditEntry).where(AuditEntry.username == "demo")
    ):
        audited.setdefault(entry.resource, set()).update(entry.record_ids)

    for table, (model, _resource) in TABLES.items():
        ids = {str(i) for i in session.scalars(select(model.__table__.c.id))}
        assert audited.get(table, set()) == ids, table
    assert len(audited["users"]) == len(built.logins)


def test_logins_work_with_their_documented_passwords(
    built: DemoResult, session: Session
) -> None:
    """Each demo login authenticates and holds its role and employee."""
    for login in built.logins:
        user = authenticate(session, login.username, login.password)

        assert user.role_names == [login.role]
        assert user.employee is not None
        assert user.employee.external_id == login.employee_external_id
    assert set(session.scalars(select(User.username))) == {
        "demo",
        "director",
        "manager",
        "rep",
        "dataowner",
        "compliance",
        "auditor",
        "itadmin",
    }


def test_records_added_after_the_demo_get_fresh_ids(
    built: DemoResult, sessions: sessionmaker[Session]
) -> None:
    """After the build, new rows get ids past the demo's (sequences moved)."""
    with transaction(sessions) as session:
        account = create_account(
            session, system_actor("test"), {"name": "重庆新立方科技有限公司"}
        )

    assert account.id == built.counts["accounts"] + 1


def test_a_second_build_is_refused(
    built: DemoResult, sessions: sessionmaker[Session]
) -> None:
    """The demo only goes into empty tables."""
    with (
        pytest.raises(Conflict, match="already holds rows"),
        transaction(sessions) as session,
    ):
        build_demo_company(session, system_actor("demo"), scale=SCALE)


def test_command_with_if_empty_builds_once(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    session: Session,
) -> None:
    """`waggle demo --if-empty` builds on an empty database and then skips."""
    monkeypatch.setenv("WAGGLE_DATABASE_URL", database_url)
    arguments = ["demo", "--scale", "0.01", "--seed", "5", "--if-empty"]

    main(arguments)
    first = capsys.readouterr().out
    main(arguments)
    second = capsys.readouterr().out

    assert "waggle-demo" in first and "商机 opportunities" in first
    assert second.strip() == "demo: the database already holds employees; nothing to do"
    assert session.scalar(select(func.count()).select_from(Opportunity)) == 200
