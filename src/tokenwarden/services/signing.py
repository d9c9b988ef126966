"""Signing keys and sealed secrets, both under keys derived from the current pepper.

A key pair per algorithm is created on first use and stored in the database; its private half
is encrypted with AES-256-GCM under ``HKDF-SHA256(pepper, info=b"tokenwarden signing keys")``
and bound to its kid (associated data). Every node of a deployment shares the keys through the
database; JWKS publishes every active key, so a SET signed by any of them verifies. The key
store is generic over the algorithm (``RS256`` for SETs; ``EdDSA`` is ready for access tokens).

Private keys never leave this module: not in logs, errors or reprs.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jws
from joserfc.jwk import OKPKey, RSAKey

from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.hashing import Pepper, SecretHasher
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.ports.signals import SigningKey

log = logging.getLogger(__name__)

KEYS_INFO: Final = b"tokenwarden signing keys"
AUTH_HEADER_INFO: Final = b"tokenwarden ssf authorization headers"
RS256: Final = "RS256"
EDDSA: Final = "EdDSA"
ED25519: Final = "Ed25519"  # the fully-specified name of RFC 9864 (joserfc warns on EdDSA)
_NONCE: Final = 12

Key = RSAKey | OKPKey


@dataclass(frozen=True, slots=True)
class _Algorithm:
    generate: Callable[[], Key]
    load: Callable[[bytes], Key]


_ALGORITHMS: Final[dict[str, _Algorithm]] = {
    RS256: _Algorithm(
        generate=lambda: RSAKey.generate_key(2048, private=True),
        load=lambda pem: RSAKey.import_key(pem),
    ),
    EDDSA: _Algorithm(
        generate=lambda: OKPKey.generate_key("Ed25519", private=True),
        load=lambda pem: OKPKey.import_key(pem),
    ),
    ED25519: _Algorithm(
        generate=lambda: OKPKey.generate_key("Ed25519", private=True),
        load=lambda pem: OKPKey.import_key(pem),
    ),
}


def derive_key(pepper: Pepper, info: bytes) -> bytes:
    """A 256-bit key for one purpose, derived from a pepper (HKDF-SHA256, no salt)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(pepper.key)


class SecretBox:
    """AES-GCM under a pepper-derived key. Sealed values name their pepper, so they still open
    after a pepper rotation as long as the old pepper is kept for verification."""

    def __init__(self, hasher: SecretHasher, info: bytes) -> None:
        self._peppers = {p.id: p for p in hasher.peppers}
        self._current = hasher.peppers[0]
        self._info = info

    @property
    def current_pepper_id(self) -> str:
        return self._current.id

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(derive_key(self._current, self._info)).encrypt(nonce, plaintext, aad)

    def open(self, pepper_id: str, sealed: bytes, aad: bytes) -> bytes:
        pepper = self._peppers.get(pepper_id)
        if pepper is None:
            raise InvalidInput(f"pepper {pepper_id!r} is no longer configured", code="pepperMissing")
        try:
            return AESGCM(derive_key(pepper, self._info)).decrypt(sealed[:_NONCE], sealed[_NONCE:], aad)
        except InvalidTag as exc:
            raise InvalidInput("sealed value does not open (wrong pepper or tampered)") from exc

    def seal_text(self, text: str, aad: str) -> str:
        """``<pepper id>.<base64url>``: for secrets stored in text columns."""
        sealed = self.seal(text.encode(), aad.encode())
        return f"{self._current.id}.{base64.urlsafe_b64encode(sealed).decode()}"

    def open_text(self, value: str, aad: str) -> str:
        pepper_id, _, blob = value.partition(".")
        return self.open(pepper_id, base64.urlsafe_b64decode(blob.encode()), aad.encode()).decode()


class SigningKeys:
    """The deployment's signing keys: one active key per algorithm, made on first use."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: SecretHasher,
        clock: Clock,
        *,
        reader: UnitOfWorkFactory | None = None,
    ) -> None:
        self._uow = uow
        self._reader = reader or uow
        self._box = SecretBox(hasher, KEYS_INFO)
        self._clock = clock
        self._active: dict[str, tuple[str, Key]] = {}
        self._lock = threading.Lock()

    def active(self, alg: str = RS256) -> tuple[str, Key]:
        """(kid, private key) used to sign with ``alg``; created and stored when there is none."""
        found = self._active.get(alg)
        if found is not None:
            return found
        if alg not in _ALGORITHMS:
            raise InvalidInput(f"unsupported signing algorithm {alg!r}")
        with self._lock:
            found = self._active.get(alg) or self._load_or_create(alg)
            self._active[alg] = found
            return found

    def sign(self, claims: dict[str, Any], *, typ: str, alg: str = RS256) -> str:
        """A compact JWS of ``claims`` with header ``alg``, ``typ`` and ``kid``."""
        kid, key = self.active(alg)
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
        return jws.serialize_compact({"alg": alg, "typ": typ, "kid": kid}, payload, key, algorithms=[alg])

    def jwks(self) -> dict[str, Any]:
        """Every active public key, as a JWK Set (creates the RS256 key on first use)."""
        self.active(RS256)
        with self._reader() as uow:
            return {"keys": [dict(k.public_jwk) for k in uow.signals.signing_keys()]}

    # ------------------------------------------------------------------ helpers
    def _load_or_create(self, alg: str) -> tuple[str, Key]:
        with self._uow() as uow:
            for stored in uow.signals.signing_keys(alg):
                try:
                    pem = self._box.open(stored.pepper_id, stored.private_key, stored.kid.encode())
                except InvalidInput as exc:
                    log.warning("signing key %s cannot be opened (%s); skipping it", stored.kid, exc.message)
                    continue
                return stored.kid, _ALGORITHMS[alg].load(pem)
            kid, key, record = self._new_key(alg)
            uow.signals.add_key(record)
            uow.commit()
        log.info("created %s signing key %s", alg, kid)
        return kid, key

    def _new_key(self, alg: str) -> tuple[str, Key, SigningKey]:
        key = _ALGORITHMS[alg].generate()
        kid = key.thumbprint()
        public = {**key.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}
        pem = key.as_pem(private=True)
        record = SigningKey(
            kid=kid,
            alg=alg,
            public_jwk=public,
            private_key=self._box.seal(pem, kid.encode()),
            pepper_id=self._box.current_pepper_id,
            created_at=self._clock.now(),
        )
        return kid, key, record
