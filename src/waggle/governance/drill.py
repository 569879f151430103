"""The sovereignty drill (主权演练): take every row out, load it elsewhere, compare.

The drill proves the company could leave with all its data. It runs four
phases, each timed:

1. **export**: every table of ``Base.metadata`` (dependency order, the audit
   log included) is written from one consistent snapshot as a CSV file in
   open form (or Parquet, when pyarrow is installed), the schema as SQL DDL
   for SQLite and PostgreSQL, and ``drill-manifest.json`` with per-table row
   counts, columns, content digests (SM3 and SHA-256 over the canonical rows
   in primary-key order), per-file digests, the audit chain head and the
   last signed checkpoint. ``README.md`` in the export states the encoding.
2. **import**: a fresh instance (a new SQLite file by default) gets its
   schema from the project's migrations; rows are loaded from the exported
   files in dependency order with their types restored, and PostgreSQL
   sequences are moved past the largest ids.
3. **compare**: row counts and content digests are recomputed on the target,
   the exported files are checked against their digests, the target's audit
   chain is verified with the instance's keys and the last signed
   checkpoint's Merkle root is recomputed over the entries it covers.
4. **package**: the export and the report are signed as an export package
   (:mod:`waggle.governance.packages`), which ``waggle verify`` checks.

Values are read and written through the columns' own types when they are
Waggle's portable types (:class:`UtcDateTime`, :class:`Money`,
:class:`JsonText`) or SQLAlchemy's; any other decorated type (an encrypted
field, say) travels as stored, never decoded.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib
import json
import logging
import re
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Final, NoReturn, Protocol

from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    Table,
    func,
    insert,
    select,
    types,
)
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql import ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from waggle.core.actor import Actor
from waggle.core.clock import now
from waggle.core.db import (
    Base,
    JsonText,
    Money,
    UtcDateTime,
    make_engine,
    make_session_factory,
    transaction,
)
from waggle.core.errors import Conflict, InvalidInput, NotFound, WaggleError
from waggle.core.migrate import upgrade
from waggle.core.settings import Settings
from waggle.governance.audit import (
    instance_verifying_keys,
    verify_audit_chain,
)
from waggle.governance.chain import hash_function, merkle_root
from waggle.governance.crypto import VerifyingKey, get_suite
from waggle.governance.guard import authorize, record_audit
from waggle.governance.keystore import KeyStore
from waggle.governance.models import AuditCheckpoint, AuditEntry
from waggle.governance.packages import (
    COMPLIANCE_OFFICER,
    EXPORTER,
    Signer,
    audit_entry_as_dict,
    build_package,
)
from waggle.models import load_all_models

logger = logging.getLogger(__name__)

FORMAT: Final = "waggle-sovereignty-drill/1"
FORMATS = ("csv", "parquet")
TABLES_DIRECTORY = "tables"
SCHEMA_DIRECTORY = "schema"
DRILL_MANIFEST = "drill-manifest.json"
REPORT = "drill-report.json"
CONVENTIONS = "README.md"
CHAIN_KEY_FILE = "keys/audit-chain.pub.pem"
EXPORT_DIRECTORY = "export"
PACKAGE_DIRECTORY = "package"
TARGET_FILE = "target.db"
EXPORTER_KEY = "drill-exporter"
APPROVER_KEY = "drill-approver"
DEFAULT_APPROVER = "合规审批 compliance (instance drill key)"
AUDIT_RESOURCE = "sovereignty_drill"
BATCH_ROWS = 5_000
_HASH_BUFFER = 1 << 16
_ROW = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))

Cells = list[str | None]


# ---- progress ----------------------------------------------------------------


class DrillProgress(Protocol):
    """Told when a phase starts and as rows go by (the CLI draws a bar)."""

    def phase(self, name: str, total_rows: int) -> None: ...

    def rows(self, table: str, count: int) -> None: ...


class _Silent:
    def phase(self, name: str, total_rows: int) -> None:
        return None

    def rows(self, table: str, count: int) -> None:
        return None


SILENT: DrillProgress = _Silent()


# ---- encoding one value ------------------------------------------------------


def _encode_datetime(value: dt.datetime) -> str:
    if value.tzinfo is None:
        return value.isoformat()
    return value.astimezone(dt.UTC).isoformat()


def _decode_boolean(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(f"expected true or false, found {text!r}")
    return text == "true"


def _decode_bytes(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _decode_json(text: str) -> Any:
    return json.loads(text)


# kind → (encode, decode); every encoding round-trips exactly.
_KINDS: dict[str, tuple[Callable[[Any], str], Callable[[str], Any]]] = {
    "string": (str, str),
    "integer": (str, int),
    "float": (repr, float),
    "decimal": (str, Decimal),
    "boolean": (lambda value: "true" if value else "false", _decode_boolean),
    "datetime": (_encode_datetime, dt.datetime.fromisoformat),
    "date": (dt.date.isoformat, dt.date.fromisoformat),
    "time": (dt.time.isoformat, dt.time.fromisoformat),
    "json": (_JSON.encode, _decode_json),
    "bytes": (
        lambda value: base64.b64encode(bytes(value)).decode("ascii"),
        _decode_bytes,
    ),
    "uuid": (str, uuid.UUID),
}


@dataclass(frozen=True)
class ColumnCodec:
    """How one column is read, written as text and read back."""

    name: str
    kind: str
    type_name: str
    nullable: bool
    sql_type: TypeEngine[Any]

    def encode(self, value: Any) -> str | None:
        return None if value is None else self.encoder(value)

    def decode(self, text: str | None) -> Any:
        return None if text is None else self.decoder(text)

    @property
    def encoder(self) -> Callable[[Any], str]:
        return _KINDS[self.kind][0]

    @property
    def decoder(self) -> Callable[[str], Any]:
        return _KINDS[self.kind][1]


def column_codec(column: Column[Any]) -> ColumnCodec:
    """Return the codec of ``column``: its kind and the type rows pass through.

    Raises:
        InvalidInput: the column's type has no lossless text form here.
    """
    kind, sql_type = _classify(column.type, f"{column.table.name}.{column.name}")
    return ColumnCodec(
        name=column.name,
        kind=kind,
        type_name=type(column.type).__name__,
        nullable=bool(column.nullable),
        sql_type=sql_type,
    )


def _classify(kind_of: TypeEngine[Any], where: str) -> tuple[str, TypeEngine[Any]]:
    for portable, kind in ((UtcDateTime, "datetime"), (Money, "decimal")):
        if isinstance(kind_of, portable):
            return kind, kind_of
    if isinstance(kind_of, JsonText):
        return "json", kind_of
    if isinstance(kind_of, TypeDecorator):
        # Unknown decorations (encryption, say) travel as stored.
        return _classify(kind_of.impl_instance, where)
    for sql_class, kind in _SQL_KINDS:
        if isinstance(kind_of, sql_class):
            if kind == "decimal" and not getattr(kind_of, "asdecimal", True):
                kind = "float"
            return kind, kind_of
    raise InvalidInput(
        f"drill: column {where} has type {type(kind_of).__name__}, which has no"
        " lossless text form; expected a Waggle or standard SQLAlchemy type"
    )


# Order matters: Boolean before Integer, Float before Numeric, Enum is a String.
_SQL_KINDS: tuple[tuple[type[TypeEngine[Any]], str], ...] = (
    (types.Boolean, "boolean"),
    (types.Integer, "integer"),
    (types.Float, "float"),
    (types.Numeric, "decimal"),
    (types.DateTime, "datetime"),
    (types.Date, "date"),
    (types.Time, "time"),
    (types.JSON, "json"),
    (types._Binary, "bytes"),
    (types.Uuid, "uuid"),
    (types.String, "string"),
)


# ---- one table ---------------------------------------------------------------


@dataclass(frozen=True)
class TablePlan:
    """A table, its codecs, and a twin table typed by them for reads and writes."""

    table: Table
    transfer: Table
    codecs: tuple[ColumnCodec, ...]

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def columns(self) -> list[str]:
        return [codec.name for codec in self.codecs]

    def ordered_select(self, dialect: str) -> Any:
        """Select every column in primary-key order, bytewise on both databases."""
        keys = [self.transfer.c[column.name] for column in self.table.primary_key]
        order: list[ColumnElement[Any]] = [
            key.collate("C")
            if dialect == "postgresql" and isinstance(key.type, types.String)
            else key
            for key in keys or list(self.transfer.c)
        ]
        return select(*self.transfer.c).order_by(*order)


def table_plans() -> list[TablePlan]:
    """Return a plan per table of ``Base.metadata``, parents before children.

    Raises:
        InvalidInput: a column's type has no lossless text form.
    """
    load_all_models()
    return [_plan(table) for table in Base.metadata.sorted_tables]


def _plan(table: Table) -> TablePlan:
    codecs = tuple(column_codec(column) for column in table.columns)
    transfer = Table(
        table.name,
        MetaData(),
        *[
            Column(
                codec.name,
                codec.sql_type,
                primary_key=table.c[codec.name].primary_key,
                autoincrement=False,
            )
            for codec in codecs
        ],
    )
    return TablePlan(table=table, transfer=transfer, codecs=codecs)


class ContentDigest:
    """SM3 and SHA-256 over a table's canonical serialisation.

    The first line is the JSON array of column names, then one line per row
    (primary-key order): the JSON array of its cells as written to the file,
    ``null`` for NULL; UTF-8, no ASCII escaping, ``\\n`` after each line.
    """

    def __init__(self, columns: Sequence[str]):
        self._sm3 = get_suite("gm").new_hash()
        self._sha256 = get_suite("intl").new_hash()
        self._buffer: list[str] = []
        self._size = 0
        self.rows = 0
        self._add(_ROW.encode(list(columns)))

    def add(self, cells: Cells) -> None:
        self._add(_ROW.encode(cells))
        self.rows += 1

    def _add(self, line: str) -> None:
        self._buffer.append(line)
        self._size += len(line)
        if self._size > _HASH_BUFFER:
            self._flush()

    def _flush(self) -> None:
        chunk = ("\n".join(self._buffer) + "\n").encode("utf-8")
        self._sm3.update(chunk)
        self._sha256.update(chunk)
        self._buffer, self._size = [], 0

    def hexdigests(self) -> dict[str, str]:
        if self._buffer:
            self._flush()
        sm3, sha256 = self._sm3.copy(), self._sha256.copy()
        return {"sm3": sm3.finalize().hex(), "sha256": sha256.finalize().hex()}


def scan_table(
    connection: Connection,
    plan: TablePlan,
    *,
    sink: Callable[[Cells], None] | None = None,
    progress: DrillProgress = SILENT,
) -> ContentDigest:
    """Read every row of ``plan`` in key order, encode it, digest it, pass it on."""
    digest = ContentDigest(plan.columns)
    encoders = [codec.encoder for codec in plan.codecs]
    statement = plan.ordered_select(connection.dialect.name)
    result = connection.execution_options(yield_per=BATCH_ROWS).execute(statement)
    try:
        for partition in result.partitions():
            for row in partition:
                cells = [
                    None if value is None else encode(value)
                    for encode, value in zip(encoders, row, strict=True)
                ]
                digest.add(cells)
                if sink is not None:
                    sink(cells)
            progress.rows(plan.name, len(partition))
    finally:
        result.close()
    return digest


# ---- CSV in open form --------------------------------------------------------


def csv_record(cells: Cells) -> str:
    """Return one CSV record: every value quoted, NULL an empty unquoted field."""
    return (
        ",".join(
            "" if cell is None else '"' + cell.replace('"', '""') + '"'
            for cell in cells
        )
        + "\r\n"
    )


# A value is quoted (quotes inside doubled) or, for NULL, empty; each is
# followed by a comma once the record has one appended.
_FIELD = re.compile(r'("[^"]*(?:""[^"]*)*"|),')


def parse_csv_record(record: str) -> Cells:
    """Split one record written by :func:`csv_record` (terminator removed).

    Raises:
        ValueError: the record is not in that form.
    """
    framed = record + ","
    fields = _FIELD.findall(framed)
    if ",".join(fields) + "," != framed:
        raise ValueError("a value is neither quoted nor empty")
    return [field[1:-1].replace('""', '"') if field else None for field in fields]


def read_csv_records(stream: IO[str]) -> Iterator[Cells]:
    """Yield the records of a CSV stream opened with ``newline=""``.

    Raises:
        ValueError: a record is malformed or the file ends inside a value.
    """
    pending = ""
    for line in stream:
        pending += line
        if pending.count('"') % 2:
            continue  # a quoted value runs on to the next line
        yield parse_csv_record(_strip_terminator(pending))
        pending = ""
    if pending:
        raise ValueError("the file ends inside a quoted value")


def _strip_terminator(record: str) -> str:
    if record.endswith("\r\n"):
        return record[:-2]
    return record[:-1] if record.endswith(("\n", "\r")) else record


class _TableWriter(Protocol):
    def write(self, cells: Cells) -> None: ...

    def close(self) -> None: ...


class _CsvWriter:
    def __init__(self, path: Path, columns: Sequence[str]):
        self.stream = path.open("w", encoding="utf-8", newline="")
        self.stream.write(csv_record(list(columns)))

    def write(self, cells: Cells) -> None:
        self.stream.write(csv_record(cells))

    def close(self) -> None:
        self.stream.close()


def _pyarrow() -> tuple[Any, Any]:
    """Return pyarrow and pyarrow.parquet, an optional dependency.

    Raises:
        InvalidInput: pyarrow is not installed.
    """
    try:
        return (
            importlib.import_module("pyarrow"),
            importlib.import_module("pyarrow.parquet"),
        )
    except ImportError:
        raise InvalidInput(
            "drill: format parquet needs pyarrow (pip install pyarrow); use csv"
        ) from None


class _ParquetWriter:
    """Parquet with one string column per column, the cells as in the CSV."""

    def __init__(self, path: Path, columns: Sequence[str]):
        self.arrow, parquet = _pyarrow()
        schema = self.arrow.schema([(name, self.arrow.string()) for name in columns])
        self.writer = parquet.ParquetWriter(str(path), schema)
        self.schema = schema
        self.pending: list[Cells] = []
        self.columns = list(columns)

    def write(self, cells: Cells) -> None:
        self.pending.append(cells)
        if len(self.pending) >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        by_column = list(zip(*self.pending, strict=True)) or [()] * len(self.columns)
        arrays = [
            self.arrow.array(list(values), self.arrow.string()) for values in by_column
        ]
        self.writer.write_table(
            self.arrow.Table.from_arrays(arrays, schema=self.schema)
        )
        self.pending = []

    def close(self) -> None:
        if self.pending:
            self._flush()
        self.writer.close()


def _open_writer(file_format: str, path: Path, columns: Sequence[str]) -> _TableWriter:
    if file_format == "parquet":
        return _ParquetWriter(path, columns)
    return _CsvWriter(path, columns)


@contextmanager
def _read_table_file(file_format: str, path: Path) -> Iterator[Iterator[Cells]]:
    """Yield the file's records, the header first."""
    if file_format == "parquet":
        _arrow, parquet = _pyarrow()
        source = parquet.ParquetFile(str(path))
        yield _parquet_records(source)
        return
    with path.open("r", encoding="utf-8", newline="") as stream:
        yield read_csv_records(stream)


