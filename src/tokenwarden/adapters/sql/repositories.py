"""SQL implementations of the storage ports (SQLite and PostgreSQL share this code)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from tokenwarden.adapters.sql import tables as t
from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.clock import SystemClock
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.events import EventType, InvalidationEvent
from tokenwarden.domain.policies import OrgPolicy
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
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.domain.watermarks import ENTRA_MARKS, SubjectType, mark_names_for
from tokenwarden.ports.repositories import AuditQuery, BreakGlassRequest, BulkJob, BulkJobItem, UpnMatch
from tokenwarden.ports.signals import (
    ACKED,
    DELIVERED,
    FAILED,
    PENDING,
    Delivery,
    DueQuery,
    SecurityEvent,
    SigningKey,
    Stream,
    StreamSubject,
)


class SqlOrgRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, org: Organization) -> None:
        values = {
            "id": org.id,
            "name": org.name,
            "name_key": org.name.casefold(),
            "created_at": org.created_at,
        }
        _insert_unique(self._c, t.orgs, values, f"organization {org.name!r} exists")

    def get(self, org_id: str) -> Organization | None:
        row = self._c.execute(select(t.orgs).where(t.orgs.c.id == org_id)).first()
        return _org(row) if row else None

    def by_name(self, name: str) -> Organization | None:
        row = self._c.execute(select(t.orgs).where(t.orgs.c.name_key == name.casefold())).first()
        return _org(row) if row else None

    def all(self) -> list[Organization]:
        return [_org(r) for r in self._c.execute(select(t.orgs).order_by(t.orgs.c.name_key))]


class SqlUserRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, user: User) -> None:
        _insert_unique(self._c, t.users, _user_values(user), f"user {user.upn!r} exists")

    def get(self, user_id: str) -> User | None:
        row = self._c.execute(select(t.users).where(t.users.c.id == user_id)).first()
        return _user(row) if row else None

    def by_upn(self, upn: str) -> User | None:
        row = self._c.execute(select(t.users).where(t.users.c.upn_key == normalize_upn(upn))).first()
        return _user(row) if row else None

    def update(self, user: User) -> None:
        values = _user_values(user)
        del values["id"]
        try:
            with self._c.begin_nested():
                self._c.execute(update(t.users).where(t.users.c.id == user.id).values(**values))
        except IntegrityError as exc:
            raise Conflict(f"user {user.upn!r} exists") from exc

    def find(self, org_id: str | None = None, status: UserStatus | None = None) -> list[User]:
        """Users (of ``org_id``: by their membership status there; else by their own status)."""
        stmt = select(t.users)
        if org_id is not None:
            stmt = stmt.join(t.memberships, t.memberships.c.user_id == t.users.c.id).where(
                t.memberships.c.org_id == org_id
            )
            if status is not None:
                stmt = stmt.where(t.memberships.c.status == status.value)
        elif status is not None:
            stmt = stmt.where(t.users.c.status == status.value)
        return [_user(r) for r in self._c.execute(stmt.order_by(t.users.c.upn_key))]

    def set_membership(self, membership: Membership) -> None:
        m = t.memberships.c
        values = _membership_values(membership)
        changed = self._c.execute(
            update(t.memberships)
            .where(and_(m.org_id == membership.org_id, m.user_id == membership.user_id))
            .values(**values)
        ).rowcount
        if not changed:
            self._c.execute(insert(t.memberships).values(**values))

    def remove_membership(self, org_id: str, user_id: str) -> bool:
        m = t.memberships.c
        result = self._c.execute(delete(t.memberships).where(and_(m.org_id == org_id, m.user_id == user_id)))
        return bool(result.rowcount)

    def membership(self, org_id: str, user_id: str) -> Membership | None:
        m = t.memberships.c
        row = self._c.execute(
            select(t.memberships).where(and_(m.org_id == org_id, m.user_id == user_id))
        ).first()
        return _membership(row) if row else None

    def memberships_of(self, user_id: str) -> list[Membership]:
        rows = self._c.execute(select(t.memberships).where(t.memberships.c.user_id == user_id))
        return [_membership(r) for r in rows]

    def count(self) -> int:
        return int(self._c.execute(select(func.count()).select_from(t.users)).scalar_one())

    def ids_at_risk(self, org_id: str, min_rank_levels: Sequence[str]) -> list[str]:
        stmt = (
            select(t.users.c.id)
            .join(t.memberships, t.memberships.c.user_id == t.users.c.id)
            .where(t.memberships.c.org_id == org_id, t.memberships.c.risk_level.in_(list(min_rank_levels)))
            .order_by(t.users.c.upn_key)
        )
        return [r.id for r in self._c.execute(stmt)]


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


class SqlInvitationRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, invitation: Invitation) -> None:
        self._c.execute(insert(t.invitations).values(**_invitation_values(invitation)))

    def get(self, invitation_id: str) -> Invitation | None:
        row = self._c.execute(select(t.invitations).where(t.invitations.c.id == invitation_id)).first()
        return _invitation(row) if row else None

    def update(self, invitation: Invitation) -> None:
        values = _invitation_values(invitation)
        del values["id"]
        self._c.execute(update(t.invitations).where(t.invitations.c.id == invitation.id).values(**values))

    def find(self, *, org_id: str | None = None, user_id: str | None = None) -> list[Invitation]:
        i = t.invitations.c
        stmt = select(t.invitations)
        if org_id is not None:
            stmt = stmt.where(i.org_id == org_id)
        if user_id is not None:
            stmt = stmt.where(i.user_id == user_id)
        return [_invitation(r) for r in self._c.execute(stmt.order_by(i.created_at, i.id))]


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


class SqlTokenRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, token: TokenRecord) -> None:
        _insert_unique(self._c, t.tokens, _token_values(token), "duplicate token")

    def get(self, authorization_id: str) -> TokenRecord | None:
        row = self._c.execute(select(t.tokens).where(t.tokens.c.id == authorization_id)).first()
        return _token(row) if row else None

    def by_hash(self, secret_hash: bytes) -> TokenRecord | None:
        row = self._c.execute(select(t.tokens).where(t.tokens.c.secret_hash == secret_hash)).first()
        return _token(row) if row else None

    def update(self, token: TokenRecord) -> None:
        values = _token_values(token)
        del values["id"]
        self._c.execute(update(t.tokens).where(t.tokens.c.id == token.authorization_id).values(**values))

    def list_for_user(self, user_id: str, kind: TokenKind | None = None) -> list[TokenRecord]:
        stmt = select(t.tokens).where(t.tokens.c.user_id == user_id)
        if kind is not None:
            stmt = stmt.where(t.tokens.c.kind == kind.value)
        return [_token(r) for r in self._c.execute(stmt.order_by(t.tokens.c.created_at, t.tokens.c.id))]

    def count_live(
        self,
        *,
        user_ids: Sequence[str] | None = None,
        org_id: str | None = None,
        kinds: Sequence[str] | None = None,
        issued_before: datetime,
        now: datetime,
    ) -> dict[str, int]:
        c = t.tokens.c
        stmt = (
            select(c.kind, func.count())
            .where(c.revoked_at.is_(None), c.valid_to > now, c.valid_from < issued_before)
            .where(~_cut_by_watermark(c))
            .group_by(c.kind)
        )
        if user_ids is not None:
            stmt = stmt.where(c.user_id.in_(list(user_ids)))
        if org_id is not None:
            stmt = stmt.where(c.org_id == org_id)
        if kinds is not None:
            stmt = stmt.where(c.kind.in_(list(kinds)))
        return {row[0]: int(row[1]) for row in self._c.execute(stmt)}

    def rehash(self, authorization_id: str, old_hash: bytes, new_hash: bytes, pepper_id: str) -> bool:
        c = t.tokens.c
        result = self._c.execute(
            update(t.tokens)
            .where(and_(c.id == authorization_id, c.secret_hash == old_hash))
            .values(secret_hash=new_hash, pepper_id=pepper_id)
        )
        return bool(result.rowcount)

    def record_usage(self, uses: Sequence[tuple[bytes, datetime, str | None]]) -> None:
        if not uses:
            return
        c = t.tokens.c

        stmt = (
            update(t.tokens)
            .where(c.secret_hash == bindparam("b_hash"))
            .where(or_(c.last_used_at.is_(None), c.last_used_at < bindparam("b_at")))
            .values(last_used_at=bindparam("b_at"), last_used_ip=bindparam("b_ip"))
        )
        self._c.execute(stmt, [{"b_hash": h, "b_at": at, "b_ip": ip} for h, at, ip in uses])


class SqlPolicyRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def get(self, org_id: str) -> OrgPolicy | None:
        row = self._c.execute(select(t.org_policies).where(t.org_policies.c.org_id == org_id)).first()
        if row is None:
            return None
        return OrgPolicy(
            org_id=row.org_id,
            break_glass_two_person=row.break_glass_two_person,
            break_glass_approval_minutes=row.break_glass_approval_minutes,
            max_lifetime_days=row.max_lifetime_days,
            restrict_full_scope=row.restrict_full_scope,
            restrict_creation=row.restrict_creation,
            creation_allowlist=tuple(row.creation_allowlist),
            require_external_identity=row.require_external_identity,
            disable_pat_creation=row.disable_pat_creation,
        )

    def save(self, policy: OrgPolicy) -> None:
        values: dict[str, Any] = {
            "max_lifetime_days": policy.max_lifetime_days,
            "restrict_full_scope": policy.restrict_full_scope,
            "restrict_creation": policy.restrict_creation,
            "creation_allowlist": list(policy.creation_allowlist),
            "require_external_identity": policy.require_external_identity,
            "disable_pat_creation": policy.disable_pat_creation,
            "break_glass_two_person": policy.break_glass_two_person,
            "break_glass_approval_minutes": policy.break_glass_approval_minutes,
        }
        changed = self._c.execute(
            update(t.org_policies).where(t.org_policies.c.org_id == policy.org_id).values(**values)
        ).rowcount
        if not changed:
            self._c.execute(insert(t.org_policies).values(org_id=policy.org_id, **values))


class SqlAuditRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def append(self, entry: AuditEntry) -> None:
        self._c.execute(
            insert(t.audit_log).values(
                at=entry.at,
                event_type=entry.event_type,
                org_id=entry.org_id,
                actor_id=entry.actor_id,
                actor_upn=entry.actor_upn,
                target_type=entry.target_type,
                target_id=entry.target_id,
                ip=entry.ip,
                details=entry.details,
            )
        )

    def query(self, query: AuditQuery) -> list[AuditEntry]:
        c = t.audit_log.c
        stmt = select(t.audit_log).where(c.id > query.after_id)
        if query.org_id is not None:
            stmt = stmt.where(c.org_id == query.org_id)
        if query.since is not None:
            stmt = stmt.where(c.at >= query.since)
        if query.until is not None:
            stmt = stmt.where(c.at < query.until)
        if query.actor_id is not None:
            stmt = stmt.where(c.actor_id == query.actor_id)
        if query.target_id is not None:
            stmt = stmt.where(c.target_id == query.target_id)
        if query.event_types:
            stmt = stmt.where(c.event_type.in_(query.event_types))
        if query.before_id is not None:
            stmt = stmt.where(c.id < query.before_id)
        order = c.id.desc() if query.newest_first else c.id
        rows = self._c.execute(stmt.order_by(order).limit(query.limit))
        return [
            AuditEntry(
                id=r.id,
                at=r.at,
                event_type=r.event_type,
                org_id=r.org_id,
                actor_id=r.actor_id,
                actor_upn=r.actor_upn,
                target_type=r.target_type,
                target_id=r.target_id,
                ip=r.ip,
                details=dict(r.details or {}),
            )
            for r in rows
        ]


class SqlEventRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn
        self._clock = SystemClock()

    def append(self, event: InvalidationEvent) -> None:
        if self._c.dialect.name == "postgresql":
            # Serialise event writers so that sequence order equals commit order: a reader
            # that has seen seq N can never later find a committed event below N.
            self._c.exec_driver_sql("SELECT pg_advisory_xact_lock(7355608)")
        self._c.execute(
            insert(t.events).values(at=self._clock.now(), type=event.type.value, payload=event.payload)
        )

    def since(self, seq: int, limit: int = 1000) -> list[InvalidationEvent]:
        rows = self._c.execute(
            select(t.events).where(t.events.c.seq > seq).order_by(t.events.c.seq).limit(limit)
        )
        return [InvalidationEvent(EventType(r.type), dict(r.payload), r.seq) for r in rows]

    def latest_seq(self) -> int:
        return int(self._c.execute(select(func.coalesce(func.max(t.events.c.seq), 0))).scalar_one())


class SqlRuleRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, rule: RevocationRule) -> None:
        self._c.execute(
            insert(t.revocation_rules).values(
                id=rule.id,
                org_id=rule.org_id,
                scopes=" ".join(rule.scopes),
                created_before=rule.created_before,
                created_at=rule.created_at,
                created_by=rule.created_by,
                created_after=rule.created_after,
                kinds=" ".join(rule.kinds) if rule.kinds else None,
                user_ids=" ".join(rule.user_ids) if rule.user_ids else None,
                match_implied=rule.match_implied,
            )
        )

    def find(self, org_id: str | None = None) -> list[RevocationRule]:
        stmt = select(t.revocation_rules)
        if org_id is not None:
            stmt = stmt.where(t.revocation_rules.c.org_id == org_id)
        return [
            RevocationRule(
                id=r.id,
                org_id=r.org_id,
                scopes=tuple(r.scopes.split()),
                created_before=r.created_before,
                created_at=r.created_at,
                created_by=r.created_by,
                created_after=r.created_after,
                kinds=tuple(TokenKind(k) for k in r.kinds.split()) if r.kinds else None,
                user_ids=tuple(r.user_ids.split()) if r.user_ids else None,
                match_implied=r.match_implied,
            )
            for r in self._c.execute(stmt.order_by(t.revocation_rules.c.created_at))
        ]

    def delete(self, rule_id: str) -> bool:
        result = self._c.execute(delete(t.revocation_rules).where(t.revocation_rules.c.id == rule_id))
        return bool(result.rowcount)

    def live_tokens(
        self,
        org_id: str,
        *,
        issued_before: datetime,
        now: datetime,
        issued_after: datetime | None = None,
        kinds: Sequence[str] | None = None,
        user_ids: Sequence[str] | None = None,
    ) -> list[TokenRecord]:
        c = t.tokens.c
        stmt = select(t.tokens).where(
            c.org_id == org_id, c.revoked_at.is_(None), c.valid_to > now, c.valid_from < issued_before
        )
        if issued_after is not None:
            stmt = stmt.where(c.valid_from >= issued_after)
        if kinds is not None:
            stmt = stmt.where(c.kind.in_(list(kinds)))
        if user_ids is not None:
            stmt = stmt.where(c.user_id.in_(list(user_ids)))
        return [_token(r) for r in self._c.execute(stmt)]


class SqlWatermarkRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def raise_to(
        self, subject_type: str, subject_ids: Sequence[str], kinds: Sequence[str], at: datetime
    ) -> None:
        if not subject_ids or not kinds:
            return
        w = t.watermarks.c
        for start in range(0, len(subject_ids), 500):
            chunk = list(subject_ids[start : start + 500])
            # Raise existing marks (set-based), then insert the missing ones.
            self._c.execute(
                update(t.watermarks)
                .where(w.subject_type == subject_type, w.subject_id.in_(chunk), w.kind.in_(list(kinds)))
                .where(w.valid_from < at)
                .values(valid_from=at)
            )
            existing = {
                (r.subject_id, r.kind)
                for r in self._c.execute(
                    select(w.subject_id, w.kind).where(
                        w.subject_type == subject_type, w.subject_id.in_(chunk), w.kind.in_(list(kinds))
                    )
                )
            }
            missing = [
                {"subject_type": subject_type, "subject_id": s, "kind": k, "valid_from": at}
                for s in chunk
                for k in kinds
                if (s, k) not in existing
            ]
            if missing:
                self._c.execute(insert(t.watermarks), missing)

    def for_subject(self, subject_type: str, subject_id: str) -> dict[str, datetime]:
        w = t.watermarks.c
        rows = self._c.execute(
            select(w.kind, w.valid_from).where(w.subject_type == subject_type, w.subject_id == subject_id)
        )
        return {r.kind: r.valid_from for r in rows}

    def for_type(self, subject_type: str) -> dict[str, dict[str, datetime]]:
        w = t.watermarks.c
        result: dict[str, dict[str, datetime]] = {}
        for r in self._c.execute(select(t.watermarks).where(w.subject_type == subject_type)):
            result.setdefault(r.subject_id, {})[r.kind] = r.valid_from
        return result


class SqlBreakGlassRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, request: BreakGlassRequest) -> None:
        self._c.execute(insert(t.break_glass_requests).values(**_bg_values(request)))

    def get(self, request_id: str) -> BreakGlassRequest | None:
        row = self._c.execute(
            select(t.break_glass_requests).where(t.break_glass_requests.c.id == request_id)
        ).first()
        return _bg(row) if row else None

    def update(self, request: BreakGlassRequest) -> None:
        values = _bg_values(request)
        del values["id"]
        self._c.execute(
            update(t.break_glass_requests).where(t.break_glass_requests.c.id == request.id).values(**values)
        )

    def find(self, org_id: str) -> list[BreakGlassRequest]:
        b = t.break_glass_requests.c
        rows = self._c.execute(
            select(t.break_glass_requests).where(b.org_id == org_id).order_by(b.requested_at)
        )
        return [_bg(r) for r in rows]

    def top_owners(self, org_id: str, now: datetime, limit: int) -> list[tuple[str, int]]:
        return self._top(t.tokens.c.user_id, org_id, now, limit)

    def count_live(
        self, org_id: str, *, now: datetime, issued_before: datetime, org_marks: Mapping[str, datetime]
    ) -> dict[str, int]:
        """One query: the live-token filter, the org marks as bounds, the owner's user
        watermarks as a NOT EXISTS over the watermarks primary key."""
        c, w = t.tokens.c, t.watermarks.c
        conds: list[Any] = [
            c.org_id == org_id,
            c.revoked_at.is_(None),
            c.valid_to > now,
            c.valid_from < issued_before,
        ]
        conds += [or_(c.kind != kind, c.valid_from >= at) for kind, at in org_marks.items()]
        entra = [and_(w.kind == m, c.kind.in_([k.value for k in ks])) for m, ks in ENTRA_MARKS.items()]
        applies = or_(w.kind == c.kind, *entra)
        dead = (
            select(w.subject_id)
            .where(
                or_(
                    and_(w.subject_type == SubjectType.USER.value, w.subject_id == c.user_id),
                    and_(w.subject_type == SubjectType.MEMBER.value, w.subject_id == _member_of(c)),
                ),
                applies,
            )
            .where(c.valid_from < w.valid_from)
            .exists()
        )
        stmt = select(c.kind, func.count()).where(*conds, ~dead).group_by(c.kind)
        return {row[0]: int(row[1]) for row in self._c.execute(stmt)}

    def top_clients(self, org_id: str, now: datetime, limit: int) -> list[tuple[str, int]]:
        return self._top(t.tokens.c.client_id, org_id, now, limit)

    def _top(self, column: Any, org_id: str, now: datetime, limit: int) -> list[tuple[str, int]]:
        c = t.tokens.c
        n = func.count().label("n")
        stmt = (
            select(column, n)
            .where(c.org_id == org_id, c.revoked_at.is_(None), c.valid_to > now, column.is_not(None))
            .group_by(column)
            .order_by(n.desc(), column)
            .limit(limit)
        )
        return [(str(r[0]), int(r[1])) for r in self._c.execute(stmt)]


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
    )


class SqlBulkJobRepository:
    _IN_CHUNK = 500  # bound the number of bind parameters per statement

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, job: BulkJob, items: Sequence[BulkJobItem]) -> None:
        _insert_unique(self._c, t.bulk_jobs, _job_values(job), f"bulk job {job.id} exists")
        if items:
            self._c.execute(insert(t.bulk_job_items), [_item_values(i) for i in items])

    def get(self, job_id: str) -> BulkJob | None:
        row = self._c.execute(select(t.bulk_jobs).where(t.bulk_jobs.c.id == job_id)).first()
        return _job(row) if row else None

    def claim(self, job_id: str, at: datetime) -> BulkJob | None:
        j = t.bulk_jobs.c
        # The UPDATE takes the row lock on PostgreSQL (SQLite writers already take turns).
        changed = self._c.execute(
            update(t.bulk_jobs)
            .where(j.id == job_id)
            .values(
                updated_at=at,
                status=case((j.status == "completed", j.status), else_=literal("running")),
            )
        ).rowcount
        return self.get(job_id) if changed else None

    def set_status(self, job_id: str, status: str, at: datetime) -> None:
        self._c.execute(
            update(t.bulk_jobs).where(t.bulk_jobs.c.id == job_id).values(status=status, updated_at=at)
        )

    def pending(self, job_id: str, limit: int) -> list[BulkJobItem]:
        i = t.bulk_job_items.c
        rows = self._c.execute(
            select(t.bulk_job_items)
            .where(i.job_id == job_id, i.status == "Pending")
            .order_by(i.line_no)
            .limit(limit)
        )
        return [_item(r) for r in rows]

    def finish_items(self, items: Sequence[BulkJobItem]) -> int:
        if not items:
            return 0
        i = t.bulk_job_items.c
        stmt = (
            update(t.bulk_job_items)
            .where(i.job_id == bindparam("b_job"), i.line_no == bindparam("b_line"), i.status == "Pending")
            .values(
                status=bindparam("b_status"),
                error=bindparam("b_error"),
                revoked_count=bindparam("b_count"),
                processed_at=bindparam("b_at"),
            )
        )
        result = self._c.execute(
            stmt,
            [
                {
                    "b_job": it.job_id,
                    "b_line": it.line_no,
                    "b_status": it.status,
                    "b_error": it.error,
                    "b_count": it.revoked_count,
                    "b_at": it.processed_at,
                }
                for it in items
            ],
        )
        return int(result.rowcount)

    def items(self, job_id: str) -> list[BulkJobItem]:
        i = t.bulk_job_items.c
        rows = self._c.execute(select(t.bulk_job_items).where(i.job_id == job_id).order_by(i.line_no))
        return [_item(r) for r in rows]

    def counts(self, job_id: str) -> dict[str, int]:
        i = t.bulk_job_items.c
        rows = self._c.execute(select(i.status, func.count()).where(i.job_id == job_id).group_by(i.status))
        return {r[0]: int(r[1]) for r in rows}

    def match_upns(self, org_id: str, upn_keys: Sequence[str]) -> dict[str, UpnMatch]:
        u, m = t.users.c, t.memberships.c
        found: dict[str, UpnMatch] = {}
        keys = list(dict.fromkeys(upn_keys))
        for start in range(0, len(keys), self._IN_CHUNK):
            stmt = (
                select(u.upn_key, u.id, m.user_id.label("member"))
                .select_from(t.users.outerjoin(t.memberships, and_(m.user_id == u.id, m.org_id == org_id)))
                .where(u.upn_key.in_(keys[start : start + self._IN_CHUNK]))
            )
            for r in self._c.execute(stmt):
                found[r.upn_key] = UpnMatch(r.id, r.member is not None)
        return found

    def live_tokens_per_user(
        self, user_ids: Sequence[str], kinds: Sequence[str], issued_before: datetime, now: datetime
    ) -> dict[str, int]:
        c = t.tokens.c
        counts: dict[str, int] = {}
        ids = list(dict.fromkeys(user_ids))
        for start in range(0, len(ids), self._IN_CHUNK):
            stmt = (
                select(c.user_id, func.count())
                .where(
                    c.user_id.in_(ids[start : start + self._IN_CHUNK]),
                    c.kind.in_(list(kinds)),
                    c.revoked_at.is_(None),
                    c.valid_to > now,
                    c.valid_from < issued_before,
                    ~_cut_by_watermark(c),
                )
                .group_by(c.user_id)
            )
            counts.update({r[0]: int(r[1]) for r in self._c.execute(stmt)})
        return counts


def _member_of(c: Any) -> Any:
    """The member watermark subject of a token row: its organization and owner (as
    ``principals.member_subject`` spells it)."""
    return c.org_id + ":" + c.user_id


def _cut_by_watermark(c: Any) -> Any:
    """A token already dead by a watermark of its owner or of its organization (not live)."""
    w = t.watermarks.c
    own_kind = or_(*(and_(c.kind == k.value, w.kind.in_(mark_names_for(k))) for k in TokenKind))
    by_user = and_(w.subject_type == SubjectType.USER.value, w.subject_id == c.user_id, own_kind)
    by_member = and_(w.subject_type == SubjectType.MEMBER.value, w.subject_id == _member_of(c), own_kind)
    by_org = and_(w.subject_type == SubjectType.ORG.value, w.subject_id == c.org_id, w.kind == c.kind)
    return exists().where(w.valid_from > c.valid_from, or_(by_user, by_member, by_org))


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


class SqlSignalRepository:
    """The Shared Signals tables: outbox, signing keys, streams, subjects, delivery queue."""

    _EVENTS_LOCK = 7355608  # the events table's lock: outbox ids grow in commit order too

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    # ------------------------------------------------------------------ outbox
    def append_event(self, event: SecurityEvent) -> None:
        if self._c.dialect.name == "postgresql":
            self._c.exec_driver_sql(f"SELECT pg_advisory_xact_lock({self._EVENTS_LOCK})")
        self._c.execute(
            insert(t.security_events).values(
                created_at=event.created_at,
                event_type=event.event_type,
                subject=event.subject,
                event=event.event,
                org_id=event.org_id,
                txn=event.txn,
                stream_id=event.stream_id,
            )
        )

    def events_after(self, org_id: str, stream_id: str, after_id: int, limit: int) -> list[SecurityEvent]:
        c = t.security_events.c
        rows = self._c.execute(
            select(t.security_events)
            .where(
                c.id > after_id,
                c.org_id == org_id,
                or_(c.stream_id.is_(None), c.stream_id == stream_id),
            )
            .order_by(c.id)
            .limit(limit)
        )
        return [
            SecurityEvent(
                event_type=r.event_type,
                subject=dict(r.subject),
                event=dict(r.event),
                org_id=r.org_id,
                txn=r.txn,
                created_at=r.created_at,
                stream_id=r.stream_id,
                id=int(r.id),
            )
            for r in rows
        ]

    def latest_event_id(self) -> int:
        return int(self._c.execute(select(func.coalesce(func.max(t.security_events.c.id), 0))).scalar_one())

    # ------------------------------------------------------------------ keys
    def add_key(self, key: SigningKey) -> None:
        _insert_unique(
            self._c,
            t.signing_keys,
            {
                "kid": key.kid,
                "alg": key.alg,
                "public_jwk": key.public_jwk,
                "private_key": key.private_key,
                "pepper_id": key.pepper_id,
                "status": key.status,
                "created_at": key.created_at,
            },
            f"signing key {key.kid} exists",
        )

    def signing_keys(self, alg: str | None = None) -> list[SigningKey]:
        k = t.signing_keys.c
        stmt = select(t.signing_keys).where(k.status == "active")
        if alg is not None:
            stmt = stmt.where(k.alg == alg)
        return [
            SigningKey(
                kid=r.kid,
                alg=r.alg,
                public_jwk=dict(r.public_jwk),
                private_key=bytes(r.private_key),
                pepper_id=r.pepper_id,
                created_at=r.created_at,
                status=r.status,
            )
            for r in self._c.execute(stmt.order_by(k.created_at, k.kid))
        ]

    # ------------------------------------------------------------------ streams
    def add_stream(self, stream: Stream) -> None:
        values = _stream_values(stream)
        values["cursor"] = stream.cursor
        _insert_unique(self._c, t.ssf_streams, values, f"stream {stream.stream_id} exists")

    def get_stream(self, stream_id: str) -> Stream | None:
        row = self._c.execute(select(t.ssf_streams).where(t.ssf_streams.c.stream_id == stream_id)).first()
        return _stream(row) if row else None

    def streams(self, org_id: str | None = None) -> list[Stream]:
        s = t.ssf_streams.c
        stmt = select(t.ssf_streams)
        if org_id is not None:
            stmt = stmt.where(s.org_id == org_id)
        return [_stream(r) for r in self._c.execute(stmt.order_by(s.created_at, s.stream_id))]

    def update_stream(self, stream: Stream) -> None:
        values = _stream_values(stream)
        del values["stream_id"]
        self._c.execute(
            update(t.ssf_streams).where(t.ssf_streams.c.stream_id == stream.stream_id).values(**values)
        )

    def delete_stream(self, stream_id: str) -> bool:
        self._c.execute(delete(t.ssf_deliveries).where(t.ssf_deliveries.c.stream_id == stream_id))
        self._c.execute(delete(t.ssf_subjects).where(t.ssf_subjects.c.stream_id == stream_id))
        result = self._c.execute(delete(t.ssf_streams).where(t.ssf_streams.c.stream_id == stream_id))
        return bool(result.rowcount)

    def advance_cursor(self, stream_id: str, old: int, new: int) -> bool:
        s = t.ssf_streams.c
        result = self._c.execute(
            update(t.ssf_streams).where(s.stream_id == stream_id, s.cursor == old).values(cursor=new)
        )
        return result.rowcount == 1

    def set_subject(self, subject: StreamSubject) -> None:
        j = t.ssf_subjects.c
        values = {
            "subject": subject.subject,
            "status": subject.status,
            "verified": subject.verified,
            "updated_at": subject.updated_at,
        }
        changed = self._c.execute(
            update(t.ssf_subjects)
            .where(j.stream_id == subject.stream_id, j.subject_key == subject.subject_key)
            .values(**values)
        ).rowcount
        if not changed:
            self._c.execute(
                insert(t.ssf_subjects).values(
                    stream_id=subject.stream_id, subject_key=subject.subject_key, **values
                )
            )

    def subjects(self, stream_id: str) -> list[StreamSubject]:
        j = t.ssf_subjects.c
        rows = self._c.execute(select(t.ssf_subjects).where(j.stream_id == stream_id).order_by(j.subject_key))
        return [
            StreamSubject(
                stream_id=r.stream_id,
                subject_key=r.subject_key,
                subject=dict(r.subject),
                status=r.status,
                updated_at=r.updated_at,
                verified=r.verified,
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ delivery queue
    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        try:
            with self._c.begin_nested():
                self._c.execute(
                    insert(t.ssf_deliveries),
                    [
                        {
                            "stream_id": d.stream_id,
                            "event_id": d.event_id,
                            "jti": d.jti,
                            "set_jws": d.set_jws,
                            "status": d.status,
                            "attempts": d.attempts,
                            "created_at": d.created_at,
                            "next_attempt_at": d.next_attempt_at,
                            "delivered_at": d.delivered_at,
                            "last_error": d.last_error,
                        }
                        for d in deliveries
                    ],
                )
        except IntegrityError as exc:
            raise Conflict("deliveries exist already") from exc

    def due(self, query: DueQuery) -> list[Delivery]:
        d, s = t.ssf_deliveries.c, t.ssf_streams.c
        stmt = (
            select(t.ssf_deliveries)
            .join(t.ssf_streams, s.stream_id == d.stream_id)
            .where(d.status.in_(list(query.statuses)), d.next_attempt_at <= query.now)
        )
        if query.stream_id is not None:
            stmt = stmt.where(d.stream_id == query.stream_id)
        if query.method is not None:
            stmt = stmt.where(s.delivery_method == query.method)
        if query.enabled_only:
            stmt = stmt.where(s.status == "enabled")
        return [_delivery(r) for r in self._c.execute(stmt.order_by(d.id).limit(query.limit))]

    def claim(
        self,
        delivery_id: int,
        now: datetime,
        *,
        from_statuses: Sequence[str],
        status: str,
        next_attempt_at: datetime | None,
    ) -> bool:
        d = t.ssf_deliveries.c
        result = self._c.execute(
            update(t.ssf_deliveries)
            .where(d.id == delivery_id, d.status.in_(list(from_statuses)), d.next_attempt_at <= now)
            .values(status=status, next_attempt_at=next_attempt_at, attempts=d.attempts + 1)
        )
        return result.rowcount == 1

    def finish(
        self,
        delivery_id: int,
        *,
        status: str,
        next_attempt_at: datetime | None,
        last_error: str | None = None,
        delivered_at: datetime | None = None,
    ) -> None:
        self._c.execute(
            update(t.ssf_deliveries)
            .where(t.ssf_deliveries.c.id == delivery_id)
            .values(
                status=status,
                next_attempt_at=next_attempt_at,
                last_error=last_error[:512] if last_error else None,
                delivered_at=delivered_at,
            )
        )

    def ack(self, stream_id: str, jtis: Sequence[str], at: datetime) -> int:
        if not jtis:
            return 0
        d = t.ssf_deliveries.c
        result = self._c.execute(
            update(t.ssf_deliveries)
            .where(d.stream_id == stream_id, d.jti.in_(list(jtis)), d.status.in_([PENDING, DELIVERED]))
            .values(status=ACKED, next_attempt_at=None, delivered_at=func.coalesce(d.delivered_at, at))
        )
        return int(result.rowcount)

    def fail(self, stream_id: str, errors: Mapping[str, str], at: datetime) -> int:
        d = t.ssf_deliveries.c
        changed = 0
        for jti, error in errors.items():
            result = self._c.execute(
                update(t.ssf_deliveries)
                .where(d.stream_id == stream_id, d.jti == jti, d.status.in_([PENDING, DELIVERED]))
                .values(status=FAILED, next_attempt_at=None, last_error=error[:512])
            )
            changed += int(result.rowcount)
        return changed

    def drop_pending(self, stream_id: str, reason: str) -> int:
        d = t.ssf_deliveries.c
        result = self._c.execute(
            update(t.ssf_deliveries)
            .where(d.stream_id == stream_id, d.status == PENDING)
            .values(status=FAILED, next_attempt_at=None, last_error=reason[:512])
        )
        return int(result.rowcount)

    def deliveries(self, stream_id: str) -> list[Delivery]:
        d = t.ssf_deliveries.c
        rows = self._c.execute(select(t.ssf_deliveries).where(d.stream_id == stream_id).order_by(d.id))
        return [_delivery(r) for r in rows]


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
