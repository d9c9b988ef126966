"""Leaked-token intake (issue 14): GitHub's secret-scanning partner program.

GitHub POSTs ``[{"token", "type", "url", "source"}]`` signed with ECDSA P-256 over the raw body
(``Github-Public-Key-Identifier``, ``Github-Public-Key-Signature``: base64 DER). A token of this
installation is a true positive: it is revoked at once (reason ``compromised``) through a
``leakedToken`` alert, which tells its owner and the security contact; anything else is a false
positive. The answer names each token by its SHA-256 only.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tokenwarden.domain.errors import InvalidInput, NotFound, Unauthenticated
from tokenwarden.domain.hashing import SecretHasher
from tokenwarden.domain.token_format import looks_like_token
from tokenwarden.domain.token_scan import token_sha256
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.common import reading, token_by_secret
from tokenwarden.services.detection import DetectionService

MAX_ITEMS: Final = 1000
MAX_FIELD: Final = 4096


def load_keys(path: Path) -> dict[str, ec.EllipticCurvePublicKey]:
    """GitHub's key list (``{"public_keys": [{"key_identifier", "key"}]}``, as served at
    api.github.com/meta/public_keys/secret_scanning) by identifier."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"secret-scanning keys file {path}: {exc}", code="invalidKeysFile") from exc
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for item in data.get("public_keys", []) if isinstance(data, dict) else []:
        try:
            key = load_pem_public_key(str(item["key"]).encode())
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"secret-scanning keys file {path}: a bad key ({exc})", code="invalidKeysFile"
            ) from exc
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            keys[str(item["key_identifier"])] = key
    return keys


class LeakIntake:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: SecretHasher,
        detection: DetectionService,
        keys_file: Path | None,
    ) -> None:
        self._uow = uow
        self._hasher = hasher
        self._detection = detection
        self._keys_file = keys_file

    def verify(self, body: bytes, key_id: str | None, signature: str | None) -> None:
        """Raise Unauthenticated (401) unless ``signature`` is a configured key's over ``body``."""
        if self._keys_file is None:
            raise NotFound("secret-scanning intake is not configured on this server", code="notConfigured")
        if not key_id or not signature:
            raise Unauthenticated(
                "Github-Public-Key-Identifier and Github-Public-Key-Signature are required",
                code="signatureMissing",
            )
        key = load_keys(self._keys_file).get(key_id.strip())
        if key is None:
            raise Unauthenticated("unknown Github-Public-Key-Identifier", code="unknownSigningKey")
        try:
            key.verify(base64.b64decode(signature.strip(), validate=True), body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError):
            raise Unauthenticated("the signature does not verify", code="badSignature") from None

    def report(self, items: object) -> list[dict[str, str]]:
        """Label every reported token; revoke (and alert on) the true positives."""
        if not isinstance(items, list) or not items:
            raise InvalidInput(
                'the body must be a non-empty JSON array of {"token", "type", "url", "source"}'
            )
        if len(items) > MAX_ITEMS:
            raise InvalidInput(f"at most {MAX_ITEMS} tokens per request")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("token"), str):
                raise InvalidInput(f"item {i}: an object with a string 'token' is required")
            for name in ("token", "type", "url", "source"):
                value = item.get(name)
                if value is not None and (not isinstance(value, str) or len(value) > MAX_FIELD):
                    raise InvalidInput(
                        f"item {i}: '{name}' must be a string of at most {MAX_FIELD} characters"
                    )
        return [self._one(item) for item in items]

    def _one(self, item: dict[str, Any]) -> dict[str, str]:
        token = str(item["token"])
        answer = {
            "token_hash": token_sha256(token),
            "token_type": str(item.get("type") or ""),
            "label": "false_positive",
        }
        if not looks_like_token(token):
            return answer
        with reading(self._uow) as uow:
            record = token_by_secret(uow, self._hasher, token)
        if record is None:
            return answer
        answer["label"] = "true_positive"
        url, source = str(item.get("url") or ""), str(item.get("source") or "")
        self._detection.report_leak(
            record.authorization_id,
            f"token found in public by GitHub secret scanning{f' at {url}' if url else ''}"[:512],
            {
                "url": url[:1024],
                "source": source[:64],
                "type": answer["token_type"][:128],
                "reporter": "github",
            },
        )
        return answer
