"""The local token source (issue 13): a managed credential whose token is a tokenwarden PAT.

Creation goes through :class:`PatService` (policy, audit, Security Events as for any PAT) on
behalf of the credential's owner; the rotation service acts as the operator, so a successor
gets exactly the predecessor's scopes and organization — never more.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import DomainError, Unavailable
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.ports.token_sources import SourceToken, TokenSourceError
from tokenwarden.services.common import Actor, reading
from tokenwarden.services.pats import PatService

ROTATION = Actor(user_id=None, upn="tokenwarden-rotation")


def _source_token(record: TokenRecord, secret: str | None = None) -> SourceToken:
    return SourceToken(
        authorization_id=record.authorization_id,
        display_name=record.display_name,
        scopes=record.scopes,
        valid_from=record.valid_from,
        valid_to=record.valid_to,
        secret=secret,
        revoked=record.revoked_at is not None,
    )


class LocalPatSource:
    """The PATs of one user in one organization."""

    kind = "local"

    def __init__(
        self, pats: PatService, uow: UnitOfWorkFactory, clock: Clock, *, org_id: str, user_id: str
    ) -> None:
        self._pats = pats
        self._uow = uow
        self._clock = clock
        self._org_id = org_id
        self._user_id = user_id

    def _own(self, record: TokenRecord | None) -> TokenRecord | None:
        if (
            record is None
            or record.kind is not TokenKind.PAT
            or record.user_id != self._user_id
            or record.org_id != self._org_id
        ):
            return None
        return record

    def get(self, authorization_id: str) -> SourceToken | None:
        with reading(self._uow) as uow:
            record = self._own(uow.tokens.get(authorization_id))
        return None if record is None else _source_token(record)

    def create(self, display_name: str, scopes: Sequence[str], valid_to: datetime) -> SourceToken:
        try:
            issued = self._pats.create(
                ROTATION,
                org=self._org_id,
                user=self._user_id,
                display_name=display_name,
                scope=list(scopes),
                valid_to=valid_to,
            )
        except Unavailable as exc:  # the database: nothing committed, or recovery finds it by name
            raise TokenSourceError(
                f"tokenwarden could not create the successor: {exc}", transient=True
            ) from exc
        except DomainError as exc:  # policy, a disabled owner, ...: the source refused
            raise TokenSourceError(f"tokenwarden refused the successor: {exc}", code=exc.code) from exc
        return _source_token(issued.record, issued.secret)

    def find_by_display_name(self, display_name: str) -> list[SourceToken]:
        now = self._clock.now()
        with reading(self._uow) as uow:
            records = uow.tokens.list_for_user(self._user_id, TokenKind.PAT)
        return [
            _source_token(r)
            for r in records
            if r.org_id == self._org_id
            and r.display_name == display_name
            and r.revoked_at is None
            and r.valid_to > now
        ]

    def revoke(self, authorization_id: str, reason: str | None = None) -> bool:
        with reading(self._uow) as uow:
            record = self._own(uow.tokens.get(authorization_id))
        if record is None or record.revoked_at is not None:
            return False
        self._pats.revoke(ROTATION, authorization_id, reason=reason)
        return True
