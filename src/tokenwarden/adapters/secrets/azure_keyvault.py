"""Azure Key Vault secrets: every write is a new version, current at once (``staged = False``).

Each version holds the token as its value, ``meta.content_type`` as its content type,
``meta.expires_at`` as its expiry (``exp``, whole seconds) and ``meta.tags`` as its tags. Version
ids are Key Vault's 32-hex-digit version ids.

Key Vault has no staging labels, and a consumer's ``GET /secrets/{name}`` always returns the
*latest* version (403 ``SecretDisabled`` if that version is disabled; it never falls back to an
older one). A disabled pending version would therefore break every consumer until promotion, so
this store does not stage: :meth:`AzureKeyVaultSecretStore.write` makes the version current at
once and :meth:`~AzureKeyVaultSecretStore.promote` only checks that it exists and is enabled.

:meth:`~AzureKeyVaultSecretStore.discard` of the latest version works like ``vault kv rollback``:
the version that was current before it is written again as a new (latest) version, then the
discarded one is disabled (``enabled=False``: never served, reads as None). Which version was
current before is recorded at write time in the tag :data:`PREVIOUS_TAG` of the new version (Key
Vault's ``created`` timestamps have one-second resolution, so they cannot order two quick writes);
versions written by something else fall back to the newest enabled earlier version. With no
earlier enabled version the discarded one is just disabled, so nothing is served.

:meth:`~AzureKeyVaultSecretStore.delete` soft-deletes the secret, waits for the deletion and then
purges it (``purge_on_delete=False`` for vaults with purge protection, where the name stays
reserved until the retention period ends).
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import KeyVaultSecret, SecretClient, SecretProperties

from tokenwarden.domain.secret_names import store_name
from tokenwarden.ports.secrets import SecretMeta, SecretStoreError, StoredSecret

API_VERSION = "7.4"
PREVIOUS_TAG = "tokenwarden-previous-version"  # adapter bookkeeping: not returned in StoredSecret.tags
_VERSION = re.compile(r"[0-9a-f]{32}")
_MAX_CHAIN = 50
_DELETE_WAIT_SECONDS = 60.0


def _body(exc: HttpResponseError) -> dict[str, Any]:
    """The ``error`` object of a Key Vault error response (empty if there is none)."""
    try:
        parsed = json.loads(exc.response.text()) if exc.response is not None else {}
    except (ValueError, TypeError, AttributeError):
        return {}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) else {}


def _inner_code(exc: HttpResponseError) -> str | None:
    inner = _body(exc).get("innerError") or _body(exc).get("innererror")
    return str(inner.get("code")) if isinstance(inner, dict) and inner.get("code") else None


def _is_disabled(exc: AzureError) -> bool:
    """A 403 for reading a disabled version (the service's answer for a discarded one)."""
    return (
        isinstance(exc, HttpResponseError) and exc.status_code == 403 and _inner_code(exc) == "SecretDisabled"
    )


def _retry_after(exc: HttpResponseError) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    try:
        return max(0.0, float(headers["Retry-After"]))
    except (KeyError, TypeError, ValueError):
        return None


def _error(exc: AzureError, action: str) -> SecretStoreError:
    """Map an azure-core exception to the port's error. Messages carry the service's error code and
    message, never a request body (so never a secret value)."""
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = int(exc.status_code)
        error = _body(exc)
        detail = f"{error.get('code') or exc.reason or 'error'}: {error.get('message') or ''}".rstrip(": ")
        if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
            kind = "authentication failed" if status == 401 else "access denied"
            return SecretStoreError(
                f"Azure Key Vault {action} failed: {kind} (HTTP {status}) {detail}",
                code="storeForbidden",
            )
        transient = status == 429 or status >= 500
        code = "secretVersionNotFound" if isinstance(exc, ResourceNotFoundError) else "storeError"
        return SecretStoreError(
            f"Azure Key Vault {action} failed: HTTP {status} {detail}",
            code=code,
            transient=transient,
            retry_after=_retry_after(exc) if transient else None,
        )
    if isinstance(exc, ClientAuthenticationError):
        # No HTTP status: the credential itself failed (azure-identity could not get a token).
        return SecretStoreError(
            f"Azure Key Vault {action} failed: could not get an access token: {exc.message}",
            code="storeForbidden",
        )
    transient = isinstance(exc, ServiceRequestError | ServiceResponseError)
    return SecretStoreError(
        f"Azure Key Vault {action} failed: {type(exc).__name__}: {exc.message}",
        code="storeUnavailable",
        transient=transient,
    )


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AzureKeyVaultSecretStore:
    """A :class:`~tokenwarden.ports.secrets.SecretStore` over Azure Key Vault secrets (thread-safe).

    ``credential`` defaults to azure-identity's ``DefaultAzureCredential``; ``ca_bundle`` is a PEM
    file to verify the vault's TLS certificate with. The challenge's resource is checked against the
    vault host except for loopback hosts (``verify_challenge_resource`` overrides that).
    """

    kind = "azure-keyvault"
    staged = False

    def __init__(
        self,
        vault_url: str,
        *,
        credential: TokenCredential | None = None,
        ca_bundle: str | Path | None = None,
        timeout: float = 15.0,
        client: SecretClient | None = None,
        retries: int = 2,
        verify_challenge_resource: bool | None = None,
        purge_on_delete: bool = True,
    ) -> None:
        if client is None:
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            verify = (
                not _is_loopback(vault_url)
                if verify_challenge_resource is None
                else verify_challenge_resource
            )
            client = SecretClient(
                vault_url,
                credential,
                api_version=API_VERSION,
                verify_challenge_resource=verify,
                connection_verify=str(ca_bundle) if ca_bundle else True,
                connection_timeout=timeout,
                read_timeout=timeout,
                retry_total=retries,
            )
        self._client = client
        self._purge = purge_on_delete
        self._lock = threading.RLock()

    def secret_name(self, name: str) -> str:
        return store_name(name, allowed="0-9a-zA-Z-", max_len=127)

    # ------------------------------------------------------------------ helpers
    def _get(self, sname: str, version: str | None) -> KeyVaultSecret | None:
        """One version (the latest if ``version`` is None); None if missing or disabled."""
        try:
            return self._client.get_secret(sname, version)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            if _is_disabled(exc):
                return None
            raise _error(exc, "get_secret") from exc

    def _latest(self, sname: str) -> str | None:
        """The id of the served (latest, enabled) version."""
        found = self._get(sname, None)
        return None if found is None else found.properties.version

    def _versions(self, sname: str) -> dict[str, SecretProperties]:
        """Every version's properties (disabled ones included), by version id."""
        try:
            return {
                p.version: p
                for p in self._client.list_properties_of_secret_versions(sname)
                if p.version is not None
            }
        except ResourceNotFoundError:
            return {}
        except AzureError as exc:
            raise _error(exc, "list_properties_of_secret_versions") from exc

    def _set(self, sname: str, value: str, **kwargs: Any) -> KeyVaultSecret:
        try:
            return self._client.set_secret(sname, value, enabled=True, **kwargs)
        except AzureError as exc:
            raise _error(exc, "set_secret") from exc

    def _predecessor(self, version: str, versions: dict[str, SecretProperties]) -> str | None:
        """The enabled version that was current before ``version``: follow the previous-version tags
        past disabled ones; without a tag, the newest enabled version created no later."""
        seen = {version}
        current = versions[version]
        for _ in range(_MAX_CHAIN):
            previous = (current.tags or {}).get(PREVIOUS_TAG)
            if previous is None:
                break
            if previous in seen or previous not in versions:
                return None
            if versions[previous].enabled:
                return previous
            seen.add(previous)
            current = versions[previous]
        else:
            return None
        created = current.created_on
        if created is None:
            return None
        candidates = [
            (p.created_on, v)
            for v, p in versions.items()
            if v not in seen and p.enabled and p.created_on is not None and p.created_on <= created
        ]
        return max(candidates)[1] if candidates else None

    # ------------------------------------------------------------------ the port
    def write(self, name: str, value: str, meta: SecretMeta) -> str:
        sname = self.secret_name(name)
        with self._lock:
            tags = dict(meta.tags)
            previous = self._latest(sname)
            if previous is not None:
                tags[PREVIOUS_TAG] = previous
            written = self._set(
                sname, value, content_type=meta.content_type, expires_on=meta.expires_at, tags=tags
            )
        if written.properties.version is None:
            raise SecretStoreError(
                f"Azure Key Vault did not report the version of {sname}", code="storeError"
            )
        return written.properties.version

    def read(self, name: str, version: str | None = None) -> StoredSecret | None:
        sname = self.secret_name(name)
        if version is not None and not _VERSION.fullmatch(version):
            return None
        found = self._get(sname, version)
        if found is None:
            return None
        props = found.properties
        got = props.version or ""
        current = version is None or self._latest(sname) == got
        return StoredSecret(
            name=sname,
            version=got,
            value=found.value or "",
            expires_at=props.expires_on,
            content_type=props.content_type,
            tags={k: v for k, v in (props.tags or {}).items() if k != PREVIOUS_TAG},
            created_at=props.created_on,
            current=current,
        )

    def promote(self, name: str, version: str) -> None:
        """A no-op (writes are current at once); fails if ``version`` does not exist or was discarded."""
        if self.read(name, version) is None:
            raise SecretStoreError(
                f"Azure Key Vault secret {self.secret_name(name)} has no enabled version {version}",
                code="secretVersionNotFound",
            )

    def discard(self, name: str, version: str) -> None:
        sname = self.secret_name(name)
        if not _VERSION.fullmatch(version):
            return
        with self._lock:
            versions = self._versions(sname)
            info = versions.get(version)
            if info is None or not info.enabled:
                return  # unknown, or discarded already
            if self._latest(sname) == version:
                previous = self._predecessor(version, versions)
                restored = self._get(sname, previous) if previous is not None else None
                if restored is not None:
                    rp = restored.properties
                    self._set(
                        sname,
                        restored.value or "",
                        content_type=rp.content_type,
                        expires_on=rp.expires_on,
                        not_before=rp.not_before,
                        tags=dict(rp.tags or {}),
                    )
            try:
                self._client.update_secret_properties(sname, version, enabled=False)
            except AzureError as exc:
                raise _error(exc, "update_secret_properties") from exc

    def current_version(self, name: str) -> str | None:
        return self._latest(self.secret_name(name))

    def delete(self, name: str) -> None:
        sname = self.secret_name(name)
        with self._lock:
            try:
                poller = self._client.begin_delete_secret(sname)
                poller.wait(timeout=_DELETE_WAIT_SECONDS)
            except ResourceNotFoundError:
                pass  # gone already (or soft-deleted earlier: purge below)
            except AzureError as exc:
                raise _error(exc, "delete_secret") from exc
            if not self._purge:
                return
            try:
                self._client.purge_deleted_secret(sname)
            except ResourceNotFoundError:
                pass
            except AzureError as exc:
                raise _error(exc, "purge_deleted_secret") from exc

    def check(self) -> None:
        """The credential gets a token the vault accepts and may list secrets (one page of one).
        Key Vault has no "may I write" query, so write permission shows at the first write."""
        try:
            next(self._client.list_properties_of_secrets(max_page_size=1).by_page(), None)
        except AzureError as exc:
            raise _error(exc, "list_properties_of_secrets") from exc
