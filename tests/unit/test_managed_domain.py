"""Validation of managed credentials' names, contacts and external URLs."""

from __future__ import annotations

import pytest

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.managed import check_ado_url, check_contacts, check_credential_name


@pytest.mark.parametrize("name", ["ci-reader", "a", "Build.Agent_2", "x" * 128])
def test_good_names(name: str) -> None:
    assert check_credential_name(name) == name


@pytest.mark.parametrize("name", ["", "-lead", "has space", "slash/inside", "x" * 129, "é", "a\nb"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_credential_name(name)
    assert caught.value.code == "invalidName"


def test_contacts_are_deduplicated_case_insensitively_and_bounded() -> None:
    assert check_contacts(["Sec@Example.com", "sec@example.com", " ops@example.com "]) == (
        "Sec@Example.com",
        "ops@example.com",
    )
    with pytest.raises(InvalidInput) as caught:
        check_contacts([f"u{i}@example.com" for i in range(21)])
    assert caught.value.code == "tooManyContacts"
    with pytest.raises(InvalidInput):
        check_contacts(["not-an-address"])


def test_ado_urls() -> None:
    assert check_ado_url("https://vssps.dev.azure.com/") == "https://vssps.dev.azure.com"
    assert check_ado_url("http://127.0.0.1:8081") == "http://127.0.0.1:8081"
    for bad in (
        "ftp://x",
        "https://user:pw@host",
        "https://host/?a=1",
        "https://host/#f",
        "notaurl",
        "https://",
    ):
        with pytest.raises(InvalidInput) as caught:
            check_ado_url(bad)
        assert caught.value.code == "invalidUrl"
