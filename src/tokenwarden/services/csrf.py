"""CSRF form tokens: bound to a browser's pre-session cookie, verifiable on every node."""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from tokenwarden.domain.hashing import SecretHasher
from tokenwarden.services.signing import derive_key

CSRF_INFO: Final = b"tokenwarden csrf tokens"


class CsrfSigner:
    """Form tokens bound to a browser's pre-session cookie: HMAC-SHA256 of the cookie value under
    a key derived from the pepper (every node derives the same one). Tokens made under a retired
    pepper still verify while it is configured."""

    def __init__(self, hasher: SecretHasher) -> None:
        self._keys = [derive_key(p, CSRF_INFO) for p in hasher.peppers]

    def sign(self, cookie_value: str) -> str:
        return self._mac(self._keys[0], cookie_value)

    def verify(self, cookie_value: str, token: str) -> bool:
        if not token.isascii():
            return False
        return any(hmac.compare_digest(self._mac(key, cookie_value), token) for key in self._keys)

    @staticmethod
    def _mac(key: bytes, value: str) -> str:
        return hmac.new(key, b"tw-csrf-v1|" + value.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
