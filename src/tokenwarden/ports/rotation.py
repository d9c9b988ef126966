"""Storage ports of the rotation service (issue 13): managed credentials and the rotation journal.

A credential's lease (compare-and-set on ``lease_holder``/``lease_until``) keeps two nodes from
rotating it at once; the journal's "one open rotation per credential" unique key is the second
line of defence. Each journal step is committed before the next external action.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tokenwarden.domain.managed import ManagedCredential
from tokenwarden.domain.rotation import FINAL_STEPS, Reason, Step


@dataclass(frozen=True, slots=True)
class RotationRecord:
    """One rotation attempt of one credential, as journaled."""

    id: str
    credential_id: str
    org_id: str
    trigger: str  # schedule | manual | emergency
    reason: Reason
    step: Step
    predecessor_id: str
    successor_name: str
    started_at: datetime
    updated_at: datetime
    successor_id: str | None = None
    successor_valid_to: datetime | None = None
    successor_fingerprint: bytes | None = None  # keyed hash of the secret, never the secret
    store_version: str | None = None
    revoke_after: datetime | None = None
    attempts: int = 0
    error: str | None = None
    run_id: str | None = None
    started_by: str | None = None
    finished_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.step not in FINAL_STEPS


class ManagedCredentialRepository(Protocol):
    def add(self, credential: ManagedCredential, sealed_ado_credential: str | None = None) -> None:
        """Insert; Conflict if the org has the name or the store has the store-side name."""
        ...

    def get(self, credential_id: str) -> ManagedCredential | None: ...

    def by_name(self, org_id: str, name: str) -> ManagedCredential | None:
        """By name, case-insensitively."""
        ...

    def all(self, org_id: str | None = None) -> list[ManagedCredential]:
        """By org then name; every org when ``org_id`` is None."""
        ...

    def by_authorization(self, authorization_id: str) -> list[ManagedCredential]:
        """The credentials whose token in service is this one."""
        ...

    def update(self, credential: ManagedCredential) -> None:
        """Write every mutable field (not the lease, not the sealed ADO credential)."""
        ...

    def remove(self, credential_id: str) -> bool: ...

    def sealed_ado_credential(self, credential_id: str) -> str | None: ...

    def try_lease(self, credential_id: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take the credential's lease if free or expired (compare-and-set)."""
        ...

    def renew(self, credential_id: str, holder: str, until: datetime) -> bool:
        """Extend a lease this holder still has; False if it was lost (or the credential removed)."""
        ...

    def release(self, credential_id: str, holder: str) -> None:
        """Give the lease up, if this holder still has it."""
        ...


class RotationRepository(Protocol):
    def start(self, record: RotationRecord) -> None:
        """Journal a new rotation; Conflict if the credential has an open one."""
        ...

    def get(self, rotation_id: str) -> RotationRecord | None: ...

    def open_for(self, credential_id: str) -> RotationRecord | None: ...

    def open_all(self, limit: int = 1000) -> list[RotationRecord]:
        """Unfinished rotations, oldest first (crash recovery)."""
        ...

    def save(self, record: RotationRecord) -> None:
        """Write the record's step and fields (closing it when the step is final)."""
        ...

    def history(
        self, *, credential_id: str | None = None, org_id: str | None = None, limit: int = 20
    ) -> list[RotationRecord]:
        """Newest first."""
        ...