def _parquet_records(source: Any) -> Iterator[Cells]:
    yield list(source.schema_arrow.names)
    for batch in source.iter_batches(batch_size=BATCH_ROWS):
        columns = [column.to_pylist() for column in batch.columns]
        yield from (list(row) for row in zip(*columns, strict=True))


# ---- phase 1: export ---------------------------------------------------------


def export_database(
    source_url: str,
    folder: Path,
    *,
    drill_id: str,
    file_format: str = "csv",
    chain_key: VerifyingKey | None = None,
    progress: DrillProgress = SILENT,
) -> dict[str, Any]:
    """Export every table of ``source_url`` into ``folder``; return the manifest.

    Everything is read in one snapshot. ``folder`` must not exist.

    Raises:
        InvalidInput: an unknown format, pyarrow missing for parquet, or a
            column type without a lossless text form.
        Conflict: ``folder`` exists.
    """
    if file_format not in FORMATS:
        raise InvalidInput(
            f"drill: format {file_format!r} is unknown; expected {FORMATS}"
        )
    if folder.exists():
        raise Conflict(f"drill: export folder {folder} already exists")
    plans = table_plans()
    (folder / TABLES_DIRECTORY).mkdir(parents=True)
    engine = make_engine(source_url)
    try:
        with _snapshot(engine) as connection:
            manifest = _manifest_head(connection, drill_id, source_url, file_format)
            counts = {plan.name: _count(connection, plan) for plan in plans}
            progress.phase("export", sum(counts.values()))
            manifest["tables"] = [
                _export_table(connection, plan, folder, file_format, progress)
                for plan in plans
            ]
            manifest["audit"] = _audit_state(connection, plans)
    finally:
        engine.dispose()
    _write_companions(folder, manifest, chain_key)
    manifest["files"] = [_describe_file(folder, path) for path in _files_of(folder)]
    _write_json(folder / DRILL_MANIFEST, manifest)
    logger.info(
        "drill export written",
        extra={
            "drill_id": drill_id,
            "tables": len(plans),
            "rows": sum(counts.values()),
        },
    )
    return manifest


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """Yield a connection that sees one consistent state of every table."""
    if engine.dialect.name == "postgresql":
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        with (
            engine.connect().execution_options(**options) as connection,
            connection.begin(),
        ):
            yield connection
        return
    with engine.connect() as connection:
        # pysqlite opens no transaction for reads; without one each SELECT
        # would see the database as it is at that moment.
        connection.exec_driver_sql("BEGIN")
        try:
            yield connection
        finally:
            connection.rollback()


