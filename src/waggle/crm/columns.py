"""The vocabulary of import and export: columns, references, rows and cells.

A :class:`Layout` says which columns a resource's file has, which of them
name other records (by external id, code or name) and which business rules
a row must pass. Cells are parsed here into typed values, and typed values
formatted back into cells, so that import and export agree on every format.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from waggle.core.actor import Actor
from waggle.core.clock import UTC, as_utc
from waggle.core.db import Base
from waggle.crm.mapping import ColumnMapping, ColumnPlan
from waggle.crm.tabular import Cell

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("1e14")  # Money keeps 16 digits, two of them after the point
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "是", "对"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "否", "错"})
DATE_FORMATS = ("%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日", "%Y%m%d")
DATETIME_FORMATS = (
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y.%m.%d %H:%M:%S",
    "%Y.%m.%d %H:%M",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y年%m月%d日 %H:%M",
    "%Y年%m月%d日 %H时%M分",
)
_MULTIPLIERS = {"万": Decimal(10_000), "亿": Decimal(100_000_000)}
_NUMBER_NOISE = re.compile(r"[,，\s¥￥$元]|^(CNY|RMB|USD)")


class Kind(enum.StrEnum):
    """How a cell is read and written."""

    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    FLOAT = "float"
    DATE = "date"
    DATETIME = "datetime"
    BOOLEAN = "boolean"
    CHOICE = "choice"


@dataclass(frozen=True)
class Column:
    """One column of a resource's file and the attribute it fills.

    A ``derived`` column is exported from its attribute but, on import, only
    checked by the rules (an opportunity's status follows from its stage).
    """

    name: str
    kind: Kind = Kind.TEXT
    attribute: str | None = None
    required: bool = False
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    is_derived: bool = False

    @property
    def target(self) -> str:
        return self.name if self.attribute is None else self.attribute


@dataclass(frozen=True)
class Via:
    """One way a file may name a referenced record: a column and what it matches."""

    column: str
    attribute: str
    is_unique: bool = True
    normalize: Callable[[str], str] | None = None


@dataclass(frozen=True)
class Reference:
    """A foreign key given in the file by external id, code or name.

    The first :class:`Via` is the one written on export. ``by_rules`` means
    the resource's rules resolve it (a stage depends on the pipeline).
    """

    attribute: str
    target: type[Base]
    via: tuple[Via, ...]
    required: bool = False
    extra: tuple[str, ...] = ()
    by_rules: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(item.column for item in self.via)

    @property
    def description(self) -> str:
        first, *others = self.columns
        return f"{first} (or {', '.join(others)})" if others else first


@dataclass(frozen=True)
class Problem:
    """Why a row was refused: the field, a stable code and a message."""

    field: str | None
    code: str
    message: str


@dataclass
class Row:
    """One data row on its way through an import."""

    number: int
    cells: list[Cell]
    parsed: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    existing: dict[str, Any] | None = None
    pending: dict[str, str] = field(default_factory=dict)
    resolved: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def is_new(self) -> bool:
        return self.existing is None

    @property
    def is_rejected(self) -> bool:
        return bool(self.problems)

    def reject(self, field_name: str | None, code: str, message: str) -> None:
        self.problems.append(Problem(field_name, code, message))

    def current(self, attribute: str) -> Any:
        """Return the value the record will have: the file's, else the stored one."""
        if attribute in self.values:
            return self.values[attribute]
        return None if self.existing is None else self.existing.get(attribute)


@dataclass
class Context:
    """What the rules of one import may consult; ``state`` is theirs to keep."""

    session: Session
    actor: Actor
    scope: str
    now: dt.datetime
    mapping: ColumnMapping
    plan: ColumnPlan
    present: frozenset[str]
    lookups: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    def has(self, column: str) -> bool:
        """Tell whether the file (or the mapping's defaults) gives ``column``."""
        return column in self.present


RowRule = Callable[[Row, Context], None]
BatchRule = Callable[[list[Row], Context], None]


@dataclass(frozen=True)
class Layout:
    """A resource's file: key, columns, references, rules and export order.

    ``order`` lists the exported columns; a reference is exported by its
    first :class:`Via`. ``after_write`` runs once the chunk's rows are stored.
    """

    name: str
    model: type[Base]
    key: str
    columns: tuple[Column, ...]
    order: tuple[str, ...]
    references: tuple[Reference, ...] = ()
    key_fallback: str | None = None
    owner_attribute: str | None = None
    immutable: frozenset[str] = frozenset()
    row_rules: tuple[RowRule, ...] = ()
    batch_rules: tuple[BatchRule, ...] = ()
    after_write: BatchRule | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        """Every column name a file may carry."""
        names = [column.name for column in self.columns]
        for reference in self.references:
            names += [name for name in reference.columns if name not in names]
        return tuple(names)

    def field_of(self, attribute: str) -> str:
        """Return the file column that feeds ``attribute`` (for reject reasons)."""
        for reference in self.references:
            if reference.attribute == attribute:
                return reference.columns[0]
        for column in self.columns:
            if column.target == attribute:
                return column.name
        return attribute

    @property
    def has_self_reference(self) -> bool:
        return any(reference.target is self.model for reference in self.references)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        return Column(name)


class CellError(ValueError):
    """A cell that cannot become a value of its column."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def parse_cell(column: Column, cell: Cell, mapping: ColumnMapping) -> Any:
    """Turn a raw cell into the column's value (``None`` when empty).

    The mapping's value translations and defaults apply first.

    Raises:
        CellError: the cell does not fit the column.
    """
    document = mapping.document
    if isinstance(cell, str):
        cell = cell.strip() or None
    translations = document.values.get(column.name)
    if translations and cell is not None:
        cell = translations.get(_plain_text(cell), cell)
    if cell is None and column.name in document.defaults:
        cell = document.defaults[column.name] or None
    if cell is None:
        return None
    return _PARSERS[column.kind](column, cell, mapping)


def _plain_text(cell: Cell) -> str:
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, dt.datetime | dt.date):
        return cell.isoformat()
    return str(cell)


def _text(column: Column, cell: Cell, mapping: ColumnMapping) -> str:
    text = _plain_text(cell)
    if column.max_length is not None and len(text) > column.max_length:
        raise CellError(
            "too_long",
            f"has {len(text)} characters, at most {column.max_length} fit",
        )
    if column.pattern is not None and not re.fullmatch(column.pattern, text):
        raise CellError("bad_format", f"{text!r} is not in the expected form")
    return text


def _choice(column: Column, cell: Cell, mapping: ColumnMapping) -> str:
    text = _plain_text(cell).strip().lower()
    if text not in column.choices:
        raise CellError(
            "bad_choice", f"{text!r} is not one of {', '.join(column.choices)}"
        )
    return text


def _decimal(column: Column, cell: Cell, mapping: ColumnMapping) -> Decimal:
    value = _number(cell)
    if value != value.quantize(CENT):
        raise CellError("bad_number", f"{value} has more than two decimal places")
    if abs(value) >= MAX_AMOUNT:
        raise CellError("out_of_range", f"{value} is too large")
    _check_range(column, float(value))
    return value.quantize(CENT)


def _number(cell: Cell) -> Decimal:
    if isinstance(cell, bool | dt.date):
        raise CellError("bad_number", f"{cell!r} is not a number")
    if isinstance(cell, int | Decimal):
        return Decimal(cell)
    if isinstance(cell, float):
        return Decimal(repr(cell))
    text = _NUMBER_NOISE.sub("", str(cell)).removesuffix("%")
    factor = Decimal(1)
    if text and text[-1] in _MULTIPLIERS:
        text, factor = text[:-1], _MULTIPLIERS[text[-1]]
    try:
        value = Decimal(text) * factor
    except InvalidOperation:
        raise CellError("bad_number", f"{cell!r} is not a number") from None
    if not value.is_finite():
        raise CellError("bad_number", f"{cell!r} is not a number")
    return value


def _float(column: Column, cell: Cell, mapping: ColumnMapping) -> float:
    value = float(_number(cell))
    _check_range(column, value)
    return value


def _integer(column: Column, cell: Cell, mapping: ColumnMapping) -> int:
    value = _number(cell)
    if value != value.to_integral_value():
        raise CellError("bad_number", f"{cell!r} is not a whole number")
    _check_range(column, float(value))
    return int(value)


def _check_range(column: Column, value: float) -> None:
    low, high = column.minimum, column.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        lowest = "" if low is None else f"{low:g}"
        highest = "" if high is None else f"{high:g}"
        raise CellError("out_of_range", f"{value:g} is outside {lowest}..{highest}")


def _boolean(column: Column, cell: Cell, mapping: ColumnMapping) -> bool:
    if isinstance(cell, bool):
        return cell
    text = _plain_text(cell).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise CellError("bad_boolean", f"{text!r} is not true or false (是/否)")


def _date(column: Column, cell: Cell, mapping: ColumnMapping) -> dt.date:
    if isinstance(cell, dt.datetime):
        return cell.date()
    if isinstance(cell, dt.date):
        return cell
    text = _plain_text(cell).strip()
    formats = (*DATE_FORMATS, *mapping.document.date_formats)
    parsed = _try_formats(text, formats) or _try_datetime(text, mapping)
    if parsed is None:
        raise CellError("bad_date", f"{text!r} is not a date like 2026-03-31")
    return parsed if not isinstance(parsed, dt.datetime) else parsed.date()


def _datetime(column: Column, cell: Cell, mapping: ColumnMapping) -> dt.datetime:
    zone = mapping.zone
    if isinstance(cell, dt.datetime):
        return _in_utc(cell, zone)
    if isinstance(cell, dt.date):
        return _in_utc(dt.datetime.combine(cell, dt.time()), zone)
    text = _plain_text(cell).strip()
    parsed = _try_datetime(text, mapping)
    if parsed is None:
        day = _try_formats(text, (*DATE_FORMATS, *mapping.document.date_formats))
        if day is None:
            raise CellError(
                "bad_datetime",
                f"{text!r} is not a date-time like 2026-03-31T14:30:00+08:00",
            )
        parsed = dt.datetime.combine(day, dt.time())
    return _in_utc(parsed, zone)


def _try_datetime(text: str, mapping: ColumnMapping) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        pass
    for pattern in (*DATETIME_FORMATS, *mapping.document.datetime_formats):
        try:
            return dt.datetime.strptime(text, pattern)
        except ValueError:
            continue
    return None


def _try_formats(text: str, formats: tuple[str, ...]) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    for pattern in formats:
        try:
            return dt.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return None


def _in_utc(value: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


_PARSERS: dict[Kind, Callable[[Column, Cell, ColumnMapping], Any]] = {
    Kind.TEXT: _text,
    Kind.CHOICE: _choice,
    Kind.DECIMAL: _decimal,
    Kind.FLOAT: _float,
    Kind.INTEGER: _integer,
    Kind.BOOLEAN: _boolean,
    Kind.DATE: _date,
    Kind.DATETIME: _datetime,
}


def format_value(kind: Kind, value: Any) -> Cell:
    """Return the cell that stands for ``value`` in an exported file."""
    if value is None:
        return None
    if kind is Kind.DECIMAL:
        return Decimal(value).quantize(CENT)
    if kind is Kind.DATETIME:
        return as_utc(value)
    if kind in (Kind.TEXT, Kind.CHOICE):
        return str(value)
    cell: Cell = value
    return cell
