"""A list of users to act on, from a CSV file or a plain list of UPNs (one per line).

Accepted input (specs/cli.md): UTF-8 with an optional BOM, CRLF or LF line ends, trailing blank
lines. Either a header line with a ``UserPrincipalName`` column (case-insensitive, anywhere among
other columns, quoted CSV allowed) followed by one record per line, or — when the first line
holds an ``@`` and no comma — one UPN per line with no header.

Structural problems (wrong header, a blank line between records, broken quoting, not UTF-8, too
large) reject the whole input with an error naming the line, so that nothing is half-applied.
Problems of one row (an empty or malformed UPN, a duplicate) are results of that row.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Final

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.principals import normalize_upn

MAX_CSV_BYTES: Final = 50 * 1024 * 1024
UPN_COLUMN: Final = "UserPrincipalName"
MAX_UPN_LENGTH: Final = 256
STORED_UPN_LENGTH: Final = 512
_UPN: Final = re.compile(r"[^\s@/\\\x00-\x1f\x7f]{1,128}@[^\s@/\\\x00-\x1f\x7f]{1,127}")
_BOM: Final = b"\xef\xbb\xbf"
_CODE: Final = "invalidCsv"


@dataclass(frozen=True, slots=True)
class UserRow:
    """One record of the input: its physical line number (1-based, header included) and UPN.

    ``duplicate_of`` is the line of an earlier row naming the same user (case-insensitive);
    ``error`` says why the row cannot name a user at all (empty or malformed UPN).
    """

    line_no: int
    upn: str
    duplicate_of: int | None = None
    error: str | None = None


def size_error(size: int, max_bytes: int = MAX_CSV_BYTES) -> InvalidInput:
    return InvalidInput(
        f"the input exceeds the limit of {max_bytes:,} bytes ({max_bytes // (1024 * 1024)} MB): "
        f"it has at least {size:,} bytes; split it into smaller files",
        code="csvTooLarge",
    )


def parse_user_csv(data: bytes, *, max_bytes: int = MAX_CSV_BYTES) -> list[UserRow]:
    """Rows of ``data`` in input order, or InvalidInput naming the offending line."""
    if len(data) > max_bytes:
        raise size_error(len(data), max_bytes)
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    last_line = 0
    try:
        for fields in reader:
            records.append((last_line + 1, fields))
            last_line = reader.line_num
    except csv.Error as exc:
        raise InvalidInput(f"line {reader.line_num}: malformed CSV: {exc}", code=_CODE) from exc
    # Trailing blank lines are allowed: drop them before any other check.
    while records and _is_blank(records[-1][1]):
        records.pop()
    if not records:
        raise InvalidInput(
            f"the input is empty: expected a {UPN_COLUMN} header or one UPN per line", code=_CODE
        )
    first_line = text.split("\n", 1)[0].split("\r", 1)[0]
    if _is_blank(records[0][1]):
        raise InvalidInput(
            f"line 1: blank line before the first record; the first line must be the "
            f"{UPN_COLUMN} header or a UPN",
            code=_CODE,
        )
    if "@" in first_line and "," not in first_line:
        return _finish(_plain_list(records))
    return _finish(_with_header(records))


def _decode(data: bytes) -> str:
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInput(
            f"line {line}: not UTF-8 (byte {data[exc.start]:#04x}); save the file as UTF-8", code=_CODE
        ) from exc


def _is_blank(fields: list[str]) -> bool:
    return all(not f.strip() for f in fields)


def _blank_between(line_no: int) -> InvalidInput:
    return InvalidInput(
        f"line {line_no}: blank line between records (only trailing blank lines are allowed)", code=_CODE
    )


def _plain_list(records: list[tuple[int, list[str]]]) -> list[tuple[int, str]]:
    rows: list[tuple[int, str]] = []
    for line_no, fields in records:
        if _is_blank(fields):
            raise _blank_between(line_no)
        values = [f for f in fields if f.strip()]
        if len(values) != 1:
            raise InvalidInput(
                f"line {line_no}: a plain list has one UPN per line, found {len(values)} fields "
                f"(for a CSV, start with a {UPN_COLUMN} header line)",
                code=_CODE,
            )
        rows.append((line_no, values[0]))
    return rows


def _with_header(records: list[tuple[int, list[str]]]) -> list[tuple[int, str]]:
    header_line, header = records[0]
    names = [h.strip().strip("\ufeff").casefold() for h in header]
    matches = [i for i, name in enumerate(names) if name == UPN_COLUMN.casefold()]
    if not matches:
        found = ", ".join(repr(h.strip())[:60] for h in header[:10])
        raise InvalidInput(
            f"line {header_line}: wrong header: expected a {UPN_COLUMN} column (or one UPN per line "
            f"without a header), found {found}",
            code=_CODE,
        )
    if len(matches) > 1:
        raise InvalidInput(f"line {header_line}: the {UPN_COLUMN} column appears twice", code=_CODE)
    column = matches[0]
    rows: list[tuple[int, str]] = []
    for line_no, fields in records[1:]:
        if _is_blank(fields):
            raise _blank_between(line_no)
        if column >= len(fields):
            raise InvalidInput(
                f"line {line_no}: {len(fields)} field(s), but {UPN_COLUMN} is column {column + 1} "
                f"of the header",
                code=_CODE,
            )
        rows.append((line_no, fields[column]))
    return rows


def _finish(raw: list[tuple[int, str]]) -> list[UserRow]:
    rows: list[UserRow] = []
    first_seen: dict[str, int] = {}
    for line_no, value in raw:
        upn = value.strip()
        error = upn_problem(upn)
        if error is not None:
            rows.append(UserRow(line_no, upn[:STORED_UPN_LENGTH], error=error))
            continue
        key = normalize_upn(upn)
        seen = first_seen.setdefault(key, line_no)
        rows.append(UserRow(line_no, upn, duplicate_of=None if seen == line_no else seen))
    return rows


def upn_problem(upn: str) -> str | None:
    """Why ``upn`` cannot be a user principal name, or None."""
    if not upn:
        return f"empty {UPN_COLUMN}"
    if len(upn) > MAX_UPN_LENGTH:
        return f"not a valid user principal name (longer than {MAX_UPN_LENGTH} characters)"
    if not _UPN.fullmatch(upn):
        return "not a valid user principal name"
    return None