def _manifest_head(
    connection: Connection, drill_id: str, source_url: str, file_format: str
) -> dict[str, Any]:
    revision = MigrationContext.configure(connection).get_current_revision()
    return {
        "format": FORMAT,
        "drill_id": drill_id,
        "created_at": now().astimezone(dt.UTC).isoformat(),
        "source": {
            "dialect": connection.dialect.name,
            "url": make_url(source_url).render_as_string(hide_password=True),
            "schema_revision": revision,
        },
        "file_format": file_format,
        "encoding": "see README.md: cells as text, NULL distinct from ''",
    }


def _count(connection: Connection, plan: TablePlan) -> int:
    return int(connection.scalar(select(func.count()).select_from(plan.transfer)) or 0)


def _export_table(
    connection: Connection,
    plan: TablePlan,
    folder: Path,
    file_format: str,
    progress: DrillProgress,
) -> dict[str, Any]:
    relative = f"{TABLES_DIRECTORY}/{plan.name}.{file_format}"
    writer = _open_writer(file_format, folder / relative, plan.columns)
    try:
        digest = scan_table(connection, plan, sink=writer.write, progress=progress)
    finally:
        writer.close()
    return {
        "name": plan.name,
        "file": relative,
        "rows": digest.rows,
        "primary_key": [column.name for column in plan.table.primary_key],
        "columns": [
            {
                "name": codec.name,
                "type": codec.type_name,
                "encoding": codec.kind,
                "nullable": codec.nullable,
            }
            for codec in plan.codecs
        ],
        "content_digest": digest.hexdigests(),
    }


