"""AWS Secrets Manager: staged versions via the ``AWSPENDING`` / ``AWSCURRENT`` / ``AWSPREVIOUS`` labels.

Secrets Manager has no per-version metadata, so each version's ``SecretString`` is JSON::

    {"token": "<value>", "contentType": "...", "expiresAt": "<ISO 8601>|null", "tags": {...}}

Consumers read the ``token`` key. Content type, expiry and tags are also kept as secret Tags
(``content-type``, ``expires-at`` plus the meta tags) of the latest write, for AWS-side search.

A version with no staging label is treated as gone (AWS deprecates and later deletes those).
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime
from typing import Any

import boto3
import botocore.config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from tokenwarden.domain.secret_names import store_name
from tokenwarden.ports.secrets import SecretMeta, SecretStoreError, StoredSecret

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"
_NOT_FOUND = "ResourceNotFoundException"
_TRANSIENT_CODES = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
}


def _error(exc: Exception, action: str) -> SecretStoreError:
    """Map a botocore exception to the port's error."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        transient = code in _TRANSIENT_CODES or status == 429 or status >= 500
        return SecretStoreError(
            f"AWS Secrets Manager {action} failed: {code}: {err.get('Message', '')}",
            code="secretVersionNotFound" if code == _NOT_FOUND else "storeError",
            transient=transient,
        )
    transient = isinstance(exc, BotoConnectionError | HTTPClientError)
    return SecretStoreError(
        f"AWS Secrets Manager {action} failed: {exc}",
        code="storeUnavailable",
        transient=transient,
    )


def _is_not_found(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == _NOT_FOUND


class AwsSecretStore:
    """A :class:`~tokenwarden.ports.secrets.SecretStore` over AWS Secrets Manager (thread-safe)."""

    kind = "aws"
    staged = True

    def __init__(
        self, *, region: str | None = None, endpoint_url: str | None = None, client: Any = None
    ) -> None:
        if client is None:
            client = boto3.client(
                "secretsmanager",
                region_name=region or "us-east-1",
                endpoint_url=endpoint_url,
                config=botocore.config.Config(
                    retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=10
                ),
            )
        self._client: Any = client
        self._lock = threading.Lock()

    def secret_name(self, name: str) -> str:
        return store_name(name, allowed="A-Za-z0-9/_+=.@-", max_len=512)

    # ------------------------------------------------------------------ helpers
    def _call(self, action: str, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = getattr(self._client, action)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, action) from exc
        return result

    def _stages(self, sname: str) -> dict[str, list[str]] | None:
        """VersionIdsToStages of ``sname`` (labelled versions only); None if the secret is missing."""
        try:
            described = self._client.describe_secret(SecretId=sname)
        except (ClientError, BotoCoreError) as exc:
            if _is_not_found(exc):
                return None
            raise _error(exc, "describe_secret") from exc
        raw = described.get("VersionIdsToStages") or {}
        return {str(v): list(s) for v, s in raw.items() if s}

    @staticmethod
    def _holder(stages: dict[str, list[str]], label: str) -> str | None:
        return next((v for v, s in stages.items() if label in s), None)

    def _move(self, sname: str, label: str, *, to: str | None = None, away: str | None = None) -> None:
        kwargs: dict[str, Any] = {"SecretId": sname, "VersionStage": label}
        if to is not None:
            kwargs["MoveToVersionId"] = to
        if away is not None:
            kwargs["RemoveFromVersionId"] = away
        self._call("update_secret_version_stage", **kwargs)

    @staticmethod
    def _tags(meta: SecretMeta) -> list[dict[str, str]]:
        tags = dict(meta.tags)
        tags["content-type"] = meta.content_type
        if meta.expires_at is not None:
            tags["expires-at"] = meta.expires_at.isoformat()
        return [{"Key": k, "Value": v} for k, v in tags.items()]

    # ------------------------------------------------------------------ the port
    def write(self, name: str, value: str, meta: SecretMeta) -> str:
        sname = self.secret_name(name)
        payload = json.dumps(
            {
                "token": value,
                "contentType": meta.content_type,
                "expiresAt": meta.expires_at.isoformat() if meta.expires_at else None,
                "tags": dict(meta.tags),
            }
        )
        with self._lock:
            if self._stages(sname) is None:
                self._call(
                    "create_secret",
                    Name=sname,
                    Description="Managed by tokenwarden",
                    Tags=self._tags(meta),
                )
            else:
                self._call("tag_resource", SecretId=sname, Tags=self._tags(meta))
            put = self._call(
                "put_secret_value",
                SecretId=sname,
                SecretString=payload,
                VersionStages=[PENDING],
                ClientRequestToken=str(uuid.uuid4()),
            )
        return str(put["VersionId"])

    def read(self, name: str, version: str | None = None) -> StoredSecret | None:
        sname = self.secret_name(name)
        stages = self._stages(sname)
        if stages is None:
            return None
        wanted = self._holder(stages, CURRENT) if version is None else version
        if wanted is None or wanted not in stages:
            return None
        try:
            got = self._client.get_secret_value(SecretId=sname, VersionId=wanted)
        except (ClientError, BotoCoreError) as exc:
            if _is_not_found(exc):
                return None
            raise _error(exc, "get_secret_value") from exc
        raw = str(got.get("SecretString") or "")
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "token" not in record:
            record = {"token": raw}
        expires = record.get("expiresAt")
        created = got.get("CreatedDate")
        return StoredSecret(
            name=sname,
            version=wanted,
            value=str(record["token"]),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            content_type=record.get("contentType"),
            tags={str(k): str(v) for k, v in dict(record.get("tags") or {}).items()},
            created_at=created if isinstance(created, datetime) else None,
            current=CURRENT in stages[wanted],
        )

    def promote(self, name: str, version: str) -> None:
        sname = self.secret_name(name)
        with self._lock:
            stages = self._stages(sname)
            if stages is None or version not in stages:
                raise SecretStoreError(f"version {version} does not exist", code="secretVersionNotFound")
            if CURRENT not in stages[version]:
                self._move(sname, CURRENT, to=version, away=self._holder(stages, CURRENT))
            if PENDING in stages[version]:
                self._move(sname, PENDING, away=version)

    def discard(self, name: str, version: str) -> None:
        sname = self.secret_name(name)
        with self._lock:
            stages = self._stages(sname)
            if stages is None or version not in stages:
                return
            if len(stages) == 1:
                self._call("delete_secret", SecretId=sname, ForceDeleteWithoutRecovery=True)
                return
            if CURRENT in stages[version]:
                previous = self._holder({v: s for v, s in stages.items() if v != version}, PREVIOUS)
                if previous is None:
                    self._call("delete_secret", SecretId=sname, ForceDeleteWithoutRecovery=True)
                    return
                self._move(sname, CURRENT, to=previous, away=version)
                if PREVIOUS in (refreshed := self._stages(sname) or {}).get(previous, []):
                    self._move(sname, PREVIOUS, away=previous)
                stages = refreshed
            for label in (stages or {}).get(version, []):
                self._move(sname, label, away=version)

    def current_version(self, name: str) -> str | None:
        stages = self._stages(self.secret_name(name))
        return None if stages is None else self._holder(stages, CURRENT)

    def delete(self, name: str) -> None:
        try:
            self._client.delete_secret(SecretId=self.secret_name(name), ForceDeleteWithoutRecovery=True)
        except (ClientError, BotoCoreError) as exc:
            if not _is_not_found(exc):
                raise _error(exc, "delete_secret") from exc

    def check(self) -> None:
        self._call("list_secrets", MaxResults=1)
