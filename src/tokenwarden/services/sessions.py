"""Browser sessions: issue at sign-in, slide on use, list, revoke one or all.

A session is a token like any other (kind ``session``, a ``tws_`` secret of which only the keyed
hash is stored) and is validated by the one :class:`~tokenwarden.services.validation.Validator`,
so every revocation mode cuts it on every node: the user's and the member's watermarks
(Graph ``revokeSignInSessions`` and ``invalidateAllRefreshTokens`` cover sessions), organization
break-glass, revocation rules, a disabled member.

**Organizations.** A user may belong to several organizations and signs in once. A session is
valid in all of them (``target_orgs`` None) and is *issued in* the user's home organization: the
oldest of their active memberships (``org_id``). Each organization answers for itself, as for any
all-organizations token: a revocation in organization X stops the session's use for X
(``validate(..., org_id=X)``); a use tied to no organization (the account page, the user's own
session list) is judged by the home organization.

**Sliding window** (domain.sessions.SessionWindow): ``valid_to`` is the sliding expiry. A use
that would move it by at least ``extend_every`` writes it (a compare-and-set, at most once per
interval per session across nodes) and publishes ``token.changed`` so every node drops its
cached entry and reads the new expiry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tokenwarden.domain import token_format
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Forbidden, InvalidToken, NotFound
from tokenwarden.domain.events import EventType
from tokenwarden.domain.hashing import SecretHasher
from tokenwarden.domain.principals import User
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.sessions import SessionWindow, describe_user_agent
from tokenwarden.domain.tokens import RevokedBy, TokenKind, TokenRecord, TokenState
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import (
    OPERATOR,
    Actor,
    audit,
    get_org,
    get_user,
    member_of,
    new_id,
    parse_uuid,
    publish,
    reading,
    require_admin,
    token_reaches,
    user_by_id,
)
from tokenwarden.services.csrf import CsrfSigner
from tokenwarden.services.effective import EffectiveView
from tokenwarden.services.revocation import raise_member_marks
from tokenwarden.services.signals import emit_session_revoked, initiated_by
from tokenwarden.services.validation import Caller

log = logging.getLogger(__name__)
MAX_USER_AGENT = 256
_ID_CACHE_MAX = 100_000


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A session record plus its secret (the cookie value): exists only in the sign-in response."""

    record: TokenRecord
    secret: str