def _audit_state(connection: Connection, plans: list[TablePlan]) -> dict[str, Any]:
    by_name = {plan.name: plan for plan in plans}
    head = _first_row(connection, by_name["audit_chain_head"], None)
    checkpoints = by_name[AuditCheckpoint.__tablename__]
    last = _first_row(connection, checkpoints, checkpoints.transfer.c.seq_to.desc())
    return {"chain_head": head, "last_checkpoint": last}


def _first_row(
    connection: Connection, plan: TablePlan, order: ColumnElement[Any] | None
) -> dict[str, str | None] | None:
    statement = select(*plan.transfer.c).limit(1)
    if order is not None:
        statement = statement.order_by(order)
    row = connection.execute(statement).first()
    if row is None:
        return None
    return {
        codec.name: codec.encode(value)
        for codec, value in zip(plan.codecs, row, strict=True)
    }


def _write_companions(
    folder: Path, manifest: dict[str, Any], chain_key: VerifyingKey | None
) -> None:
    (folder / SCHEMA_DIRECTORY).mkdir()
    revision = manifest["source"]["schema_revision"]
    for name, dialect in (
        ("sqlite", SQLiteDialect()),
        ("postgresql", make_url("postgresql+psycopg://").get_dialect()()),
    ):
        path = folder / SCHEMA_DIRECTORY / f"{name}.sql"
        path.write_text(render_schema(dialect, revision=revision), encoding="utf-8")
    (folder / CONVENTIONS).write_text(CONVENTIONS_TEXT, encoding="utf-8")
    if chain_key is not None:
        key_path = folder / CHAIN_KEY_FILE
        key_path.parent.mkdir(parents=True)
        key_path.write_bytes(chain_key.public_pem())


def render_schema(dialect: Dialect, *, revision: str | None) -> str:
    """Return CREATE TABLE and CREATE INDEX statements for ``dialect``."""
    load_all_models()
    parts = [
        f"-- Waggle schema for {dialect.name}, migration revision {revision}.\n"
        "-- Generated by the sovereignty drill; tables in dependency order.\n"
    ]
    for table in Base.metadata.sorted_tables:
        parts.append(str(CreateTable(table).compile(dialect=dialect)).strip() + ";\n")
        for index in sorted(table.indexes, key=lambda index: str(index.name)):
            parts.append(
                str(CreateIndex(index).compile(dialect=dialect)).strip() + ";\n"
            )
    return "\n".join(parts)


def _files_of(folder: Path) -> list[str]:
    found = [
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file()
    ]
    return sorted((name for name in found if name != DRILL_MANIFEST), key=str.encode)


def _describe_file(folder: Path, relative: str) -> dict[str, Any]:
    sm3, sha256 = get_suite("gm").new_hash(), get_suite("intl").new_hash()
    size = 0
    with (folder / relative).open("rb") as stream:
        while chunk := stream.read(1 << 20):
            size += len(chunk)
            sm3.update(chunk)
            sha256.update(chunk)
    return {
        "path": relative,
        "size": size,
        "sm3": sm3.finalize().hex(),
        "sha256": sha256.finalize().hex(),
    }


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    text = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True)
    path.write_text(text + "\n", encoding="utf-8")


