"""Password hashing: argon2id (argon2-cffi), bounded in concurrency, constant in behaviour.

Hashing is slow and memory-hard on purpose (default 64 MiB, 3 passes): callers on an event loop
must run these methods in a thread. A semaphore bounds how many run at once per process, so a
flood of sign-ins cannot exhaust memory. Unknown accounts are verified against a dummy hash made
with the current parameters, so the answer takes as long as for a real account.
"""

from __future__ import annotations

import secrets
import threading
from typing import Final

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.passwords import normalize_password

MAX_VERIFY_LENGTH: Final = 4096  # longer input cannot be a password of ours: refuse without work


class PasswordHashing:
    def __init__(
        self,
        *,
        time_cost: int = 3,
        memory_kib: int = 65536,
        parallelism: int = 4,
        concurrency: int = 4,
    ) -> None:
        if memory_kib < 8 * parallelism:
            raise InvalidInput(
                "argon2_memory_kib must be at least 8 x argon2_parallelism", code="invalidSetting"
            )
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._slots = threading.BoundedSemaphore(concurrency)
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()

    def hash(self, password: str) -> str:
        """The argon2id hash of a (checked) password."""
        with self._slots:
            return self._hasher.hash(normalize_password(password))

    def verify(self, stored: str | None, password: str) -> bool:
        """True if ``password`` matches ``stored``. With no stored hash (unknown account, no
        password set) the same work is done against a dummy hash and the answer is False."""
        candidate = normalize_password(password)[:MAX_VERIFY_LENGTH]
        target = stored if stored else self._dummy_hash()
        with self._slots:
            try:
                ok = bool(self._hasher.verify(target, candidate))
            except (VerificationError, InvalidHashError):
                ok = False
        return ok and stored is not None and len(password) <= MAX_VERIFY_LENGTH

    def needs_rehash(self, stored: str) -> bool:
        """Was ``stored`` made with other parameters than the current ones?"""
        try:
            return self._hasher.check_needs_rehash(stored)
        except (InvalidHashError, ValueError):
            return True

    def _dummy_hash(self) -> str:
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = self._hasher.hash(secrets.token_urlsafe(24))
            return self._dummy