class SessionService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: SecretHasher,
        clock: Clock,
        catalog: ScopeCatalog,
        window: SessionWindow,
        scopes: Sequence[str],
    ) -> None:
        self._uow = uow
        self._hasher = hasher
        self._clock = clock
        self._catalog = catalog
        self.window = window
        self._scopes = tuple(scopes)
        self.csrf = CsrfSigner(hasher)
        self._ids: dict[bytes, str] = {}  # secret hash -> authorizationId (never changes)
        self._attempted: dict[bytes, float] = {}  # secret hash -> when this node last tried to extend
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ issue (inside sign-in)
    @staticmethod
    def home_org(uow: UnitOfWork, user: User) -> str | None:
        """The organization a new session is issued in: the oldest of the user's active
        memberships (None when there is none: such a user cannot sign in)."""
        found = []
        for m in uow.users.memberships_of(user.id):
            org = uow.orgs.get(m.org_id)
            if m.is_active and org is not None:
                found.append((org.created_at, org.id))
        return min(found)[1] if found else None

    def issue_in(
        self, uow: UnitOfWork, user: User, org_id: str, *, ip: str | None, user_agent: str | None
    ) -> IssuedSession:
        """Add a new session for ``user`` in the caller's transaction (a new id and secret every
        time: a session id is never carried over from before sign-in)."""
        now = self._clock.now()
        secret = token_format.generate(TokenKind.SESSION)
        agent = (user_agent or "")[:MAX_USER_AGENT] or None
        record = TokenRecord(
            authorization_id=new_id(),
            kind=TokenKind.SESSION,
            user_id=user.id,
            org_id=org_id,
            display_name=describe_user_agent(agent),
            scopes=self._scopes,
            target_orgs=None,
            secret_hash=self._hasher.hash(secret),
            pepper_id=self._hasher.current_id,
            valid_from=now,
            valid_to=self.window.first_expiry(now),
            created_at=now,
            last_used_at=now,
            last_used_ip=ip,
            user_agent=agent,
        )
        uow.tokens.add(record)
        return IssuedSession(record, secret)

    def live_session_by_secret(self, uow: UnitOfWork, secret: str | None) -> TokenRecord | None:
        """The unrevoked session a cookie value names, if any (a malformed value names none)."""
        if not secret or not secret.startswith(token_format.PREFIXES[TokenKind.SESSION]):
            return None
        try:
            token_format.parse(secret)
        except InvalidToken:
            return None
        record = uow.tokens.by_hash(self._hasher.hash(secret))
        if record is None or record.kind is not TokenKind.SESSION or record.revoked_at is not None:
            return None
        return record

    # ------------------------------------------------------------------ the session of a request
    def cached_id(self, caller: Caller) -> str | None:
        """The session's authorizationId when this node has looked it up before (no I/O)."""
        return self._ids.get(caller.key)

    def session_id(self, caller: Caller) -> str | None:
        """The authorizationId of the caller's token (one read, then remembered)."""
        found = self._ids.get(caller.key)
        if found is not None:
            return found
        with reading(self._uow) as uow:
            record = uow.tokens.by_hash(caller.key)
        if record is None:
            return None
        with self._lock:
            if len(self._ids) >= _ID_CACHE_MAX:
                self._ids.clear()
            self._ids[caller.key] = record.authorization_id
        return record.authorization_id

    def extension_due(self, caller: Caller) -> datetime | None:
        """The new expiry if this use should slide the window (no I/O: from the cached entry)."""
        entry = caller.token
        if entry.kind is not TokenKind.SESSION:
            return None
        now = self._clock.now()
        target = self.window.due(entry.issued, entry.valid_to, now)
        if target is None:
            return None
        last = self._attempted.get(caller.key)
        if last is not None and 0 <= now.timestamp() - last < self.window.extend_every.total_seconds():
            return None  # this node tried within the interval: the write (or its event) is on its way
        return target

    def touch(self, caller: Caller) -> bool:
        """Slide the caller's session window if due: one compare-and-set write and a
        ``token.changed`` event (every node then reads the new expiry). True if it moved."""
        target = self.extension_due(caller)
        if target is None:
            return False
        with self._lock:
            if len(self._attempted) >= _ID_CACHE_MAX:
                self._attempted.clear()
            self._attempted[caller.key] = self._clock.now().timestamp()
        before = target - self.window.extend_every
        try:
            with self._uow() as uow:
                if not uow.tokens.extend_session(caller.key, target, before=before):
                    return False
                publish(uow, EventType.TOKEN_CHANGED, hashes=[caller.key.hex()])
                uow.commit()
        except Exception as exc:  # still valid until its current end; tried again after the interval
            log.warning("could not extend a browser session: %s", exc)
            return False
        return True

    # ------------------------------------------------------------------ listings
    def mine(self, actor: Actor, *, include_ended: bool = False) -> list[TokenRecord]:
        """The actor's own sessions, newest first (live ones unless ``include_ended``), each in
        its state as its home organization sees it."""
        _check_identity_wide(actor)
        with reading(self._uow) as uow:
            records = uow.tokens.list_for_user(actor.user_id or "", TokenKind.SESSION)
            shown = EffectiveView(uow, self._catalog).apply(records)
        return self._select(shown, include_ended)

    def for_admin(
        self, actor: Actor, org: str, user: str, *, include_ended: bool = False
    ) -> tuple[User, list[TokenRecord]]:
        """A member's sessions usable in ``org``, in their state there (organization admins)."""
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            owner, _ = member_of(uow, the_org.id, user)
            records = [
                r
                for r in uow.tokens.list_for_user(owner.id, TokenKind.SESSION)
                if token_reaches(uow, r, the_org.id)
            ]
            shown = EffectiveView(uow, self._catalog, the_org.id).apply(records)
        return owner, self._select(shown, include_ended)

    def for_operator(self, user: str, *, include_ended: bool = False) -> tuple[User, list[TokenRecord]]:
        """Every session of a user (the operator: no organization boundary)."""
        with reading(self._uow) as uow:
            owner = get_user(uow, user)
            records = uow.tokens.list_for_user(owner.id, TokenKind.SESSION)
            shown = EffectiveView(uow, self._catalog).apply(records)
        return owner, self._select(shown, include_ended)

    def _select(self, records: list[TokenRecord], include_ended: bool) -> list[TokenRecord]:
        now = self._clock.now()
        chosen = [r for r in records if include_ended or r.state(now) is TokenState.ACTIVE]
        return sorted(chosen, key=lambda r: (r.created_at, r.authorization_id), reverse=True)

    # ------------------------------------------------------------------ revocation
    def sign_out(self, actor: Actor, caller: Caller) -> TokenRecord | None:
        """End the session the request came with (idempotent)."""
        with self._uow() as uow:
            record = uow.tokens.by_hash(caller.key)
            if record is None or record.kind is not TokenKind.SESSION or record.revoked_at is not None:
                return None
            (revoked,) = self.revoke_in(uow, actor, [record], "signed out", event=AuditEventType.SIGN_OUT)
            uow.commit()
        return revoked

    def revoke_mine(self, actor: Actor, session_id: str) -> TokenRecord:
        """Revoke one of the actor's own sessions (everywhere)."""
        _check_identity_wide(actor)
        auth_id = parse_uuid(session_id, "session id", code="invalidSessionId")
        with self._uow() as uow:
            record = uow.tokens.get(auth_id)
            if record is None or record.kind is not TokenKind.SESSION or record.user_id != actor.user_id:
                raise _no_session(auth_id)
            if record.revoked_at is not None:
                return record
            (revoked,) = self.revoke_in(uow, actor, [record], "revoked by its owner")
            uow.commit()
        return revoked

    def revoke_all_mine(self, actor: Actor) -> int:
        """Sign out everywhere: every live session of the actor, the current one included."""
        _check_identity_wide(actor)
        with self._uow() as uow:
            owner = get_user(uow, actor.user_id or "")
            revoked = self.revoke_in(uow, actor, self._live(uow, owner.id), "signed out everywhere")
            uow.commit()
        return len(revoked)

    def admin_revoke(self, actor: Actor, org: str, user: str, session_id: str) -> TokenRecord:
        """An organization admin revokes one session of a member: only a session issued in that
        organization (one issued elsewhere is cut off here with :meth:`admin_revoke_all`, which
        acts in this organization only)."""
        auth_id = parse_uuid(session_id, "session id", code="invalidSessionId")
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            owner, _ = member_of(uow, the_org.id, user)
            record = uow.tokens.get(auth_id)
            if (
                record is None
                or record.kind is not TokenKind.SESSION
                or record.user_id != owner.id
                or not token_reaches(uow, record, the_org.id)
            ):
                raise _no_session(auth_id)
            if record.org_id != the_org.id:
                raise NotFound(
                    f"session {auth_id} was not issued in this organization: revoke all of the user's "
                    "sessions here (POST .../sessions/revoke-all) to stop its use here",
                    code="sessionIssuedElsewhere",
                )
            if record.revoked_at is not None:
                return record
            (revoked,) = self.revoke_in(uow, actor, [record], "revoked by organization administrator")
            uow.commit()
        return revoked

    def admin_revoke_all(self, actor: Actor, org: str, user: str) -> int:
        """Every session of a member stops working *in this organization* (a member watermark:
        one write however many sessions; the member's standing elsewhere is untouched).
        Returns how many live sessions it cut here."""
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            owner, _ = member_of(uow, the_org.id, user)
            view = EffectiveView(uow, self._catalog, the_org.id)
            live = [
                r
                for r in uow.tokens.list_for_user(owner.id, TokenKind.SESSION)
                if token_reaches(uow, r, the_org.id) and view.one(r).state(now) is TokenState.ACTIVE
            ]
            raise_member_marks(uow, the_org.id, [owner.id], [TokenKind.SESSION.value], now)
            emit_session_revoked(
                uow,
                self._clock,
                user=owner,
                org_id=the_org.id,
                initiating_entity=initiated_by(actor, owner.id),
                reason_admin="browser sessions revoked by organization administrator",
            )
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.SESSION_REVOKE,
                org_id=the_org.id,
                target_type="user",
                target_id=owner.id,
                details={
                    "upn": owner.upn,
                    "scope": "all",
                    "revoked": len(live),
                    "validFrom": now.isoformat(),
                },
            )
            uow.commit()
        return len(live)

    def operator_revoke(self, user: str, session_id: str | None = None) -> list[TokenRecord]:
        """The operator revokes one session (``session_id``) or every live one of a user."""
        with self._uow() as uow:
            owner = get_user(uow, user)
            if session_id is None:
                targets = self._live(uow, owner.id)
            else:
                auth_id = parse_uuid(session_id, "session id", code="invalidSessionId")
                record = uow.tokens.get(auth_id)
                if record is None or record.kind is not TokenKind.SESSION or record.user_id != owner.id:
                    raise _no_session(auth_id)
                targets = [] if record.revoked_at is not None else [record]
            revoked = self.revoke_in(uow, OPERATOR, targets, "revoked by operator")
            uow.commit()
        return revoked

    def revoke_all_in(self, uow: UnitOfWork, actor: Actor, user_id: str, reason: str) -> list[TokenRecord]:
        """Revoke every live session of a user in the caller's transaction (password change)."""
        return self.revoke_in(uow, actor, self._live(uow, user_id), reason)

    def revoke_in(
        self,
        uow: UnitOfWork,
        actor: Actor,
        records: Sequence[TokenRecord],
        reason: str,
        *,
        event: AuditEventType = AuditEventType.SESSION_REVOKE,
    ) -> list[TokenRecord]:
        """Revoke sessions directly (dead everywhere) in the caller's transaction: one
        ``token.revoked`` event for all, a CAEP session-revoked per session, audited per
        organization the sessions were issued in."""
        if not records:
            return []
        now = self._clock.now()
        revoked = []
        for record in records:
            changed = record.with_changes(
                revoked_at=now, revoked_by=actor.user_id or "operator", revoke_reason=reason[:512]
            )
            uow.tokens.update(changed)
            revoked.append(changed)
        publish(uow, EventType.TOKEN_REVOKED, hashes=[r.secret_hash.hex() for r in records])
        owner = user_by_id(uow, records[0].user_id)
        if len(records) == 1:
            emit_session_revoked(
                uow,
                self._clock,
                user=owner,
                org_id=None,
                initiating_entity=initiated_by(actor, owner.id),
                reason_admin=reason,
                session_id=records[0].authorization_id,
            )
        else:
            emit_session_revoked(
                uow,
                self._clock,
                user=owner,
                org_id=None,
                initiating_entity=initiated_by(actor, owner.id),
                reason_admin=reason,
            )
        by = RevokedBy.OWNER if actor.user_id == owner.id else RevokedBy.ADMIN
        for org_id in dict.fromkeys(r.org_id for r in records):
            ids = [r.authorization_id for r in records if r.org_id == org_id]
            audit(
                uow,
                self._clock,
                actor,
                event,
                org_id=org_id,
                target_type="session" if len(ids) == 1 else "user",
                target_id=ids[0] if len(ids) == 1 else owner.id,
                details={
                    "upn": owner.upn,
                    "sessionIds": ids,
                    "revoked": len(ids),
                    "revokedBy": by.value,
                    "reason": reason,
                },
            )
        return revoked

    def live_of(self, uow: UnitOfWork, user_id: str) -> list[TokenRecord]:
        """The user's live browser sessions (not revoked, not past their end)."""
        return self._live(uow, user_id)

    def _live(self, uow: UnitOfWork, user_id: str) -> list[TokenRecord]:
        now = self._clock.now()
        return [
            r
            for r in uow.tokens.list_for_user(user_id, TokenKind.SESSION)
            if r.revoked_at is None and r.valid_to > now
        ]

    def absolute_end(self, record: TokenRecord) -> datetime:
        """When a session ends at the latest, however it is used."""
        return self.window.cap(record.valid_from)


def _check_identity_wide(actor: Actor) -> None:
    """Sessions belong to the identity and are valid in all of its organizations: a token
    restricted to some of them may neither see nor end them."""
    if actor.is_operator:
        return
    if actor.token is not None and actor.token.orgs is not None:
        raise Forbidden(
            "sessions are valid in all of your organizations: manage them with the browser session or "
            "a token valid in all of your organizations (allOrgs)",
            code="allOrgsTokenRequired",
        )


def _no_session(auth_id: str) -> NotFound:
    return NotFound(f"no session {auth_id}", code="sessionNotFound")
