"""Database engine, sessions, the declarative base and portable column types.

SQLite (embedded) and PostgreSQL (production) are both first-class: column
types here store the same Python values identically on both.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Engine,
    MetaData,
    Text,
    and_,
    create_engine,
    event,
    false,
    or_,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from waggle.core.clock import as_utc

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every Waggle table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """An instant stored as UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC value")
        aware = value.astimezone(dt.UTC)
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return None if value is None else as_utc(value)


class Money(TypeDecorator[Decimal]):
    """A decimal amount with two places, stored exactly as integer cents."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        cents = (Decimal(value) * 100).quantize(Decimal(1))
        return int(cents)

    def process_result_value(
        self, value: int | None, dialect: Dialect
    ) -> Decimal | None:
        if value is None:
            return None
        return (Decimal(value) / 100).quantize(Decimal("0.01"))


class JsonText(TypeDecorator[Any]):
    """JSON stored as text, identical on SQLite and PostgreSQL, Chinese kept as is."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


def make_engine(url: str, **options: Any) -> Engine:
    """Create an engine for ``url`` with Waggle's connection settings."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **options)
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    # No server-side prepared statements: PostgreSQL's generic plan for
    # ``key = $1 AND other = ANY(...)`` look-ups can scan the whole index
    # prefix, while a plan for the actual values seeks each one.
    connect_args = {"prepare_threshold": None} if "+psycopg" in url else {}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **options)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory bound to ``engine``."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session, commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def pairs_in(
    first: Any, second: Any, pairs: Iterable[tuple[Any, Any]]
) -> ColumnElement[bool]:
    """Return ``(first, second) IN pairs`` in a shape both databases index.

    SQLite scans a whole composite index for a row-value ``IN``; grouping the
    pairs by their first value gives ``first = x AND second IN (...)`` terms,
    each an index seek.
    """
    grouped: dict[Any, list[Any]] = {}
    for left, right in pairs:
        grouped.setdefault(left, []).append(right)
    terms = [
        and_(first == left, second.in_(sorted(set(rights))))
        for left, rights in grouped.items()
    ]
    return or_(*terms) if terms else false()
