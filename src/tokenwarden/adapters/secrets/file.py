"""The file target: a CI runner reads ``DIR/<name>``, written atomically with mode 0600.

Versions live beside it in ``DIR/.<name>.versions/<n>.json`` (0600, directory 0700) so a write
can be staged, read back, promoted (an atomic ``os.replace`` onto the served file) or discarded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tokenwarden.domain.secret_names import store_name
from tokenwarden.ports.secrets import SecretMeta, SecretStoreError, StoredSecret


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileSecretStore:
    """Secrets as files in one directory (thread-safe within a process)."""

    kind = "file"
    staged = True

    def __init__(self, directory: Path) -> None:
        self._dir = Path(directory)
        self._lock = threading.Lock()

    def secret_name(self, name: str) -> str:
        return store_name(name, allowed="A-Za-z0-9_.-", max_len=200)

    # ------------------------------------------------------------------ paths
    def _paths(self, name: str) -> tuple[Path, Path]:
        sname = self.secret_name(name)
        return self._dir / sname, self._dir / f".{sname}.versions"

    def _ensure(self, versions: Path) -> None:
        try:
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            versions.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise SecretStoreError(
                f"cannot create {versions}: {exc.strerror}", code="storeUnavailable"
            ) from exc

    @staticmethod
    def _load(path: Path) -> dict[str, Any] | None:
        try:
            loaded: dict[str, Any] = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SecretStoreError(f"cannot read {path.name}: {exc}", code="storeUnavailable") from exc
        return loaded

    @staticmethod
    def _current(versions: Path) -> str | None:
        try:
            return (versions / "current").read_text("utf-8").strip() or None
        except FileNotFoundError:
            return None

    def _numbers(self, versions: Path) -> list[int]:
        if not versions.is_dir():
            return []
        return sorted(int(p.stem) for p in versions.glob("*.json") if p.stem.isdigit())

    # ------------------------------------------------------------------ the port
    def write(self, name: str, value: str, meta: SecretMeta) -> str:
        _, versions = self._paths(name)
        with self._lock:
            self._ensure(versions)
            numbers = self._numbers(versions)
            number = (numbers[-1] if numbers else 0) + 1
            record = {
                "value": value,
                "expires_at": meta.expires_at.isoformat() if meta.expires_at else None,
                "content_type": meta.content_type,
                "tags": dict(meta.tags),
                "created_at": datetime.now(UTC).isoformat(),
            }
            try:
                _atomic_write(versions / f"{number}.json", json.dumps(record).encode())
            except OSError as exc:
                raise SecretStoreError(
                    f"cannot write the secret: {exc.strerror}", code="storeUnavailable"
                ) from exc
            return str(number)

    def read(self, name: str, version: str | None = None) -> StoredSecret | None:
        _, versions = self._paths(name)
        current = self._current(versions)
        wanted = version if version is not None else current
        if wanted is None or not wanted.isdigit():
            return None
        record = self._load(versions / f"{wanted}.json")
        if record is None:
            return None
        expires = record.get("expires_at")
        created = record.get("created_at")
        return StoredSecret(
            name=self.secret_name(name),
            version=wanted,
            value=str(record["value"]),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            content_type=record.get("content_type"),
            tags={str(k): str(v) for k, v in dict(record.get("tags") or {}).items()},
            created_at=datetime.fromisoformat(created) if created else None,
            current=wanted == current,
        )

    def _serve(self, served: Path, versions: Path, number: str | None) -> None:
        if number is None:
            served.unlink(missing_ok=True)
            (versions / "current").unlink(missing_ok=True)
            return
        record = self._load(versions / f"{number}.json")
        if record is None:
            raise SecretStoreError(f"version {number} does not exist", code="secretVersionNotFound")
        _atomic_write(served, str(record["value"]).encode())
        _atomic_write(versions / "current", number.encode())

    def promote(self, name: str, version: str) -> None:
        served, versions = self._paths(name)
        with self._lock:
            if self._current(versions) == version:
                return
            try:
                self._serve(served, versions, version)
            except OSError as exc:
                raise SecretStoreError(f"cannot promote: {exc.strerror}", code="storeUnavailable") from exc

    def discard(self, name: str, version: str) -> None:
        served, versions = self._paths(name)
        if not version.isdigit():
            return
        with self._lock:
            path = versions / f"{version}.json"
            if not path.exists():
                return
            try:
                if self._current(versions) == version:
                    earlier = [n for n in self._numbers(versions) if n < int(version)]
                    self._serve(served, versions, str(earlier[-1]) if earlier else None)
                path.unlink()
            except OSError as exc:
                raise SecretStoreError(f"cannot discard: {exc.strerror}", code="storeUnavailable") from exc

    def current_version(self, name: str) -> str | None:
        return self._current(self._paths(name)[1])

    def delete(self, name: str) -> None:
        served, versions = self._paths(name)
        with self._lock:
            served.unlink(missing_ok=True)
            shutil.rmtree(versions, ignore_errors=True)

    def check(self) -> None:
        try:
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe = self._dir / ".tokenwarden-probe"
            _atomic_write(probe, b"ok")
            probe.unlink()
        except OSError as exc:
            raise SecretStoreError(
                f"cannot write to {self._dir}: {exc.strerror}", code="storeUnavailable"
            ) from exc
