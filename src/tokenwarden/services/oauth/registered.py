"""The registered clients as the authorization server reads them (a lookup and the secret
check). Provisional: the client registry service supersedes it."""

from __future__ import annotations

import hmac

from tokenwarden.domain.hashing import SecretHasher
from tokenwarden.domain.oauth import OAuthClient
from tokenwarden.ports.repositories import UnitOfWorkFactory


class RegisteredClients:
    def __init__(self, reader: UnitOfWorkFactory, hasher: SecretHasher) -> None:
        self._reader = reader
        self._hasher = hasher

    def get_active(self, client_id: str) -> OAuthClient | None:
        with self._reader() as uow:
            client = uow.oauth.get_client(client_id)
        return client if client is not None and client.disabled_at is None else None

    def authenticate(self, client_id: str, client_secret: str | None) -> OAuthClient | None:
        client = self.get_active(client_id)
        if client is None:
            return None
        if client.public:
            return client if not client_secret else None
        if not client_secret or client.secret_hash is None or len(client_secret) > 512:
            return None
        candidates = [self._hasher.hash(client_secret)]
        candidates += [self._hasher.hash_with(p, client_secret) for p in self._hasher.older()]
        if any(hmac.compare_digest(c, client.secret_hash) for c in candidates):
            return client
        return None
