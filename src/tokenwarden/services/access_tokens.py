"""RFC 9068 JWT access tokens: minted with the deployment's ES256 key, verified against the
published keys (active or retiring).

A JWT is only half of an access token here: every issued one is also a token record (kind
``access``, keyed hash of the whole JWT), so revocation by id, family, watermark, rule or
break-glass reaches it at once — the Validator checks the record's cut-offs on every call and
verifies the signature once, on a cache miss (:meth:`JwtVerifier.__call__`).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Final

from joserfc import jws
from joserfc.errors import JoseError

from tokenwarden.domain.errors import InvalidToken
from tokenwarden.services.signing import ES256, SigningKeys

ACCESS_TOKEN_TYP: Final = "at+jwt"
ACCESS_TOKEN_ALG: Final = ES256


class AccessTokenMinter:
    """Signs RFC 9068 access tokens."""

    def __init__(self, keys: SigningKeys) -> None:
        self._keys = keys

    def ready(self) -> None:
        """Load (or create, in its own transaction) the signing key before a token request
        opens its unit of work: on SQLite a nested write would wait for the outer one. A key
        past its scheduled age is rotated here, for the same reason."""
        self._keys.rotate_if_due(ACCESS_TOKEN_ALG)

    def mint(
        self,
        *,
        issuer: str,
        subject: str,
        audience: str,
        client_id: str,
        scope: str,
        issued_at: datetime,
        expires_at: datetime,
        org_id: str,
    ) -> tuple[str, str]:
        """(jti, compact JWS) of a new access token."""
        jti = str(uuid.uuid4())
        claims: dict[str, Any] = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "exp": int(expires_at.timestamp()),
            "iat": int(issued_at.timestamp()),
            "nbf": int(issued_at.timestamp()),
            "jti": jti,
            "client_id": client_id,
            "scope": scope,
            "tw_org": org_id,
        }
        return jti, self._keys.sign(claims, typ=ACCESS_TOKEN_TYP, alg=ACCESS_TOKEN_ALG)


class JwtVerifier:
    """Checks what the signature of an access token proves: the header names a published key
    by ``kid``, ``alg`` is that key's (ES256; never ``none`` or an HMAC keyed with the public
    key), ``typ`` is ``at+jwt``, the signature holds and ``jti`` is present. Expiry and every
    revocation are the token record's business (the Validator), so a holder still hears
    "expired" or "revoked"."""

    def __init__(self, keys: SigningKeys) -> None:
        self._keys = keys

    def __call__(self, token: str) -> dict[str, Any]:
        try:
            header = jws.extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise InvalidToken("malformed access token") from exc
        if header.get("alg") != ACCESS_TOKEN_ALG or header.get("typ") != ACCESS_TOKEN_TYP:
            raise InvalidToken("access token has the wrong type or algorithm")
        kid = header.get("kid")
        key = self._keys.public_key(kid) if isinstance(kid, str) and len(kid) <= 128 else None
        if key is None:
            raise InvalidToken("access token is signed by an unknown key")
        try:
            verified = jws.deserialize_compact(token, key, algorithms=[ACCESS_TOKEN_ALG])
            claims = json.loads(verified.payload)
        except (JoseError, ValueError) as exc:
            raise InvalidToken("access token signature does not verify") from exc
        if not isinstance(claims, dict) or not isinstance(claims.get("jti"), str):
            raise InvalidToken("access token has no jti")
        return claims
