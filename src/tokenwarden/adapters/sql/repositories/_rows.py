"""Row <-> domain conversions and statement fragments shared by the SQL repositories."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    exists,
    insert,
    or_,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from tokenwarden.adapters.sql import tables as t
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.principals import (
    IdentitySource,
    Invitation,
    Membership,
    Organization,
    RiskLevel,
    RiskState,
    Role,
    User,
    UserStatus,
    normalize_upn,
)
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.domain.watermarks import CLIENT_REMOVED, SubjectType, mark_names_for
from tokenwarden.ports.repositories import BreakGlassRequest, BulkJob, BulkJobItem
from tokenwarden.ports.signals import (
    Delivery,
    Stream,
)


def _membership_values(m: Membership) -> dict[str, Any]:
    return {
        "org_id": m.org_id,
        "user_id": m.user_id,
        "role": m.role.value,
        "status": m.status.value,
        "risk_level": m.risk_level.value,
        "risk_state": m.risk_state.value,
        "risk_updated_at": m.risk_updated_at,
    }


def _membership(row: Row[Any]) -> Membership:
    return Membership(
        org_id=row.org_id,
        user_id=row.user_id,
        role=Role(row.role),
        status=UserStatus(row.status),
        risk_level=RiskLevel(row.risk_level),
        risk_state=RiskState(row.risk_state),
        risk_updated_at=row.risk_updated_at,
    )


def _invitation_values(inv: Invitation) -> dict[str, Any]:
    return {
        "id": inv.id,
        "org_id": inv.org_id,
        "user_id": inv.user_id,
        "role": inv.role.value,
        "invited_by": inv.invited_by,
        "created_at": inv.created_at,
        "expires_at": inv.expires_at,
        "status": inv.status,
        "decided_at": inv.decided_at,
    }


def _invitation(row: Row[Any]) -> Invitation:
    return Invitation(
        id=row.id,
        org_id=row.org_id,
        user_id=row.user_id,
        role=Role(row.role),
        invited_by=row.invited_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        status=row.status,
        decided_at=row.decided_at,
    )


def _bg_values(r: BreakGlassRequest) -> dict[str, Any]:
    return {
        "id": r.id,
        "org_id": r.org_id,
        "requested_by": r.requested_by,
        "requested_at": r.requested_at,
        "expires_at": r.expires_at,
        "status": r.status,
        "approved_by": r.approved_by,
        "executed_at": r.executed_at,
        "reason": r.reason,
    }


def _bg(row: Row[Any]) -> BreakGlassRequest:
    return BreakGlassRequest(
        id=row.id,
        org_id=row.org_id,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        expires_at=row.expires_at,
        status=row.status,
        approved_by=row.approved_by,
        executed_at=row.executed_at,
        reason=row.reason,
    )


def _insert_unique(conn: Connection, table: Any, values: dict[str, Any], message: str) -> None:
    """Insert one row; a unique-key clash becomes a domain Conflict (savepoint keeps the txn)."""
    try:
        with conn.begin_nested():
            conn.execute(insert(table).values(**values))
    except IntegrityError as exc:
        raise Conflict(message) from exc


def _org(row: Row[Any]) -> Organization:
    return Organization(id=row.id, name=row.name, created_at=row.created_at)


def _user_values(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "upn": user.upn,
        "upn_key": normalize_upn(user.upn),
        "display_name": user.display_name,
        "status": user.status.value,
        "risk_level": user.risk_level.value,
        "identity_source": user.identity_source.value,
        "created_at": user.created_at,
        "risk_state": user.risk_state.value,
        "risk_updated_at": user.risk_updated_at,
        "email": user.email,
        "notify_digest": user.notify_digest,
    }


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        upn=row.upn,
        display_name=row.display_name,
        status=UserStatus(row.status),
        risk_level=RiskLevel(row.risk_level),
        identity_source=IdentitySource(row.identity_source),
        created_at=row.created_at,
        risk_state=RiskState(row.risk_state),
        risk_updated_at=row.risk_updated_at,
        email=row.email,
        notify_digest=bool(row.notify_digest),
    )


def _token_values(token: TokenRecord) -> dict[str, Any]:
    return {
        "id": token.authorization_id,
        "kind": token.kind.value,
        "user_id": token.user_id,
        "org_id": token.org_id,
        "display_name": token.display_name,
        "scopes": " ".join(token.scopes),
        "target_orgs": None if token.target_orgs is None else " ".join(token.target_orgs),
        "secret_hash": token.secret_hash,
        "pepper_id": token.pepper_id,
        "valid_from": token.valid_from,
        "valid_to": token.valid_to,
        "created_at": token.created_at,
        "revoked_at": token.revoked_at,
        "revoked_by": token.revoked_by,
        "revoke_reason": token.revoke_reason,
        "last_used_at": token.last_used_at,
        "last_used_ip": token.last_used_ip,
        "client_id": token.client_id,
        "family_id": token.family_id,
        "parent_id": token.parent_id,
        "rotated_at": token.rotated_at,
        "user_agent": token.user_agent,
        "purpose": token.purpose,
    }


def _token(row: Row[Any]) -> TokenRecord:
    return TokenRecord(
        authorization_id=row.id,
        kind=TokenKind(row.kind),
        user_id=row.user_id,
        org_id=row.org_id,
        display_name=row.display_name,
        scopes=tuple(row.scopes.split()),
        target_orgs=None if row.target_orgs is None else tuple(row.target_orgs.split()),
        secret_hash=bytes(row.secret_hash),
        pepper_id=row.pepper_id,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        revoke_reason=row.revoke_reason,
        last_used_at=row.last_used_at,
        last_used_ip=row.last_used_ip,
        client_id=row.client_id,
        family_id=row.family_id,
        parent_id=row.parent_id,
        rotated_at=row.rotated_at,
        user_agent=row.user_agent,
        purpose=row.purpose,
    )


def _member_of(c: Any) -> Any:
    """The member watermark subject of a token row: its organization and owner (as
    ``principals.member_subject`` spells it)."""
    return c.org_id + ":" + c.user_id


def _cut_by_watermark(c: Any) -> Any:
    """A token already dead by a watermark of its owner, its organization or its OAuth client
    (not live)."""
    w = t.watermarks.c
    own_kind = or_(*(and_(c.kind == k.value, w.kind.in_(mark_names_for(k))) for k in TokenKind))
    by_user = and_(w.subject_type == SubjectType.USER.value, w.subject_id == c.user_id, own_kind)
    by_member = and_(w.subject_type == SubjectType.MEMBER.value, w.subject_id == _member_of(c), own_kind)
    by_org = and_(w.subject_type == SubjectType.ORG.value, w.subject_id == c.org_id, w.kind == c.kind)
    by_client = and_(  # its OAuth client disabled (per kind) or removed (CLIENT_REMOVED: END_OF_TIME)
        w.subject_type == SubjectType.CLIENT.value,
        w.subject_id == c.client_id,
        or_(w.kind == c.kind, w.kind == CLIENT_REMOVED),
    )
    return exists().where(w.valid_from > c.valid_from, or_(by_user, by_member, by_org, by_client))


def _job_values(job: BulkJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "org_id": job.org_id,
        "type": job.type,
        "status": job.status,
        "kinds": " ".join(job.kinds),
        "dry_run": job.dry_run,
        "created_by": job.created_by,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "total": job.total,
        "source_name": job.source_name,
    }


def _job(row: Row[Any]) -> BulkJob:
    return BulkJob(
        id=row.id,
        org_id=row.org_id,
        type=row.type,
        status=row.status,
        kinds=tuple(row.kinds.split()),
        dry_run=bool(row.dry_run),
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        total=row.total,
        source_name=row.source_name,
    )


def _item_values(item: BulkJobItem) -> dict[str, Any]:
    return {
        "job_id": item.job_id,
        "line_no": item.line_no,
        "upn": item.upn,
        "status": item.status,
        "error": item.error,
        "revoked_count": item.revoked_count,
        "processed_at": item.processed_at,
    }


def _item(row: Row[Any]) -> BulkJobItem:
    return BulkJobItem(
        job_id=row.job_id,
        line_no=row.line_no,
        upn=row.upn,
        status=row.status,
        error=row.error,
        revoked_count=row.revoked_count,
        processed_at=row.processed_at,
    )


def _stream_values(stream: Stream) -> dict[str, Any]:
    return {
        "stream_id": stream.stream_id,
        "org_id": stream.org_id,
        "iss": stream.iss,
        "aud": list(stream.aud),
        "events_requested": list(stream.events_requested),
        "delivery_method": stream.delivery_method,
        "endpoint_url": stream.endpoint_url,
        "authorization_header": stream.authorization_header,
        "description": stream.description,
        "status": stream.status,
        "status_reason": stream.status_reason,
        "min_verification_interval": stream.min_verification_interval,
        "inactivity_timeout": stream.inactivity_timeout,
        "created_by": stream.created_by,
        "created_at": stream.created_at,
        "updated_at": stream.updated_at,
    }


def _stream(row: Row[Any]) -> Stream:
    return Stream(
        stream_id=row.stream_id,
        org_id=row.org_id,
        iss=row.iss,
        aud=tuple(row.aud),
        events_requested=tuple(row.events_requested),
        delivery_method=row.delivery_method,
        created_at=row.created_at,
        updated_at=row.updated_at,
        endpoint_url=row.endpoint_url,
        authorization_header=row.authorization_header,
        description=row.description,
        status=row.status,
        status_reason=row.status_reason,
        min_verification_interval=row.min_verification_interval,
        inactivity_timeout=row.inactivity_timeout,
        cursor=int(row.cursor),
        created_by=row.created_by,
    )


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(
        stream_id=row.stream_id,
        event_id=int(row.event_id),
        jti=row.jti,
        set_jws=row.set_jws,
        status=row.status,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        attempts=int(row.attempts),
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        id=int(row.id),
    )