def load_manifest(folder: Path) -> dict[str, Any]:
    """Read ``drill-manifest.json`` from an export folder.

    Raises:
        NotFound: the folder holds no manifest.
        InvalidInput: the manifest is not a drill manifest.
    """
    path = folder / DRILL_MANIFEST
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"drill: no {DRILL_MANIFEST} in {folder}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"drill: {path} is not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidInput(f"drill: {path} is not a {FORMAT} manifest")
    return document


# ---- phase 2: import ---------------------------------------------------------


@dataclass
class ImportResult:
    """Rows loaded per table, and the tables whose load failed (with why)."""

    rows: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def import_export(
    folder: Path, target_url: str, *, progress: DrillProgress = SILENT
) -> ImportResult:
    """Load an export into the database at ``target_url``, migrated first.

    Each table is loaded in its own transaction, parents first; a table that
    fails is named in the result and the others still load.

    Raises:
        NotFound, InvalidInput: no readable manifest in ``folder``.
        Conflict: the target already holds rows.
    """
    manifest = load_manifest(folder)
    prepare_target(target_url)
    plans = {plan.name: plan for plan in table_plans()}
    result = ImportResult()
    progress.phase("import", sum(entry["rows"] for entry in manifest["tables"]))
    engine = make_engine(target_url)
    try:
        for entry in manifest["tables"]:
            _import_table(engine, folder, manifest, entry, plans, result, progress)
        if engine.dialect.name == "postgresql":
            _move_sequences_past_ids(engine, list(plans.values()))
    finally:
        engine.dispose()
    logger.info(
        "drill import done",
        extra={"rows": sum(result.rows.values()), "failed_tables": len(result.errors)},
    )
    return result


def prepare_target(target_url: str) -> None:
    """Create the schema on ``target_url`` by the migrations; it must be empty.

    Raises:
        Conflict: a table of the target already holds rows.
    """
    if target_url.startswith("sqlite"):
        database = make_url(target_url).database
        if database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    upgrade(target_url)
    engine = make_engine(target_url)
    try:
        with engine.connect() as connection:
            for plan in table_plans():
                if (
                    connection.scalar(select(plan.transfer.c[plan.columns[0]]).limit(1))
                    is not None
                ):
                    raise Conflict(
                        f"drill: target table {plan.name} already holds rows;"
                        " expected a fresh, empty database"
                    )
    finally:
        engine.dispose()


def _import_table(
    engine: Engine,
    folder: Path,
    manifest: Mapping[str, Any],
    entry: Mapping[str, Any],
    plans: Mapping[str, TablePlan],
    result: ImportResult,
    progress: DrillProgress,
) -> None:
    name = entry["name"]
    plan = plans.get(name)
    if plan is None:
        result.errors[name] = f"{name}: the target's schema has no such table"
        return
    try:
        with engine.begin() as connection:
            result.rows[name] = _load_rows(
                connection,
                plan,
                folder / entry["file"],
                manifest["file_format"],
                progress,
            )
    except (ValueError, OSError, SQLAlchemyError, WaggleError) as exc:
        result.errors[name] = f"{name}: import failed: {_one_line(exc)}"
        logger.warning(
            "drill table not imported", extra={"table": name, "reason": "load_failed"}
        )


def _load_rows(
    connection: Connection,
    plan: TablePlan,
    path: Path,
    file_format: str,
    progress: DrillProgress,
) -> int:
    loaded = 0
    with _read_table_file(file_format, path) as records:
        header = next(records, None)
        if header != plan.columns:
            raise ValueError(f"header {header} differs from the columns {plan.columns}")
        rows = _decoded(plan, records)
        if _self_references(plan.table):
            rows = iter(_parents_first(list(rows), _self_references(plan.table)))
        for batch in _batches(rows, BATCH_ROWS):
            connection.execute(insert(plan.transfer), batch)
            loaded += len(batch)
            progress.rows(plan.name, len(batch))
    return loaded


def _decoded(plan: TablePlan, records: Iterable[Cells]) -> Iterator[dict[str, Any]]:
    width = len(plan.codecs)
    names = plan.columns
    decoders = [codec.decoder for codec in plan.codecs]
    for number, cells in enumerate(records, start=2):
        if len(cells) != width:
            raise ValueError(
                f"record {number} has {len(cells)} values, expected {width}"
            )
        try:
            row = {
                name: None if cell is None else decode(cell)
                for name, decode, cell in zip(names, decoders, cells, strict=True)
            }
        except (ValueError, TypeError):
            _raise_bad_cell(plan, number, cells)
        yield row


def _raise_bad_cell(plan: TablePlan, number: int, cells: Cells) -> NoReturn:
    """Name the first cell of a record that does not decode."""
    for codec, cell in zip(plan.codecs, cells, strict=True):
        try:
            codec.decode(cell)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"record {number}, column {codec.name}: {cell!r} is not a"
                f" valid {codec.kind} ({exc})"
            ) from exc
    raise AssertionError("unreachable: every cell decoded")


def _batches(
    rows: Iterable[dict[str, Any]], size: int
) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _self_references(table: Table) -> list[tuple[str, str]]:
    """Return (column, referred column) of each foreign key into ``table`` itself."""
    return [
        (key.parent.name, key.column.name)
        for key in table.foreign_keys
        if key.column.table is table
    ]


