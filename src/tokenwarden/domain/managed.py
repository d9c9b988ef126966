"""Managed credentials (issue 13): a credential bound to a secret store and rotated before it
expires. Pure data and validation; the rotation service and its journal build on it."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.policies import check_email
from tokenwarden.domain.rotation import RotationSettings

MAX_NAME = 128
MAX_CONTACTS = 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SourceKind(StrEnum):
    LOCAL = "local"  # a tokenwarden PAT
    ADO = "ado"  # a PAT on an external Azure DevOps-compatible server (PAT Lifecycle API)


class StoreKind(StrEnum):
    BUILTIN = "builtin"
    VAULT = "vault"
    AWS = "aws"
    AZURE_KEYVAULT = "azure-keyvault"
    FILE = "file"


class CredentialStatus(StrEnum):
    ACTIVE = "active"
    FAILING = "failing"  # the last rotation failed; retried, contacts alerted
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class ManagedCredential:
    id: str
    org_id: str
    name: str
    source: SourceKind
    authorization_id: str  # the credential in service now
    display_base: str
    scopes: tuple[str, ...]
    store: StoreKind
    secret_name: str  # logical; the store maps it to its own alphabet
    store_secret_name: str
    rotation: RotationSettings
    created_at: datetime
    updated_at: datetime
    user_id: str | None = None
    valid_to: datetime | None = None
    ado_url: str | None = None
    ado_org: str | None = None
    contacts: tuple[str, ...] = ()
    version: int = 0
    status: CredentialStatus = CredentialStatus.ACTIVE
    failures: int = 0
    last_error: str | None = None
    last_rotated_at: datetime | None = None
    next_attempt_at: datetime | None = None
    created_by: str | None = None


def check_credential_name(name: str) -> str:
    """1-128 characters: letters, digits, ``_ . -``, starting with a letter or digit (it is
    used in URLs: ``/api/v1/secrets/{name}``)."""
    if not name or len(name) > MAX_NAME or not _NAME.match(name):
        raise InvalidInput(
            f"a managed credential's name is 1-{MAX_NAME} letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            code="invalidName",
        )
    return name


def check_contacts(contacts: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Alert contacts: distinct email addresses, at most 20."""
    seen: dict[str, str] = {}
    for raw in contacts:
        address = check_email(raw.strip(), "contact")
        seen.setdefault(address.casefold(), address)
    if len(seen) > MAX_CONTACTS:
        raise InvalidInput(f"at most {MAX_CONTACTS} contacts", code="tooManyContacts")
    return tuple(seen.values())


def check_ado_url(url: str) -> str:
    """An http(s) base URL without credentials, query or fragment (the PAT Lifecycle API is at
    ``{url}/{org}/_apis/tokens/pats``)."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
        if host is not None:
            host.encode("idna")
    except (ValueError, UnicodeError):
        parts, host, port = None, None, None
    if (
        parts is None
        or not url.isascii()
        or host is None
        or port == 0
        or parts.scheme not in ("https", "http")
        or parts.username
        or parts.password
        or parts.query
        or parts.fragment
        or any(unicodedata.category(ch).startswith("C") for ch in url)
    ):
        raise InvalidInput(
            "the Azure DevOps URL is an http(s) base URL without credentials, query or fragment "
            "(e.g. https://vssps.dev.azure.com)",
            code="invalidUrl",
        )
    return url.strip().rstrip("/")
