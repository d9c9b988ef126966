"""Credentials from the Authorization header: Basic (any user, PAT as password) or Bearer."""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from tokenwarden.domain.errors import Unauthenticated
from tokenwarden.services.common import Actor, TokenReach
from tokenwarden.services.validation import Caller, Validator


def secret_from_header(header: str | None) -> str:
    """Extract the token from ``Authorization``; raise Unauthenticated with a precise reason."""
    if not header:
        raise Unauthenticated("authentication required: send Basic or Bearer credentials")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise Unauthenticated("malformed Basic credentials") from exc
        _, sep, password = decoded.partition(":")
        if not sep or not password:
            raise Unauthenticated("Basic credentials must carry the token as the password")
        return password
    raise Unauthenticated("unsupported Authorization scheme: use Basic or Bearer")


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def authenticate(
    request: Request, validator: Validator, needed_scope: str | None = None, org_id: str | None = None
) -> tuple[Caller, Actor]:
    """Validate the request's credential for ``needed_scope`` in ``org_id``."""
    secret = secret_from_header(request.headers.get("authorization"))
    ip = client_ip(request)
    caller = validator.validate(secret, needed_scope, org_id, ip)
    return caller, actor_of(caller, ip)


def actor_of(caller: Caller, ip: str | None) -> Actor:
    """The actor behind a validated credential, bounded by what its token may do."""
    reach = TokenReach(caller.token.scopes, caller.token.targets)
    return Actor(user_id=caller.user.id, upn=caller.user.upn, ip=ip, token=reach)