def _parents_first(
    rows: list[dict[str, Any]], links: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Order rows so that a row another refers to comes first (an org chart)."""
    position = {
        (referred, row[referred]): index
        for index, row in enumerate(rows)
        for _local, referred in links
    }
    placed, visiting = [False] * len(rows), [False] * len(rows)
    ordered: list[dict[str, Any]] = []
    for start in range(len(rows)):
        stack = [start]
        while stack:
            current = stack[-1]
            if placed[current]:
                stack.pop()
                continue
            visiting[current] = True
            parent = next(
                (
                    found
                    for local, referred in links
                    if (found := position.get((referred, rows[current][local])))
                    is not None
                    and not placed[found]
                    and not visiting[found]
                ),
                None,
            )
            if parent is not None:
                stack.append(parent)
                continue
            placed[current] = True
            ordered.append(rows[current])
            stack.pop()
    return ordered


def _move_sequences_past_ids(engine: Engine, plans: list[TablePlan]) -> None:
    """Let PostgreSQL hand out new ids after the imported ones."""
    with engine.begin() as connection:
        for plan in plans:
            keys = list(plan.table.primary_key)
            if len(keys) != 1 or not isinstance(keys[0].type, types.Integer):
                continue
            sequence = connection.scalar(
                select(func.pg_get_serial_sequence(plan.name, keys[0].name))
            )
            if sequence is None:
                continue
            highest = func.max(plan.transfer.c[keys[0].name])
            connection.execute(
                select(
                    func.setval(
                        sequence, func.coalesce(highest, 1), highest.is_not(None)
                    )
                ).select_from(plan.transfer)
            )


def _one_line(error: BaseException) -> str:
    if isinstance(error, WaggleError):
        return error.message
    if isinstance(error, DBAPIError):
        return " ".join(str(error.orig).split())[:300]
    return " ".join(str(error).split())[:300]


# ---- phase 3: compare --------------------------------------------------------


@dataclass(frozen=True)
class TableComparison:
    """One table on the source (from the manifest) and on the target."""

    name: str
    source_rows: int
    target_rows: int
    digest_equal: bool
    file_intact: bool
    problem: str | None

    @property
    def is_matched(self) -> bool:
        return self.problem is None


@dataclass
class ChainCheck:
    """The target's audit chain, verified, and the source's last checkpoint."""

    is_verified: bool = False
    entries: int = 0
    checkpoints: int = 0
    signatures_checked: int = 0
    checkpoint_matched: bool | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    """Everything compare found, and the first mismatch."""

    tables: list[TableComparison]
    chain: ChainCheck
    other_files: list[str] = field(default_factory=list)

    @property
    def first_mismatch(self) -> str | None:
        for table in self.tables:
            if table.problem is not None:
                return table.problem
        if self.other_files:
            return self.other_files[0]
        return self.chain.problem

    @property
    def is_matched(self) -> bool:
        return self.first_mismatch is None


def compare_target(
    folder: Path,
    target_url: str,
    *,
    actor: Actor,
    keys: Sequence[VerifyingKey],
    imported: ImportResult | None = None,
    progress: DrillProgress = SILENT,
) -> Comparison:
    """Recompute every table's count and digests on the target; check the chain.

    Raises:
        NotFound, InvalidInput: no readable manifest in ``folder``.
    """
    manifest = load_manifest(folder)
    files = {entry["path"]: entry for entry in manifest["files"]}
    intact = {
        path: _describe_file(folder, path) == entry
        for path, entry in files.items()
        if (folder / path).is_file()
    }
    plans = {plan.name: plan for plan in table_plans()}
    progress.phase("compare", sum(entry["rows"] for entry in manifest["tables"]))
    engine = make_engine(target_url)
    try:
        with engine.connect() as connection:
            tables = [
                _compare_table(
                    connection,
                    plans.get(entry["name"]),
                    entry,
                    intact,
                    imported,
                    progress,
                )
                for entry in manifest["tables"]
            ]
        chain = check_target_chain(engine, manifest, actor=actor, keys=keys)
    finally:
        engine.dispose()
    table_files = {entry["file"] for entry in manifest["tables"]}
    others = [
        f"{path}: missing or changed since the export"
        for path in files
        if path not in table_files and not intact.get(path, False)
    ]
    return Comparison(tables=tables, chain=chain, other_files=others)


def _compare_table(
    connection: Connection,
    plan: TablePlan | None,
    entry: Mapping[str, Any],
    intact: Mapping[str, bool],
    imported: ImportResult | None,
    progress: DrillProgress,
) -> TableComparison:
    name, source_rows = entry["name"], int(entry["rows"])
    file_intact = intact.get(entry["file"], False)
    if plan is None:
        return TableComparison(
            name,
            source_rows,
            0,
            False,
            file_intact,
            f"{name}: no such table on the target",
        )
    digest = scan_table(connection, plan, progress=progress)
    digest_equal = digest.hexdigests() == entry["content_digest"]
    problem = None
    if imported is not None and name in imported.errors:
        problem = imported.errors[name]
    elif digest.rows != source_rows:
        problem = (
            f"{name}: {digest.rows} rows on the target, {source_rows} in the source"
        )
    elif not digest_equal:
        problem = f"{name}: content digests differ between source and target"
    elif not file_intact:
        problem = f"{name}: {entry['file']} was changed after the export"
    return TableComparison(
        name, source_rows, digest.rows, digest_equal, file_intact, problem
    )


def check_target_chain(
    engine: Engine,
    manifest: Mapping[str, Any],
    *,
    actor: Actor,
    keys: Sequence[VerifyingKey],
) -> ChainCheck:
    """Verify the target's audit chain and match the source's last checkpoint.

    The verification's own audit row is rolled back: the target stays an
    exact copy of the source, and the drill report records the outcome.
    """
    check = ChainCheck()
    sessions = make_session_factory(engine)
    with sessions() as session:
        try:
            report = verify_audit_chain(session, actor, keys=keys)
        finally:
            session.rollback()
        check.entries, check.checkpoints = report.entries, report.checkpoints
        check.signatures_checked, check.notes = (
            report.signatures_checked,
            list(report.notes),
        )
        if report.problem is not None:
            check.problem = f"audit chain on the target: {report.problem.message}"
        elif report.checkpoints and not report.signatures_checked:
            check.problem = (
                "audit chain on the target: checkpoint signatures were not"
                " checked (the instance has no checkpoint key)"
            )
        checkpoint = manifest["audit"]["last_checkpoint"]
        if checkpoint is None:
            check.notes.append(
                "the source has no signed checkpoint: entries are protected"
                " by their links only"
            )
        else:
            mismatch = _checkpoint_mismatch(session, checkpoint)
            check.checkpoint_matched = mismatch is None
            check.problem = check.problem or mismatch
    check.is_verified = check.problem is None
    return check


def _checkpoint_mismatch(
    session: Any, checkpoint: Mapping[str, str | None]
) -> str | None:
    seq_from, seq_to = int(checkpoint["seq_from"] or 0), int(checkpoint["seq_to"] or 0)
    leaves = list(
        session.scalars(
            select(AuditEntry.entry_hash)
            .where(AuditEntry.seq.between(seq_from, seq_to))
            .order_by(AuditEntry.seq)
        )
    )
    where = f"audit chain on the target: checkpoint over entries {seq_from} to {seq_to}"
    expected = seq_to - seq_from + 1
    if len(leaves) != expected:
        return f"{where} covers {expected} entries, {len(leaves)} found"
    digest = hash_function(str(checkpoint["algorithm"]))
    root = merkle_root((bytes.fromhex(leaf) for leaf in leaves), digest).hex()
    if root != checkpoint["merkle_root"]:
        return f"{where}: the recomputed Merkle root differs from the signed one"
    if leaves[-1] != checkpoint["head_hash"]:
        return f"{where}: entry {seq_to} differs from the signed head"
    return None


# ---- the report --------------------------------------------------------------


@dataclass
class DrillReport:
    """The outcome of a drill: per table, the chain, timings, completeness."""

    drill_id: str
    source: str
    target: str
    file_format: str
    comparison: Comparison
    phases: dict[str, float]
    out: Path
    package: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_ok(self) -> bool:
        return self.comparison.is_matched

    @property
    def first_mismatch(self) -> str | None:
        return self.comparison.first_mismatch

    def totals(self) -> dict[str, Any]:
        tables = self.comparison.tables
        matched = [table for table in tables if table.is_matched]
        source_rows = sum(table.source_rows for table in tables)
        matched_rows = sum(table.source_rows for table in matched)
        return {
            "tables": len(tables),
            "tables_matched": len(matched),
            "source_rows": source_rows,
            "target_rows": sum(table.target_rows for table in tables),
            "rows_matched": matched_rows,
            "completeness_tables": len(matched) / len(tables) if tables else 1.0,
            "completeness_rows": matched_rows / source_rows if source_rows else 1.0,
        }

    def as_dict(self) -> dict[str, Any]:
        chain = self.comparison.chain
        return {
            "format": FORMAT,
            "drill_id": self.drill_id,
            "ok": self.is_ok,
            "first_mismatch": self.first_mismatch,
            "source": self.source,
            "target": self.target,
            "file_format": self.file_format,
            "tables": [
                {
                    "name": table.name,
                    "source_rows": table.source_rows,
                    "target_rows": table.target_rows,
                    "digest_equal": table.digest_equal,
                    "file_intact": table.file_intact,
                    "problem": table.problem,
                }
                for table in self.comparison.tables
            ],
            "other_files": self.comparison.other_files,
            "audit_chain": {
                "verified": chain.is_verified,
                "entries": chain.entries,
                "checkpoints": chain.checkpoints,
                "signatures_checked": chain.signatures_checked,
                "last_checkpoint_matched": chain.checkpoint_matched,
                "problem": chain.problem,
                "notes": chain.notes,
            },
            "totals": self.totals(),
            "seconds": {**self.phases, "total": sum(self.phases.values())},
            "package": None if self.package is None else str(self.package),
            "notes": self.notes,
        }


# ---- the whole drill ---------------------------------------------------------


def new_drill_id(at: dt.datetime | None = None) -> str:
    """Return a fresh drill id such as ``drill-20260302T090000Z-1a2b3c4d``."""
    moment = (at or now()).astimezone(dt.UTC)
    return f"drill-{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def drill_signers(
    settings: Settings, actor: Actor, *, approver: Signer | None = None
) -> tuple[list[Signer], list[str]]:
    """Return the package's signers and notes about them.

    The exporter signs with the instance key ``drill-exporter``; the approving
    compliance officer with ``approver``, or else with the instance key
    ``drill-approver`` (both created on first use), which the notes flag.
    """
    store = KeyStore.for_settings(settings)
    exporter = Signer(
        name=actor.username,
        role=EXPORTER,
        key=_instance_key(store, EXPORTER_KEY, settings),
    )
    if approver is not None:
        return [exporter, approver], []
    default = Signer(
        name=DEFAULT_APPROVER,
        role=COMPLIANCE_OFFICER,
        key=_instance_key(store, APPROVER_KEY, settings),
    )
    note = (
        "approved with the instance key drill-approver, not a compliance officer's own"
        " key: the package proves integrity, not a separate approval"
    )
    return [exporter, default], [note]


def _instance_key(store: KeyStore, name: str, settings: Settings) -> Any:
    try:
        return store.signing_key(name)
    except NotFound:
        store.create_signing_key(name, suite=settings.crypto_suite)
        return store.signing_key(name)


def run_drill(
    settings: Settings,
    actor: Actor,
    *,
    out: Path | None = None,
    target_url: str | None = None,
    file_format: str = "csv",
    approver: Signer | None = None,
    progress: DrillProgress = SILENT,
) -> DrillReport:
    """Export the configured database, import it into a fresh one, compare, sign.

    ``out`` (default ``<data_dir>/drills/<drill id>``) must be new or empty;
    it receives ``package/`` (the signed package), ``drill-report.json`` and,
    without ``target_url``, the target ``target.db``.

    Raises:
        PolicyDenied: the actor may not sign audit checkpoints (IT admin).
        Conflict: ``out`` is not empty, or the target holds rows.
        InvalidInput: an unknown format, or pyarrow missing for parquet.
    """
    drill_id = new_drill_id()
    out = out or settings.data_dir / "drills" / drill_id
    _claim_folder(out)
    target_url = target_url or f"sqlite:///{(out / TARGET_FILE).as_posix()}"
    signers, notes = drill_signers(settings, actor, approver=approver)
    keys = instance_verifying_keys(settings)
    timer = _PhaseTimer()

    with timer("export"):
        entry = _record_export(settings, actor, drill_id=drill_id, out=out)
        export = out / EXPORT_DIRECTORY
        export_database(
            settings.database_url,
            export,
            drill_id=drill_id,
            file_format=file_format,
            chain_key=_chain_key(settings),
            progress=progress,
        )
    with timer("import"):
        imported = import_export(export, target_url, progress=progress)
    with timer("compare"):
        comparison = compare_target(
            export,
            target_url,
            actor=actor,
            keys=keys,
            imported=imported,
            progress=progress,
        )
    report = DrillReport(
        drill_id=drill_id,
        source=make_url(settings.database_url).render_as_string(hide_password=True),
        target=make_url(target_url).render_as_string(hide_password=True),
        file_format=file_format,
        comparison=comparison,
        phases=timer.seconds,
        out=out,
        notes=notes,
    )
    _write_json(export / REPORT, report.as_dict())
    with timer("package"):
        report.package = _sign_package(out, export, signers, entry, drill_id)
    _write_json(out / REPORT, report.as_dict())
    logger.info("drill finished", extra={"drill_id": drill_id, "ok": report.is_ok})
    return report


def _claim_folder(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Conflict(f"drill: output folder {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)


def _chain_key(settings: Settings) -> VerifyingKey | None:
    keys = instance_verifying_keys(settings)
    return keys[0] if keys else None


def _record_export(
    settings: Settings, actor: Actor, *, drill_id: str, out: Path
) -> AuditEntry:
    """Commit the audit row of the export before the snapshot, so it is in it."""
    engine = make_engine(settings.database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            # The drill reads every table and signs with the instance's keys:
            # the policy's sovereignty_drill entry names who may (IT).
            authorize(session, actor, "export", "sovereignty_drill")
            entry = record_audit(
                session,
                actor,
                action="export",
                resource=AUDIT_RESOURCE,
                record_ids=[drill_id],
                detail=f"sovereignty drill {drill_id} into {out}",
            )
    finally:
        engine.dispose()
    return entry


def _sign_package(
    out: Path, export: Path, signers: list[Signer], entry: AuditEntry, drill_id: str
) -> Path:
    destination = out / PACKAGE_DIRECTORY
    files: dict[str, bytes | Path] = {
        path.relative_to(export).as_posix(): path
        for path in export.rglob("*")
        if path.is_file()
    }
    build_package(
        destination,
        files=files,
        signers=signers,
        audit_entry=audit_entry_as_dict(entry),
        package_id=drill_id,
    )
    shutil.rmtree(export)
    return destination


class _PhaseTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = round(time.perf_counter() - started, 3)


CONVENTIONS_TEXT = """\
# Waggle sovereignty drill export / Waggle 主权演练导出

Everything the instance held, in open form. 本目录包含实例的全部数据，格式公开。

- `tables/<table>.csv`: one file per table, in dependency order (see
  `drill-manifest.json`), rows in primary-key order. With `--format parquet`
  the files are `tables/<table>.parquet`: one string column per column
  holding the same text as the CSV cells below, NULL as a Parquet null.
- `schema/sqlite.sql`, `schema/postgresql.sql`: the schema as SQL DDL.
- `drill-manifest.json`: per table its row count, columns (name, type,
  encoding, nullable), primary key and content digests; the SM3 and SHA-256
  of every file; the audit chain head and the last signed checkpoint.
- `keys/audit-chain.pub.pem`: the public key that signs audit checkpoints.
- `drill-report.json`: the comparison of the import with the source.

## CSV encoding / CSV 编码约定

- UTF-8 without BOM, RFC 4180 records ending in CRLF, a header of column names.
- Every non-NULL value is quoted (`"..."`, a `"` inside doubled); **NULL is an
  empty unquoted field** and **the empty string is `""`**, so the two differ.
  This is what PostgreSQL's `COPY ... (FORMAT csv, FORCE_QUOTE *)` writes and
  what `COPY ... FROM ... (FORMAT csv, HEADER)` reads back.
  非空值一律加引号；NULL 为不加引号的空字段，空字符串为 `""`。
- Values by the column's `encoding` in the manifest:
  - `string`: the text as is (Chinese kept, newlines kept inside the quotes)
  - `integer`: decimal digits; `decimal`: exact decimal text (`1234.50`)
  - `float`: the shortest text that reads back as the same double (`0.1`, `nan`)
  - `boolean`: `true` / `false`
  - `datetime`: ISO 8601 in UTC (`2026-03-02T09:00:00+00:00`); `date`: `2026-03-02`
  - `json`: the JSON text, UTF-8, keys sorted, no spaces
  - `bytes`: standard base64
  - columns stored encrypted are exported as stored (the envelope), never decrypted

## Content digests / 内容摘要

Per table, SM3 and SHA-256 over UTF-8 lines each followed by `\\n`: first the
JSON array of column names, then per row (primary-key order) the JSON array
of its cells exactly as encoded above, `null` for NULL (JSON without ASCII
escaping, separators `,` and `:`). The importer recomputes them on the
target from the database itself.
每张表的摘要按主键顺序对规范化行计算，导入后在目标库重新计算并比对。
"""
