"""Token sources (issue 13): where a managed credential's tokens are minted and revoked.

Two implementations: the local source (tokenwarden's own PATs, in ``services``) and an external
Azure DevOps-compatible server reached through its PAT Lifecycle API
(``/{org}/_apis/tokens/pats?api-version=7.1-preview.1``) with the owner's credential
(``adapters/providers/ado.py``).

Errors: a source raises :class:`TokenSourceError`; ``transient`` ones (timeouts, connection
errors, 5xx, 429 with ``retry_after`` from ``Retry-After``) may be retried. Nothing above an
adapter sees an httpx exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tokenwarden.domain.errors import ExternalServiceError


class TokenSourceError(ExternalServiceError):
    """The source refused or failed an operation (``status``: the HTTP status, if any)."""

    default_code = "tokenSourceError"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        transient: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, transient=transient, retry_after=retry_after)
        self.status = status


@dataclass(frozen=True, slots=True)
class SourceToken:
    """A token as the source describes it. ``secret`` is set only in the answer to create()."""

    authorization_id: str
    display_name: str
    scopes: tuple[str, ...]
    valid_from: datetime | None
    valid_to: datetime
    secret: str | None = None
    revoked: bool = False


class TokenSource(Protocol):
    """Mint, look up and revoke the tokens of one owner."""

    kind: str  # local | ado

    def get(self, authorization_id: str) -> SourceToken | None:
        """The token, or None if the source has no such token for this owner."""
        ...

    def create(self, display_name: str, scopes: Sequence[str], valid_to: datetime) -> SourceToken:
        """Mint a token (its secret in the answer, once)."""
        ...

    def find_by_display_name(self, display_name: str) -> list[SourceToken]:
        """Live tokens of this owner with exactly this display name (crash recovery: a token
        created just before a crash, whose id the journal never learnt)."""
        ...

    def revoke(self, authorization_id: str, reason: str | None = None) -> bool:
        """Revoke (``reason`` where the source records one, e.g. ``compromised``); True if it
        was live, False if it was already revoked or unknown (idempotent)."""
        ...
