"""The built-in store: versions sealed with AES-GCM in tokenwarden's own database.

Each version is sealed under the keyring's current key with the AAD ``name/version``, so a
sealed value copied to another row does not open. Writes stage a version; ``promote`` makes it
the served one (``GET /api/v1/secrets/{name}`` and ``tokenwarden secrets get``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from tokenwarden.adapters.secrets.keyring import Keyring
from tokenwarden.adapters.sql.tables import secret_heads, secret_versions
from tokenwarden.domain.secret_names import store_name
from tokenwarden.ports.secrets import SecretMeta, SecretStoreError, StoredSecret

_NONCE = 12


class BuiltinSecretStore:
    """Secrets in the database (any node of a deployment serves them)."""

    kind = "builtin"
    staged = True

    def __init__(self, engine: Engine, keyring: Keyring) -> None:
        self._engine = engine
        self._keyring = keyring

    def secret_name(self, name: str) -> str:
        return store_name(name, allowed="A-Za-z0-9_./-", max_len=255)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise SecretStoreError(
                f"the database did not answer: {type(exc).__name__}", code="storeUnavailable", transient=True
            ) from exc

    # ------------------------------------------------------------------ sealing
    def _seal(self, sname: str, version: int, value: str) -> tuple[str, bytes]:
        kid, key = self._keyring.current
        nonce = os.urandom(_NONCE)
        return kid, nonce + AESGCM(key).encrypt(nonce, value.encode(), f"{sname}/{version}".encode())

    def _open(self, sname: str, version: int, kid: str, sealed: bytes) -> str:
        key = self._keyring.key(kid)
        if key is None:
            raise SecretStoreError(
                f"secret {sname} v{version} is sealed with key {kid!r}, which is no longer configured",
                code="secretStoreKeyMissing",
            )
        try:
            plain = AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], f"{sname}/{version}".encode())
        except InvalidTag as exc:
            raise SecretStoreError(
                f"secret {sname} v{version} does not open (tampered or wrong key)", code="secretTampered"
            ) from exc
        return plain.decode()

    # ------------------------------------------------------------------ the port
    def write(self, name: str, value: str, meta: SecretMeta) -> str:
        sname = self.secret_name(name)
        now = datetime.now(UTC)
        with self._tx() as conn:
            bumped = conn.execute(
                update(secret_heads)
                .where(secret_heads.c.name == sname)
                .values(latest_version=secret_heads.c.latest_version + 1, updated_at=now)
            ).rowcount
            if not bumped:
                conn.execute(
                    insert(secret_heads).values(
                        name=sname, current_version=None, latest_version=1, updated_at=now
                    )
                )
            number = int(
                conn.execute(
                    select(secret_heads.c.latest_version).where(secret_heads.c.name == sname)
                ).scalar_one()
            )
            kid, sealed = self._seal(sname, number, value)
            conn.execute(
                insert(secret_versions).values(
                    name=sname,
                    version=number,
                    key_id=kid,
                    sealed=sealed,
                    content_type=meta.content_type,
                    tags=dict(meta.tags),
                    expires_at=meta.expires_at,
                    created_at=now,
                    stage="pending",
                )
            )
        return str(number)

    def read(self, name: str, version: str | None = None) -> StoredSecret | None:
        sname = self.secret_name(name)
        with self._tx() as conn:
            current = conn.execute(
                select(secret_heads.c.current_version).where(secret_heads.c.name == sname)
            ).scalar_one_or_none()
            wanted = current if version is None else (int(version) if version.isdigit() else None)
            if wanted is None:
                return None
            row = conn.execute(
                select(secret_versions).where(
                    secret_versions.c.name == sname, secret_versions.c.version == wanted
                )
            ).first()
        if row is None:
            return None
        return StoredSecret(
            name=sname,
            version=str(row.version),
            value=self._open(sname, row.version, row.key_id, row.sealed),
            expires_at=row.expires_at,
            content_type=row.content_type,
            tags={str(k): str(v) for k, v in dict(row.tags or {}).items()},
            created_at=row.created_at,
            current=row.version == current,
        )

    def promote(self, name: str, version: str) -> None:
        sname = self.secret_name(name)
        if not version.isdigit():
            raise SecretStoreError(f"no version {version!r} of {sname}", code="secretVersionNotFound")
        number = int(version)
        with self._tx() as conn:
            exists = conn.execute(
                select(func.count())
                .select_from(secret_versions)
                .where(secret_versions.c.name == sname, secret_versions.c.version == number)
            ).scalar_one()
            if not exists:
                raise SecretStoreError(f"no version {version} of {sname}", code="secretVersionNotFound")
            conn.execute(
                update(secret_versions)
                .where(secret_versions.c.name == sname, secret_versions.c.stage == "current")
                .where(secret_versions.c.version != number)
                .values(stage="previous")
            )
            conn.execute(
                update(secret_versions)
                .where(secret_versions.c.name == sname, secret_versions.c.version == number)
                .values(stage="current")
            )
            conn.execute(
                update(secret_heads)
                .where(secret_heads.c.name == sname)
                .values(current_version=number, updated_at=datetime.now(UTC))
            )

    def discard(self, name: str, version: str) -> None:
        sname = self.secret_name(name)
        if not version.isdigit():
            return
        number = int(version)
        with self._tx() as conn:
            current = conn.execute(
                select(secret_heads.c.current_version).where(secret_heads.c.name == sname)
            ).scalar_one_or_none()
            gone = conn.execute(
                delete(secret_versions).where(
                    secret_versions.c.name == sname, secret_versions.c.version == number
                )
            ).rowcount
            if not gone or current != number:
                return
            earlier = conn.execute(
                select(func.max(secret_versions.c.version)).where(
                    secret_versions.c.name == sname, secret_versions.c.version < number
                )
            ).scalar_one_or_none()
            if earlier is not None:
                conn.execute(
                    update(secret_versions)
                    .where(secret_versions.c.name == sname, secret_versions.c.version == earlier)
                    .values(stage="current")
                )
            conn.execute(
                update(secret_heads)
                .where(secret_heads.c.name == sname)
                .values(current_version=earlier, updated_at=datetime.now(UTC))
            )

    def current_version(self, name: str) -> str | None:
        with self._tx() as conn:
            current = conn.execute(
                select(secret_heads.c.current_version).where(secret_heads.c.name == self.secret_name(name))
            ).scalar_one_or_none()
        return None if current is None else str(current)

    def delete(self, name: str) -> None:
        sname = self.secret_name(name)
        with self._tx() as conn:
            conn.execute(delete(secret_versions).where(secret_versions.c.name == sname))
            conn.execute(delete(secret_heads).where(secret_heads.c.name == sname))

    def check(self) -> None:
        with self._tx() as conn:
            conn.execute(select(func.count()).select_from(secret_heads))

    def rekey(self) -> int:
        """Re-seal every version not under the current key; returns how many changed."""
        kid, _ = self._keyring.current
        changed = 0
        with self._tx() as conn:
            rows = conn.execute(
                select(
                    secret_versions.c.name,
                    secret_versions.c.version,
                    secret_versions.c.key_id,
                    secret_versions.c.sealed,
                ).where(secret_versions.c.key_id != kid)
            ).all()
            for row in rows:
                plain = self._open(row.name, row.version, row.key_id, row.sealed)
                new_kid, sealed = self._seal(row.name, row.version, plain)
                conn.execute(
                    update(secret_versions)
                    .where(secret_versions.c.name == row.name, secret_versions.c.version == row.version)
                    .values(key_id=new_kid, sealed=sealed)
                )
                changed += 1
        return changed
