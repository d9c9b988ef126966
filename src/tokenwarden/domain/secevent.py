"""Security Event Tokens (RFC 8417) as the Shared Signals Framework 1.0 and CAEP 1.0 profile them.

Pure data: event type URIs, subject identifiers (RFC 9493) and the claims of one SET. Signing
and delivery live in the services; nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Final

CAEP: Final = "https://schemas.openid.net/secevent/caep/event-type/"
SESSION_REVOKED: Final = CAEP + "session-revoked"
CREDENTIAL_CHANGE: Final = CAEP + "credential-change"
TOKEN_CLAIMS_CHANGE: Final = CAEP + "token-claims-change"
VERIFICATION: Final = "https://schemas.openid.net/secevent/ssf/event-type/verification"

# What a receiver may request; verification events are sent whenever a receiver asks for one.
EVENTS_SUPPORTED: Final[tuple[str, ...]] = (SESSION_REVOKED, CREDENTIAL_CHANGE, TOKEN_CLAIMS_CHANGE)

PUSH: Final = "urn:ietf:rfc:8935"
POLL: Final = "urn:ietf:rfc:8936"
DELIVERY_METHODS: Final[tuple[str, ...]] = (PUSH, POLL)
SET_MEDIA_TYPE: Final = "application/secevent+jwt"
SET_TYP: Final = "secevent+jwt"

# CAEP has no credential type for API tokens; "app" is the closest (documented in docs/ssf.md).
CREDENTIAL_TYPE: Final = "app"
INITIATING_ENTITIES: Final = frozenset({"admin", "user", "policy", "system"})
CHANGE_TYPES: Final = frozenset({"create", "revoke", "update", "delete"})

_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def user_subject(upn: str, user_id: str) -> dict[str, Any]:
    """``email`` when the UPN is an address, else ``iss_sub`` (the issuer is filled in per
    stream when the SET is built, see :func:`resolve_subject`)."""
    if _EMAIL.match(upn):
        return {"format": "email", "email": upn.casefold()}
    return {"format": "iss_sub", "iss": None, "sub": user_id}


def org_subject(org_id: str) -> dict[str, Any]:
    """The whole organization (break-glass, revocation rules): one SET instead of one per user."""
    return {"format": "opaque", "id": f"org:{org_id}"}


def session_subject(user: dict[str, Any], session_id: str) -> dict[str, Any]:
    return {"format": "complex", "user": user, "session": {"format": "opaque", "id": session_id}}


def resolve_subject(subject: dict[str, Any], iss: str) -> dict[str, Any]:
    """Fill the issuer of ``iss_sub`` subjects (also inside ``complex`` ones)."""
    if subject.get("format") == "iss_sub" and not subject.get("iss"):
        return {**subject, "iss": iss}
    if subject.get("format") == "complex":
        return {k: resolve_subject(v, iss) if isinstance(v, dict) else v for k, v in subject.items()}
    return subject


def subject_key(subject: dict[str, Any]) -> str:
    """A canonical string for comparing subjects (emails compare case-insensitively)."""
    norm = dict(subject)
    if norm.get("format") == "email" and isinstance(norm.get("email"), str):
        norm["email"] = norm["email"].casefold()
    if norm.get("format") == "complex":
        norm = {k: json.loads(subject_key(v)) if isinstance(v, dict) else v for k, v in norm.items()}
    return json.dumps(norm, sort_keys=True, separators=(",", ":"))


def subject_keys(subject: dict[str, Any]) -> set[str]:
    """The subject and, for a complex subject, each of its members (a removed user also
    silences events about that user's sessions)."""
    keys = {subject_key(subject)}
    if subject.get("format") == "complex":
        keys |= {subject_key(v) for v in subject.values() if isinstance(v, dict)}
    return keys


def reason(text: str | None) -> dict[str, str] | None:
    """CAEP ``reason_admin``/``reason_user``: a localizable object with at least ``en``."""
    return {"en": text[:512]} if text else None


def common_members(at: datetime, initiating_entity: str, reason_admin: str | None) -> dict[str, Any]:
    if initiating_entity not in INITIATING_ENTITIES:
        raise ValueError(f"initiating_entity must be one of {sorted(INITIATING_ENTITIES)}")
    members: dict[str, Any] = {"event_timestamp": int(at.timestamp()), "initiating_entity": initiating_entity}
    why = reason(reason_admin)
    if why:
        members["reason_admin"] = why
    return members


def set_claims(
    *,
    iss: str,
    aud: tuple[str, ...],
    jti: str,
    iat: datetime,
    txn: str,
    sub_id: dict[str, Any],
    event_type: str,
    event: dict[str, Any],
) -> dict[str, Any]:
    """The payload of one SET: exactly one event, a top-level ``sub_id``, no ``sub``, no ``exp``."""
    return {
        "iss": iss,
        "aud": aud[0] if len(aud) == 1 else list(aud),
        "iat": int(iat.timestamp()),
        "jti": jti,
        "txn": txn,
        "sub_id": resolve_subject(sub_id, iss),
        "events": {event_type: event},
    }
