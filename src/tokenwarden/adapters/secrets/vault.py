"""HashiCorp Vault / OpenBao KV v2: every write is a new KV version, current at once.

Each version's data is::

    {"token": "<value>", "content_type": "...", "expires_at": "<ISO 8601>", "tag.<k>": "<v>", ...}

Consumers read the ``token`` key. Content type, expiry and tags are also kept in the secret's
``custom_metadata`` (of the latest write, since custom metadata is per secret, not per version);
reads take them from the version data. Version ids are the KV version numbers as strings.

:meth:`VaultSecretStore.discard` of the latest version works like ``vault kv rollback``: the
newest earlier live version's data is written again as a new version, then the bad version is
destroyed; with no earlier live version the whole secret is deleted.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime
from typing import Any

import hvac
import hvac.exceptions
import requests

from tokenwarden.domain.secret_names import store_name
from tokenwarden.ports.secrets import SecretMeta, SecretStoreError, StoredSecret

_TOKEN = "token"
_CONTENT_TYPE = "content_type"
_EXPIRES_AT = "expires_at"
_TAG = "tag."
_TRANSIENT = (
    hvac.exceptions.InternalServerError,
    hvac.exceptions.VaultNotInitialized,
    hvac.exceptions.BadGateway,
    hvac.exceptions.VaultDown,
    hvac.exceptions.RateLimitExceeded,
    hvac.exceptions.UnexpectedError,
)
_FRACTION = re.compile(r"(\.\d{6})\d+")


def _error(exc: Exception, action: str) -> SecretStoreError:
    """Map an hvac / requests exception to the port's error."""
    if isinstance(exc, hvac.exceptions.VaultError):
        transient = isinstance(exc, _TRANSIENT)
        retry_after: float | None = None
        if isinstance(exc, hvac.exceptions.RateLimitExceeded):
            retry_after = _retry_after(exc)
        if isinstance(exc, hvac.exceptions.InvalidPath):
            code = "secretVersionNotFound"
        elif isinstance(exc, hvac.exceptions.Unauthorized | hvac.exceptions.Forbidden):
            code = "storeForbidden"
        else:
            code = "storeError"
        return SecretStoreError(
            f"Vault {action} failed: {type(exc).__name__}: {exc}",
            code=code,
            transient=transient,
            retry_after=retry_after,
        )
    transient = isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)
    return SecretStoreError(f"Vault {action} failed: {exc}", code="storeUnavailable", transient=transient)


def _retry_after(exc: Exception) -> float | None:
    """The ``Retry-After`` seconds of a 429, if the exception carries a response."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return float(headers["Retry-After"])
    except (KeyError, TypeError, ValueError):
        return None


def _parse_time(raw: Any) -> datetime | None:
    """A Vault / ISO 8601 timestamp (nanoseconds allowed); None if empty or unparseable."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", raw).replace("Z", "+00:00"))
    except ValueError:
        return None


def _live(info: Any) -> bool:
    """Whether a version entry of the secret metadata is neither deleted nor destroyed."""
    return isinstance(info, dict) and not info.get("destroyed") and not info.get("deletion_time")


