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
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.hashing import Pepper, SecretHasher
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.ports.signals import SigningKey
from tokenwarden.services.common import OPERATOR, audit

log = logging.getLogger(__name__)

KEYS_INFO: Final = b"tokenwarden signing keys"
AUTH_HEADER_INFO: Final = b"tokenwarden ssf authorization headers"
RS256: Final = "RS256"
ES256: Final = "ES256"  # access tokens (RFC 9068): the JWS algorithm every JWT library verifies
EDDSA: Final = "EdDSA"
ED25519: Final = "Ed25519"  # the fully-specified name of RFC 9864 (joserfc warns on EdDSA)
_NONCE: Final = 12

Key = RSAKey | OKPKey | ECKey
ACTIVE_TTL_SECONDS: Final = 30.0  # how long a node signs with a key before re-reading which is active


@dataclass(frozen=True, slots=True)
class _Algorithm:
    generate: Callable[[], Key]
    load: Callable[[bytes], Key]


_ALGORITHMS: Final[dict[str, _Algorithm]] = {
    RS256: _Algorithm(
        generate=lambda: RSAKey.generate_key(2048, private=True),
        load=lambda pem: RSAKey.import_key(pem),
    ),
    ES256: _Algorithm(
        generate=lambda: ECKey.generate_key("P-256", private=True),
        load=lambda pem: ECKey.import_key(pem),
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
        rotate_every: dict[str, tuple[timedelta, timedelta]] | None = None,
    ) -> None:
        self._uow = uow
        self._reader = reader or uow
        # alg -> (rotate when the active key is this old, keep the old one published this long)
        self._rotate_every = rotate_every or {}
        self._due: set[str] = set()
        self._box = SecretBox(hasher, KEYS_INFO)
        self._clock = clock
        self._active: dict[str, tuple[float, str, Key]] = {}
        self._public: dict[str, Key] = {}
        self._public_loaded = float("-inf")
        self._lock = threading.Lock()

    def active(self, alg: str = RS256) -> tuple[str, Key]:
        """(kid, private key) used to sign with ``alg``; created and stored when there is none.
        Re-read every ACTIVE_TTL_SECONDS, so a rotation on one node reaches every node."""
        found = self._active.get(alg)
        now = time.monotonic()
        if found is not None and now - found[0] < ACTIVE_TTL_SECONDS:
            return found[1], found[2]
        if alg not in _ALGORITHMS:
            raise InvalidInput(f"unsupported signing algorithm {alg!r}")
        with self._lock:
            found = self._active.get(alg)
            if found is None or now - found[0] >= ACTIVE_TTL_SECONDS:
                kid, key, created_at = self._load_or_create(alg)
                found = (now, kid, key)
                self._active[alg] = found
                schedule = self._rotate_every.get(alg)
                if schedule is not None and self._clock.now() - created_at >= schedule[0]:
                    self._due.add(alg)
            return found[1], found[2]

    def rotate_if_due(self, alg: str) -> str | None:
        """Rotate ``alg``'s key when the schedule says so (noticed on the periodic re-read); the
        new kid, or None. Call it outside any unit of work: it writes in its own."""
        self.active(alg)
        if alg not in self._due:
            return None
        self._due.discard(alg)
        kid, retired = self.rotate(alg, self._rotate_every[alg][1])
        log.info("scheduled rotation of %s signing key: %s replaces %s", alg, kid, ", ".join(retired))
        return kid

    def public_key(self, kid: str) -> Key | None:
        """The public key ``kid`` among the published ones (active or retiring); re-read from
        the database when unknown, at most once a second (a key rotated in on another node)."""
        key = self._public.get(kid)
        if key is not None:
            return key
        now = time.monotonic()
        with self._lock:
            if kid not in self._public and now - self._public_loaded >= 1.0:
                with self._reader() as uow:
                    stored = uow.signals.published_keys(self._clock.now())
                self._public = {k.kid: _import_public(k.public_jwk) for k in stored}
                self._public_loaded = now
            return self._public.get(kid)

    def rotate(self, alg: str, keep_published_for: timedelta) -> tuple[str, list[str]]:
        """Make a new active key for ``alg``; the previous ones stop signing and stay published
        (so what they signed still verifies) for ``keep_published_for``. Returns (new kid,
        retired kids)."""
        if alg not in _ALGORITHMS:
            raise InvalidInput(f"unsupported signing algorithm {alg!r}")
        now = self._clock.now()
        with self._uow() as uow:
            old = [k.kid for k in uow.signals.signing_keys(alg)]
            for kid in old:
                uow.signals.retire_key(kid, now + keep_published_for)
            kid, key, record = self._new_key(alg)
            uow.signals.add_key(record)
            audit(
                uow,
                self._clock,
                OPERATOR,
                AuditEventType.SIGNING_KEY_ROTATE,
                org_id=None,
                target_type="signingKey",
                target_id=kid,
                details={
                    "alg": alg,
                    "retired": old,
                    "publishedUntil": (now + keep_published_for).isoformat(),
                },
            )
            uow.commit()
        with self._lock:
            self._active[alg] = (time.monotonic(), kid, key)
            self._public_loaded = float("-inf")
        log.info("rotated %s signing key: %s active, %s retiring", alg, kid, ", ".join(old) or "none")
        return kid, old

    def published(self) -> list[SigningKey]:
        """Every published key (active and retiring), oldest first; private halves stay sealed."""
        with self._reader() as uow:
            return uow.signals.published_keys(self._clock.now())

    def sign(self, claims: dict[str, Any], *, typ: str, alg: str = RS256) -> str:
        """A compact JWS of ``claims`` with header ``alg``, ``typ`` and ``kid``."""
        kid, key = self.active(alg)
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
        return jws.serialize_compact({"alg": alg, "typ": typ, "kid": kid}, payload, key, algorithms=[alg])

    def jwks(self) -> dict[str, Any]:
        """Every active public key, as a JWK Set (creates the RS256 key on first use)."""
        self.active(RS256)
        # Ed25519 keys sign audit checkpoints only: kept out of the set token verifiers trust.
        return {"keys": [dict(k.public_jwk) for k in self.published() if k.alg != ED25519]}

    # ------------------------------------------------------------------ helpers
    def _load_or_create(self, alg: str) -> tuple[str, Key, datetime]:
        # The periodic re-read is a read: on SQLite a read-write unit of work would queue for the
        # write lock (behind every token request of every process) while holding self._lock.
        with self._reader() as uow:
            found = self._newest_usable(uow, alg)
        if found is not None:
            return found
        with self._uow() as uow:
            found = self._newest_usable(uow, alg)  # another node may have made one meanwhile
            if found is not None:
                return found
            kid, key, record = self._new_key(alg)
            uow.signals.add_key(record)
            uow.commit()
        log.info("created %s signing key %s", alg, kid)
        return kid, key, record.created_at

    def _newest_usable(self, uow: UnitOfWork, alg: str) -> tuple[str, Key, datetime] | None:
        for stored in reversed(uow.signals.signing_keys(alg)):  # the newest active key signs
            try:
                pem = self._box.open(stored.pepper_id, stored.private_key, stored.kid.encode())
            except InvalidInput as exc:
                log.warning("signing key %s cannot be opened (%s); skipping it", stored.kid, exc.message)
                continue
            return stored.kid, _ALGORITHMS[alg].load(pem), stored.created_at
        return None

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


def _import_public(jwk: dict[str, Any]) -> Key:
    kty = jwk.get("kty")
    if kty == "EC":
        return ECKey.import_key(jwk)
    if kty == "OKP":
        return OKPKey.import_key(jwk)
    return RSAKey.import_key(jwk)
