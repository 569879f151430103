"""Tabular files: CSV (UTF-8 or GBK, detected) and XLSX, read and written.

Reading yields a header and numbered rows of raw cells; writing takes rows
of already formatted cells. Text cells that a spreadsheet would run as a
formula are neutralised on the way out (a leading single quote) and restored
on the way in, so an exported file imports back to the same values.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import PurePath
from typing import IO, Any

import charset_normalizer
from openpyxl import Workbook, load_workbook
from openpyxl.utils.exceptions import IllegalCharacterError, InvalidFileException

from waggle.core.errors import InvalidInput

FORMATS = ("csv", "xlsx")
ENCODINGS = ("utf-8", "utf-8-sig", "gbk", "gb18030")
Cell = str | int | float | bool | Decimal | dt.date | dt.datetime | None

# Characters that make a spreadsheet treat a cell as a formula (OWASP list).
_FORMULA_START = "=+-@\t\r"
# One or more quotes then a formula character: exactly the values that gain
# (on export) or lose (on import) one leading quote, which makes the two
# operations inverse to each other.
_QUOTED_FORMULA = re.compile(r"'+[" + re.escape(_FORMULA_START) + "]")
_XLSX_MAGIC = b"PK\x03\x04"


@dataclass
class Table:
    """A file opened for import: its header and its numbered data rows."""

    header: list[str]
    rows: Iterator[tuple[int, list[Cell]]]
    file_format: str
    encoding: str | None
    row_estimate: int | None


def neutralize(value: str) -> str:
    """Return ``value`` safe for a spreadsheet cell (a leading quote if needed)."""
    if value and (value[0] in _FORMULA_START or _QUOTED_FORMULA.match(value)):
        return "'" + value
    return value


def restore(value: str) -> str:
    """Undo :func:`neutralize`: drop the quote it would have added."""
    return value[1:] if _QUOTED_FORMULA.match(value) else value


def guess_format(filename: str, data: bytes | None = None) -> str:
    """Return ``csv`` or ``xlsx`` from the file name, else from the content."""
    suffix = PurePath(filename).suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix
    if data is not None and data.startswith(_XLSX_MAGIC):
        return "xlsx"
    return "csv"


def detect_encoding(data: bytes) -> str:
    """Return the encoding of CSV bytes: UTF-8 (with or without BOM) or GBK.

    Strict UTF-8 is tried first because GBK text is almost never valid UTF-8,
    while UTF-8 text often decodes as (wrong) GBK. GB18030 covers characters
    beyond GBK; other encodings are named by charset detection.

    Raises:
        InvalidInput: the bytes are in none of the supported encodings.
    """
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    for encoding in ("utf-8", "gbk", "gb18030"):
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    best = charset_normalizer.from_bytes(data).best()
    if best is not None and best.encoding in {"utf_16", "utf_32", "big5"}:
        return best.encoding
    raise InvalidInput(
        "file: the text is neither UTF-8 nor GBK/GB18030; save it as UTF-8 CSV"
    )


def read_table(data: bytes, *, filename: str, file_format: str | None = None) -> Table:
    """Open CSV or XLSX bytes for reading.

    Row numbers are those a spreadsheet shows: the header is row 1. Blank
    rows are skipped (they hold nothing to import).

    Raises:
        InvalidInput: unknown format, undecodable text, damaged workbook or
            a file without a header row.
    """
    chosen = file_format or guess_format(filename, data)
    if chosen not in FORMATS:
        raise InvalidInput(
            f"{filename}: format {chosen!r} is not supported, expected csv or xlsx"
        )
    table = _read_csv(data, filename) if chosen == "csv" else _read_xlsx(data, filename)
    if not any(table.header):
        raise InvalidInput(f"{filename}: the first row must hold the column names")
    return table


def _read_csv(data: bytes, filename: str) -> Table:
    encoding = detect_encoding(data)
    text = data.decode(encoding)
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    header = [cell.strip() for cell in next(reader, [])]
    estimate = max(text.count("\n") - 1, 0)
    return Table(
        header=header,
        rows=_csv_rows(reader, filename),
        file_format="csv",
        encoding=_encoding_label(encoding),
        row_estimate=estimate,
    )


def _delimiter(text: str) -> str:
    """Pick the separator the header line uses most: comma, semicolon or tab."""
    first_line = text.split("\n", 1)[0]
    return max(",;\t", key=first_line.count)


def _csv_rows(reader: Any, filename: str) -> Iterator[tuple[int, list[Cell]]]:
    try:
        # Numbered as a spreadsheet shows them: a record spanning several
        # lines (a quoted line break) is still one row.
        for number, cells in enumerate(reader, start=2):
            if any(cell.strip() for cell in cells):
                yield number, [restore(cell) for cell in cells]
    except csv.Error as exc:
        raise InvalidInput(
            f"{filename}: CSV is damaged near line {reader.line_num} ({exc})"
        ) from exc


def _encoding_label(encoding: str) -> str:
    return {"utf-8-sig": "utf-8-bom", "utf_16": "utf-16", "utf_32": "utf-32"}.get(
        encoding, encoding
    )


def _read_xlsx(data: bytes, filename: str) -> Table:
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise InvalidInput(f"{filename}: not a readable XLSX workbook ({exc})") from exc
    sheet = workbook.worksheets[0]
    values = sheet.iter_rows(values_only=True)
    first = next(values, ())
    header = ["" if cell is None else str(cell).strip() for cell in first]
    estimate = sheet.max_row - 1 if sheet.max_row else None
    return Table(
        header=header,
        rows=_xlsx_rows(values, workbook, len(header)),
        file_format="xlsx",
        encoding=None,
        row_estimate=estimate,
    )


def _xlsx_rows(
    values: Iterator[tuple[Any, ...]], workbook: Any, width: int
) -> Iterator[tuple[int, list[Cell]]]:
    try:
        for number, cells in enumerate(values, start=2):
            row = [restore(cell) if isinstance(cell, str) else cell for cell in cells]
            if any(_has_value(cell) for cell in row):
                # Read-only sheets drop trailing empty cells; give them back.
                yield number, row + [None] * (width - len(row))
    finally:
        workbook.close()


def _has_value(cell: Cell) -> bool:
    return cell is not None and not (isinstance(cell, str) and not cell.strip())


def write_table(
    target: IO[bytes],
    header: list[str],
    rows: Iterable[list[Cell]],
    *,
    file_format: str,
    encoding: str = "utf-8-sig",
) -> int:
    """Write ``header`` and ``rows`` to ``target``; return the number of rows.

    CSV cells are written as text (``encoding`` ``gbk`` writes GB18030, the
    superset of GBK, so no character is lost); XLSX keeps numbers, booleans
    and dates typed. Text is neutralised against formula injection.

    Raises:
        InvalidInput: unknown format or encoding, or a value XLSX cannot hold.
    """
    if file_format == "csv":
        return _write_csv(target, header, rows, encoding)
    if file_format == "xlsx":
        return _write_xlsx(target, header, rows)
    raise InvalidInput(f"export: format {file_format!r} is unknown, use csv or xlsx")


def _write_csv(
    target: IO[bytes], header: list[str], rows: Iterable[list[Cell]], encoding: str
) -> int:
    codec = {"gbk": "gb18030", "utf-8-bom": "utf-8-sig"}.get(encoding, encoding)
    if codec not in ENCODINGS:
        raise InvalidInput(
            f"export: encoding {encoding!r} is unknown, use utf-8, utf-8-sig or gbk"
        )
    stream = io.TextIOWrapper(target, encoding=codec, newline="", write_through=True)
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow([neutralize(name) for name in header])
    count = 0
    for row in rows:
        writer.writerow([_csv_text(cell) for cell in row])
        count += 1
    stream.flush()
    stream.detach()
    return count


def _csv_text(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, dt.datetime | dt.date):
        return cell.isoformat()
    return neutralize(str(cell))


def _write_xlsx(
    target: IO[bytes], header: list[str], rows: Iterable[list[Cell]]
) -> int:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append([neutralize(name) for name in header])
    count = 0
    for row in rows:
        try:
            sheet.append([_xlsx_value(cell) for cell in row])
        except IllegalCharacterError as exc:
            raise InvalidInput(
                f"export: row {count + 2} holds a control character XLSX cannot "
                "store; export it as CSV instead"
            ) from exc
        count += 1
    workbook.save(target)
    return count


def _xlsx_value(cell: Cell) -> Any:
    if isinstance(cell, str):
        return neutralize(cell)
    if isinstance(cell, dt.datetime):
        # Excel has no time zones: write the instant as ISO text with its offset.
        return cell.isoformat()
    return cell
