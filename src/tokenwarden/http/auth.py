"""Credentials from the Authorization header: Basic (any user, PAT as password) or Bearer."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import NoReturn

from fastapi import Request

from tokenwarden.domain.errors import DomainError, NotFound, Unauthenticated
from tokenwarden.domain.principals import Organization
from tokenwarden.http.usage import note_token
from tokenwarden.services.common import Actor
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
    try:
        caller = validator.validate(secret, needed_scope, org_id, ip)
    except DomainError as exc:
        note_token(request, exc.token_key)
        raise
    note_token(request, caller.key)
    return caller, caller.actor(ip, request.headers.get("user-agent"))


def org_not_found(org: str) -> NotFound:
    """The one answer for an organization that does not exist *and* for one the caller is not
    a member of: the same status, code and message, so membership probes learn nothing."""
    return NotFound(f"organization {org!r} not found", code="organizationNotFound")


def hide_org(
    validator: Validator, secret: str, ip: str | None, org: str, org_id: str | None, error: DomainError | None
) -> NoReturn:
    """Decide what a failed org-scoped check may reveal; always raises.

    The credential is judged on its own first (401 for a bad one, whether or not ``org``
    exists); then a caller who is not a member — or an ``org`` that does not exist — gets
    :func:`org_not_found`; only a member sees the original ``error`` (scope, targets...)."""
    probe = validator.validate(secret, None, None, ip)
    if org_id is None or org_id not in probe.user.roles or error is None:
        raise org_not_found(org)
    raise error


def member_org(
    validator: Validator,
    find_org: Callable[[str], Organization],
    secret: str,
    needed_scope: str | None,
    org: str,
    ip: str | None,
) -> tuple[Organization, Caller]:
    """Authenticate ``secret`` for ``needed_scope`` in ``org``: 401 before anything about the
    organization, then one identical 404 for an unknown organization and for a non-member."""
    try:
        the_org = find_org(org)
    except NotFound:
        hide_org(validator, secret, ip, org, None, None)
    try:
        return the_org, validator.validate(secret, needed_scope, the_org.id, ip)
    except DomainError as exc:
        hide_org(validator, secret, ip, org, the_org.id, exc)