class VaultSecretStore:
    """A :class:`~tokenwarden.ports.secrets.SecretStore` over a Vault / OpenBao KV v2 mount."""

    kind = "vault"
    staged = False

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        mount: str = "secret",
        namespace: str | None = None,
        verify: str | bool = True,
        timeout: float = 10.0,
        approle_mount: str = "approle",
    ) -> None:
        self._client: Any = hvac.Client(
            url=url, token=token, namespace=namespace, verify=verify, timeout=timeout
        )
        self._mount = mount.strip("/")
        self._role_id = role_id
        self._secret_id = secret_id
        self._approle_mount = approle_mount
        self._logged_in = role_id is None
        self._lock = threading.RLock()

    def secret_name(self, name: str) -> str:
        sname = store_name(name, allowed="A-Za-z0-9_./-", max_len=512)
        sname = re.sub(r"/+", "/", sname)
        return re.sub(r"(?<![^/])\.+(?=/)", "-", sname)  # no "." / ".." path segments

    # ------------------------------------------------------------------ helpers
    def _login(self) -> None:
        """AppRole login (once) when a role id was given."""
        if self._logged_in:
            return
        with self._lock:
            if self._logged_in:
                return
            try:
                self._client.auth.approle.login(
                    role_id=self._role_id, secret_id=self._secret_id, mount_point=self._approle_mount
                )
            except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
                raise _error(exc, "approle login") from exc
            self._logged_in = True

    def _kv(self, action: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``client.secrets.kv.v2.<action>`` on this mount, errors mapped."""
        self._login()
        try:
            return getattr(self._client.secrets.kv.v2, action)(*args, mount_point=self._mount, **kwargs)
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            raise _error(exc, action) from exc

    def _metadata(self, sname: str) -> dict[str, Any] | None:
        """The secret's metadata, None if it does not exist."""
        try:
            response = self._kv("read_secret_metadata", sname)
        except SecretStoreError as exc:
            if exc.code == "secretVersionNotFound":
                return None
            raise
        data: dict[str, Any] = (response or {}).get("data") or {}
        return data

    def _version_data(self, sname: str, version: int | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(data, metadata) of one version; None if missing, deleted or destroyed."""
        try:
            response = self._kv("read_secret_version", sname, version=version, raise_on_deleted_version=False)
        except SecretStoreError as exc:
            if exc.code == "secretVersionNotFound":
                return None
            raise
        body = (response or {}).get("data") or {}
        data, vmeta = body.get("data"), body.get("metadata") or {}
        if not isinstance(data, dict) or vmeta.get("destroyed") or vmeta.get("deletion_time"):
            return None
        return data, vmeta

    @staticmethod
    def _payload(value: str, meta: SecretMeta) -> dict[str, str]:
        payload = {_TOKEN: value, _CONTENT_TYPE: meta.content_type}
        if meta.expires_at is not None:
            payload[_EXPIRES_AT] = meta.expires_at.isoformat()
        payload.update({f"{_TAG}{k}": v for k, v in meta.tags.items()})
        return payload

    @staticmethod
    def _custom_metadata(data: dict[str, Any]) -> dict[str, str]:
        return {k: str(v) for k, v in data.items() if k != _TOKEN and v is not None}

    @staticmethod
    def _version(version: str) -> int | None:
        return int(version) if version.isdigit() and int(version) > 0 else None

    def _put(self, sname: str, data: dict[str, Any]) -> str:
        """Write ``data`` as a new version, mirror its metadata; return the version id."""
        response = self._kv("create_or_update_secret", sname, secret=data)
        number = ((response or {}).get("data") or {}).get("version")
        self._kv("update_metadata", sname, custom_metadata=self._custom_metadata(data))
        if number is None:
            raise SecretStoreError(f"Vault did not report the version of {sname}", code="storeError")
        return str(number)

    # ------------------------------------------------------------------ the port
    def write(self, name: str, value: str, meta: SecretMeta) -> str:
        sname = self.secret_name(name)
        with self._lock:
            return self._put(sname, self._payload(value, meta))

    def read(self, name: str, version: str | None = None) -> StoredSecret | None:
        sname = self.secret_name(name)
        number: int | None = None
        if version is not None:
            number = self._version(version)
            if number is None:
                return None
        found = self._version_data(sname, number)
        if found is None:
            return None
        data, vmeta = found
        got = str(vmeta.get("version", number or ""))
        if version is None:
            current = True
        else:
            metadata = self._metadata(sname) or {}
            current = str(metadata.get("current_version")) == got
        return StoredSecret(
            name=sname,
            version=got,
            value=str(data.get(_TOKEN, "")),
            expires_at=_parse_time(data.get(_EXPIRES_AT)),
            content_type=data.get(_CONTENT_TYPE),
            tags={k[len(_TAG) :]: str(v) for k, v in data.items() if k.startswith(_TAG)},
            created_at=_parse_time(vmeta.get("created_time")),
            current=current,
        )

    def promote(self, name: str, version: str) -> None:
        """A no-op (writes are current at once); fails if ``version`` does not exist."""
        if self.read(name, version) is None:
            raise SecretStoreError(
                f"Vault secret {self.secret_name(name)} has no version {version}",
                code="secretVersionNotFound",
            )

    def discard(self, name: str, version: str) -> None:
        sname = self.secret_name(name)
        number = self._version(version)
        if number is None:
            return
        with self._lock:
            metadata = self._metadata(sname)
            versions: dict[str, Any] = (metadata or {}).get("versions") or {}
            info = versions.get(str(number))
            if metadata is None or info is None:
                return
            latest = int(metadata.get("current_version") or 0)
            if number == latest and _live(info):
                earlier = sorted(
                    (int(v) for v, i in versions.items() if int(v) < number and _live(i)), reverse=True
                )
                restored = next(
                    (found for v in earlier if (found := self._version_data(sname, v)) is not None), None
                )
                if restored is None:
                    self._kv("delete_metadata_and_all_versions", sname)
                    return
                self._put(sname, restored[0])
            if not info.get("destroyed"):
                self._kv("destroy_secret_versions", sname, versions=[number])

    def current_version(self, name: str) -> str | None:
        metadata = self._metadata(self.secret_name(name))
        if metadata is None:
            return None
        current = metadata.get("current_version")
        info = (metadata.get("versions") or {}).get(str(current))
        return str(current) if current and _live(info) else None

    def delete(self, name: str) -> None:
        sname = self.secret_name(name)
        with self._lock:
            try:
                self._kv("delete_metadata_and_all_versions", sname)
            except SecretStoreError as exc:
                if exc.code != "secretVersionNotFound":
                    raise

    def check(self) -> None:
        """The token is valid and may create and update secrets on the mount."""
        self._login()
        path = f"{self._mount}/data/tokenwarden-check"
        try:
            self._client.auth.token.lookup_self()
            response = self._client.adapter.post("/v1/sys/capabilities-self", json={"paths": [path]})
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            raise _error(exc, "check") from exc
        body = response if isinstance(response, dict) else {}
        caps = set(body.get(path) or body.get("capabilities") or ())
        if not caps & {"root", "create", "update"}:
            raise SecretStoreError(
                f"Vault token may not write secrets on mount {self._mount}: {sorted(caps)}",
                code="storeForbidden",
            )
