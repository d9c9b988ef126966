"""The built-in store's AES-GCM keys: ``id:base64`` pairs, current first.

From ``TOKENWARDEN_SECRET_STORE_KEYS`` (comma-separated) or the key file (one pair per line,
created 0600 with a fresh key on first use). Rotation: put a new pair first; older keys keep
opening what they sealed until ``tokenwarden secrets rekey`` re-seals everything.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from tokenwarden.domain.errors import InvalidInput

KEY_BYTES = 32
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Keyring:
    """Named 256-bit keys; the first seals, all open."""

    keys: tuple[tuple[str, bytes], ...]

    @property
    def current(self) -> tuple[str, bytes]:
        return self.keys[0]

    def key(self, key_id: str) -> bytes | None:
        return next((key for kid, key in self.keys if kid == key_id), None)

    @classmethod
    def parse(cls, text: str) -> Keyring:
        pairs: list[tuple[str, bytes]] = []
        for item in re.split(r"[,\n]", text):
            item = item.strip()
            if not item or item.startswith("#"):
                continue
            kid, sep, b64 = item.partition(":")
            try:
                key = base64.b64decode(b64.strip(), validate=True) if sep else b""
            except (binascii.Error, ValueError):
                key = b""
            if not _ID.match(kid) or len(key) != KEY_BYTES:
                raise InvalidInput(
                    "secret store keys are id:base64 pairs of 32-byte keys (e.g. k1:<44 base64 chars>)",
                    code="invalidSecretStoreKey",
                )
            if any(kid == seen for seen, _ in pairs):
                raise InvalidInput(f"secret store key id {kid!r} appears twice", code="invalidSecretStoreKey")
            pairs.append((kid, key))
        if not pairs:
            raise InvalidInput("no secret store key configured", code="invalidSecretStoreKey")
        return cls(tuple(pairs))

    @staticmethod
    def new_line(key_id: str | None = None) -> str:
        kid = key_id or f"k{secrets.token_hex(4)}"
        return f"{kid}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def load_keyring(keys: str | None, path: Path, *, create: bool = True) -> Keyring:
    """Keys from ``keys`` (the env var) or ``path``; the file is created 0600 when missing."""
    if keys:
        return Keyring.parse(keys)
    if not path.exists():
        if not create:
            raise InvalidInput(f"no secret store key file at {path}", code="secretStoreKeyMissing")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return Keyring.parse(path.read_text("utf-8"))
        with os.fdopen(fd, "w") as handle:
            handle.write(Keyring.new_line("k1") + "\n")
    return Keyring.parse(path.read_text("utf-8"))
