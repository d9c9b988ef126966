"""Secret stores (issue 13): where a rotated credential is written for its consumers.

One port, five backends (built-in AES-GCM in the database, HashiCorp Vault / OpenBao KV v2,
AWS Secrets Manager, Azure Key Vault, a local file), one contract suite
(``tests/contract/secret_store_contract.py``) run over each.

A rotation writes the successor with :meth:`SecretStore.write`, reads it back with
:meth:`SecretStore.read` and compares, then calls :meth:`SecretStore.promote`. Stores that can
stage a version (``staged``: AWS's ``AWSPENDING``, the built-in store, the file target's pending
file) keep it from consumers until ``promote``; the others make it current at once. If the
read-back fails, :meth:`SecretStore.discard` undoes the write so the previous version is current
again — so the store never ends up serving a secret that was rolled back.

Names: callers pass the *logical* name (what the operator chose); every method maps it with
:meth:`SecretStore.secret_name` to the store-side name (sanitised to the store's rules plus an
8-hex-digit SHA-256 suffix of the logical name, so two logical names never collide).

Errors: every backend failure is a :class:`SecretStoreError`; nothing above an adapter sees a
driver exception. ``transient`` failures (timeouts, 5xx, 429) may be retried, honouring
``retry_after`` when the store said so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from tokenwarden.domain.errors import ExternalServiceError

PAT_CONTENT_TYPE = "application/x-pat-token"


class SecretStoreError(ExternalServiceError):
    """A secret store refused or failed an operation."""

    default_code = "secretStoreError"


@dataclass(frozen=True, slots=True)
class SecretMeta:
    """What is written beside a value: its expiry, content type and tags (``managed-by``,
    ``created``, ``source``, ...). Stores without native fields keep these in metadata."""

    expires_at: datetime | None = None
    content_type: str = PAT_CONTENT_TYPE
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """One version of a secret as read back from a store."""

    name: str  # store-side name
    version: str
    value: str
    expires_at: datetime | None = None
    content_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    current: bool = True  # False for a staged (not yet promoted) or older version


class SecretStore(Protocol):
    """A place consumers read a credential from. Implementations are thread-safe."""

    kind: str  # builtin | vault | aws | azure-keyvault | file
    staged: bool  # True: write() stages a version that consumers do not see until promote()

    def secret_name(self, name: str) -> str:
        """The store-side name of logical ``name`` (pure, deterministic)."""
        ...

    def write(self, name: str, value: str, meta: SecretMeta) -> str:
        """Write a new version of ``name``; return its version id. Creates the secret if needed."""
        ...

    def read(self, name: str, version: str | None = None) -> StoredSecret | None:
        """The current version (``version`` None) or the given one, staged included; None if
        the secret or version does not exist (or was discarded)."""
        ...

    def promote(self, name: str, version: str) -> None:
        """Make ``version`` the current one (the previous current is kept as previous).
        A no-op where write() already made it current. Idempotent."""
        ...

    def discard(self, name: str, version: str) -> None:
        """Undo write(``version``): it is no longer current nor served, and the version that was
        current before it is current again. Idempotent; a no-op for an unknown version."""
        ...

    def current_version(self, name: str) -> str | None:
        """The id of the current version, None if the secret does not exist."""
        ...

    def delete(self, name: str) -> None:
        """Remove the secret with every version (idempotent)."""
        ...

    def check(self) -> None:
        """Raise SecretStoreError unless the store is reachable and this credential may write."""
        ...
