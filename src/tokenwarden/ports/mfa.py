"""Second factors (TOTP), recovery codes and step-ups (issue 16)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol, Self


@dataclass(frozen=True, slots=True)
class MfaFactor:
    """A user's TOTP factor. ``sealed_secret`` is the base32 seed sealed with a pepper-derived
    key (services.signing.SecretBox); ``last_step`` is the newest TOTP time step accepted, so a
    code is never accepted twice. Unconfirmed until a first code proves the enrolment."""

    user_id: str
    sealed_secret: str
    created_at: datetime
    confirmed_at: datetime | None = None
    last_step: int = 0

    def with_changes(self, **changes: object) -> Self:
        return replace(self, **changes)  # type: ignore[arg-type]


class MfaRepository(Protocol):
    def factor(self, user_id: str, *, lock: bool = False) -> MfaFactor | None:
        """The user's factor; ``lock`` holds its row until the transaction ends, so checks of
        one user's codes (and the wrong-code count) run one at a time on every backend."""
        ...

    def save_factor(self, factor: MfaFactor) -> None:
        """Insert or replace the user's factor."""
        ...

    def advance_step(self, user_id: str, step: int) -> bool:
        """Record ``step`` as used if it is newer than the last one (compare-and-set); False when
        it was already used (a replayed or concurrent code)."""
        ...

    def delete(self, user_id: str) -> bool:
        """Remove the factor, its recovery codes and the user's step-ups; True if there was one."""
        ...

    def replace_codes(self, user_id: str, code_hashes: Sequence[bytes], at: datetime) -> None: ...
    def use_code(self, user_id: str, code_hash: bytes, at: datetime) -> bool:
        """Mark an unused recovery code used; False if there is no such unused code."""
        ...

    def unused_codes(self, user_id: str) -> int: ...
    def record_step_up(self, credential_hash: bytes, user_id: str, at: datetime) -> None:
        """The credential (a session's or a token's keyed hash) proved the second factor at ``at``."""
        ...

    def stepped_up_at(self, credential_hash: bytes) -> datetime | None: ...
    def confirmed_users(self, user_ids: Sequence[str]) -> set[str]:
        """Which of ``user_ids`` have a confirmed factor."""
        ...
