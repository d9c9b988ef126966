"""The user-list parser: CSV with a UserPrincipalName column, or one UPN per line (specs/cli.md)."""

from __future__ import annotations

import time

import pytest

from tokenwarden.domain.csv_users import MAX_CSV_BYTES, UserRow, parse_user_csv
from tokenwarden.domain.errors import InvalidInput


def upns(rows: list[UserRow]) -> list[tuple[int, str]]:
    return [(r.line_no, r.upn) for r in rows]


def error_of(data: bytes) -> str:
    with pytest.raises(InvalidInput) as info:
        parse_user_csv(data)
    return info.value.message


def test_header_and_rows_with_line_numbers() -> None:
    rows = parse_user_csv(b"UserPrincipalName\nalice@acme.test\nbob@acme.test\n")
    assert upns(rows) == [(2, "alice@acme.test"), (3, "bob@acme.test")]
    assert all(r.duplicate_of is None and r.error is None for r in rows)


def test_bom_crlf_and_trailing_blank_lines() -> None:
    data = b"\xef\xbb\xbfUserPrincipalName\r\nalice@acme.test\r\nbob@acme.test\r\n\r\n\r\n"
    assert upns(parse_user_csv(data)) == [(2, "alice@acme.test"), (3, "bob@acme.test")]
    # Excel writes empty rows as a run of commas: trailing ones are blank lines too
    data = b"Name,UserPrincipalName\nAlice,alice@acme.test\n,\n,\n"
    assert upns(parse_user_csv(data)) == [(2, "alice@acme.test")]


def test_header_is_case_insensitive_anywhere_with_extra_columns_and_quotes() -> None:
    data = (
        b'DisplayName,"userprincipalname",Department\n'
        b'"Smith, Alice",alice@acme.test,"R&D"\n'
        b'"Bob ""B"" Jones","bob@acme.test",Sales\n'
        b'"Multi\nline note",carol@acme.test,Ops\n'
        b"Dan,dan@acme.test,Ops\n"
    )
    assert upns(parse_user_csv(data)) == [
        (2, "alice@acme.test"),
        (3, "bob@acme.test"),
        (4, "carol@acme.test"),  # a record spanning lines 4-5 starts on line 4
        (6, "dan@acme.test"),
    ]


def test_plain_list_of_upns_without_header() -> None:
    data = b"alice@acme.test\r\n  bob@acme.test  \ncarol@acme.test"
    assert upns(parse_user_csv(data)) == [
        (1, "alice@acme.test"),
        (2, "bob@acme.test"),
        (3, "carol@acme.test"),
    ]


def test_blank_line_between_records_names_the_line() -> None:
    message = error_of(b"UserPrincipalName\nalice@acme.test\n\nbob@acme.test\n")
    assert message.startswith("line 3: blank line between records")
    message = error_of(b"alice@acme.test\r\nbob@acme.test\r\n   \r\ncarol@acme.test\r\n")
    assert message.startswith("line 3: blank line between records")
    assert error_of(b"\nUserPrincipalName\nalice@acme.test\n").startswith("line 1: blank line")


def test_wrong_header_names_the_line_and_what_was_found() -> None:
    message = error_of(b"Email,Name\nalice@acme.test,Alice\n")
    assert message.startswith("line 1: wrong header") and "UserPrincipalName" in message
    assert "'Email'" in message
    # a CSV without header whose first row holds a comma is a wrong header, not a plain list
    assert error_of(b"alice@acme.test,Alice\n").startswith("line 1: wrong header")
    assert error_of(b"UPN\nalice@acme.test\n").startswith("line 1: wrong header")
    assert "appears twice" in error_of(b"UserPrincipalName,userPrincipalName\na@b.c,a@b.c\n")


def test_structural_errors_name_the_line() -> None:
    assert error_of(b"UserPrincipalName\nalice@acme.test\n\xff\xfe\n").startswith("line 3: not UTF-8")
    assert error_of(b'UserPrincipalName\n"alice@acme.test\n').startswith("line ")
    assert error_of(b'UserPrincipalName\nalice@acme.test\n"bob"x@acme.test\n').startswith("line 3: malformed")
    short = error_of(b"Name,UserPrincipalName\nAlice,alice@acme.test\nBob\n")
    assert short.startswith("line 3: 1 field(s)")
    assert "one UPN per line" in error_of(b"alice@acme.test\nbob@acme.test,x\n")
    assert error_of(b"").startswith("the input is empty")
    assert error_of(b"\r\n\r\n").startswith("the input is empty")


def test_duplicates_are_case_insensitive_and_point_to_the_first_line() -> None:
    rows = parse_user_csv(
        b"UserPrincipalName\nalice@acme.test\nbob@acme.test\nALICE@Acme.Test\nalice@acme.test\n"
    )
    assert [(r.line_no, r.duplicate_of) for r in rows] == [(2, None), (3, None), (4, 2), (5, 2)]


def test_row_problems_are_row_results_not_errors() -> None:
    rows = parse_user_csv(b'Name,UserPrincipalName\nA,\nB,not-an-upn\nC,"a b@acme.test"\nD,d@acme.test\n')
    assert [(r.line_no, r.error) for r in rows] == [
        (2, "empty UserPrincipalName"),
        (3, "not a valid user principal name"),
        (4, "not a valid user principal name"),
        (5, None),
    ]
    long_upn = "x" * 300 + "@acme.test"
    (row,) = parse_user_csv(f"UserPrincipalName\n{long_upn}\n".encode())
    assert row.error is not None and "longer than 256" in row.error


def test_header_only_is_an_empty_list() -> None:
    assert parse_user_csv(b"UserPrincipalName\r\n") == []


def test_fifty_megabytes_plus_one_byte_is_rejected_quickly() -> None:
    data = b"UserPrincipalName\n" + b"a" * (MAX_CSV_BYTES + 1 - len(b"UserPrincipalName\n"))
    assert len(data) == MAX_CSV_BYTES + 1
    started = time.perf_counter()
    message = error_of(data)
    assert time.perf_counter() - started < 0.1
    assert "52,428,801 bytes" in message and "50 MB" in message


def test_a_large_file_under_the_limit_parses() -> None:
    lines = [f"user{i}@acme.test" for i in range(100_000)]
    data = ("UserPrincipalName\r\n" + "\r\n".join(lines) + "\r\n").encode()
    rows = parse_user_csv(data)
    assert len(rows) == 100_000 and rows[-1] == UserRow(100_001, "user99999@acme.test")
