"""Cells of the CSV files tokenwarden writes (audit export, bulk job results).

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some programs,
one that starts with a tab or a carriage return) as a formula: a UPN or a display name chosen by
an attacker would run on an administrator's machine (OWASP "CSV injection"). Such a cell gets a
leading ``'``, which spreadsheets hide and which keeps the text as text.
"""

from __future__ import annotations

from typing import Final

FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """``value`` as a CSV cell that no spreadsheet evaluates; non-strings are left alone."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
