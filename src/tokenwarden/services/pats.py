"""Personal access tokens: create, list, get, update, regenerate, revoke."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from tokenwarden.domain import token_format
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock, ensure_utc
from tokenwarden.domain.errors import Forbidden, InvalidInput, NotFound, PolicyViolation
from tokenwarden.domain.events import EventType
from tokenwarden.domain.hashing import SecretHasher
from tokenwarden.domain.policies import (
    GlobalPolicy,
    OrgPolicy,
    check_may_create,
    check_token_shape,
)
from tokenwarden.domain.principals import IdentitySource, Role, User
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.tokens import RevokedBy, TokenKind, TokenRecord, TokenState
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import (
    Actor,
    StepUpCheck,
    audit,
    get_org,
    get_user,
    is_ascii_digits,
    member_of,
    new_id,
    no_step_up,
    parse_uuid,
    publish,
    reading,
    require_admin,
    require_member,
    token_reaches,
    user_by_id,
)
from tokenwarden.services.effective import EffectiveView, cause_of
from tokenwarden.services.signals import emit_credential_change, emit_token_claims_change, initiated_by

MAX_DISPLAY_NAME = 256
MAX_PAGE = 100
CONSOLE = "console"  # audit details' ``via`` of a change made from one's own browser session


class PatFilter(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"
    ALL = "all"


class PatSort(StrEnum):
    DISPLAY_NAME = "displayName"
    DISPLAY_DATE = "displayDate"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class IssuedPat:
    """A token record plus its secret: exists only in the response that creates it."""

    record: TokenRecord
    secret: str


@dataclass(frozen=True, slots=True)
class PatPage:
    items: list[TokenRecord]
    continuation: str  # "" on the last page


@dataclass(frozen=True, slots=True)
class TokenView:
    """One token (any kind) as an organization sees it, for its page: the record in its state
    there (a watermark, rule or membership cut shows as revoked, with ``cause``), its owner, and
    the organizations it is valid in that the viewer may be told about (``(id, name)``; an
    administrator who is not the owner is told only about their own organization, and
    ``other_orgs`` says whether there are more)."""

    record: TokenRecord
    owner: User | None
    cause: str | None
    orgs: list[tuple[str, str]]
    other_orgs: bool
    is_own: bool


def _no_fresh_factor(uow: UnitOfWork, actor: Actor, org_id: str) -> None:
    """Until bootstrap wires the MFA service: the console's owner path is closed."""
    raise Forbidden("a fresh second factor cannot be checked here", code="stepUpUnavailable")


def check_display_name(name: str | None) -> str:
    """1 to 256 characters, no control characters."""
    if name is None or not name.strip():
        raise InvalidInput("displayName is required", code="displayNameRequired")
    if len(name) > MAX_DISPLAY_NAME:
        raise InvalidInput(
            f"displayName is longer than {MAX_DISPLAY_NAME} characters", code="invalidDisplayName"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise InvalidInput("displayName contains control characters", code="invalidDisplayName")
    return name


class PatService:
    """Use cases on PATs. Changes that can invalidate a token are announced when their unit of
    work commits (``Database.on_commit``), so this node sees them at once."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: SecretHasher,
        catalog: ScopeCatalog,
        clock: Clock,
        global_policy: GlobalPolicy,
        *,
        default_days: int = 30,
    ) -> None:
        self._uow = uow
        self._hasher = hasher
        self._catalog = catalog
        self._clock = clock
        self._global = global_policy
        self._default_days = default_days
        self.step_up: StepUpCheck = no_step_up  # revoking several PATs at once: a fresh second factor
        # the owner's own PAT from a browser session (extend_own_interactive, ...): always one
        self.fresh_factor: StepUpCheck = _no_fresh_factor

    # ------------------------------------------------------------------ create
    def create(
        self,
        actor: Actor,
        *,
        org: str,
        user: str,
        display_name: str | None,
        scope: str | Sequence[str] | None,
        valid_to: datetime | None = None,
        all_orgs: bool = False,
        enforce_policy: bool = True,
        lifetime: timedelta | None = None,
        purpose: str | None = None,
    ) -> IssuedPat:
        """Issue a PAT for ``user`` (a UPN or id) in ``org``; the secret is returned once.

        ``enforce_policy=False`` and ``purpose=BREAK_GLASS_RECOVERY`` are only for break-glass
        recovery tokens (short, admin scopes).
        """
        name = check_display_name(display_name)
        scopes = self._catalog.parse(scope or "")
        now = self._clock.now()
        if valid_to is not None:
            expires = self._check_valid_to(valid_to, now)
        else:
            expires = now + (lifetime or timedelta(days=self._default_days))
        with self._uow() as uow:
            the_org = get_org(uow, org)
            owner = get_user(uow, user)
            self._check_actor_may_manage(uow, actor, owner, the_org.id)
            membership = uow.users.membership(the_org.id, owner.id)
            if membership is None:
                raise Forbidden("the user is not a member of this organization", code="accessDenied")
            if not owner.is_active or not membership.is_active:
                raise Forbidden("the user is not active in this organization", code="invalidUserId")
            if owner.identity_source is IdentitySource.SERVICE:
                raise Forbidden(
                    "an OAuth client's service principal holds no PATs: it authenticates with its "
                    "client credentials",
                    code="servicePrincipal",
                )
            targets = None if all_orgs else (the_org.id,)
            actor.check_may_hold(scopes, targets)
            for policy in self._policies_for(uow, owner, targets) if enforce_policy else ():
                check_may_create(policy, self._global, owner)
                check_token_shape(policy, scopes, now, expires)
            secret = token_format.generate(TokenKind.PAT)
            record = TokenRecord(
                authorization_id=new_id(),
                kind=TokenKind.PAT,
                user_id=owner.id,
                org_id=the_org.id,
                display_name=name,
                scopes=scopes,
                target_orgs=targets,
                secret_hash=self._hasher.hash(secret),
                pepper_id=self._hasher.current_id,
                valid_from=now,
                valid_to=expires,
                created_at=now,
                purpose=purpose,
            )
            uow.tokens.add(record)
            emit_credential_change(
                uow,
                self._clock,
                user=owner,
                record=record,
                change_type="create",
                initiating_entity=initiated_by(actor, owner.id),
            )
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.PAT_CREATE,
                org_id=the_org.id,
                target_type="pat",
                target_id=record.authorization_id,
                details={**_describe(record), "owner": owner.upn},
            )
            uow.commit()
        return IssuedPat(record, secret)

    # ------------------------------------------------------------------ read
    def get(self, actor: Actor, authorization_id: str, org_id: str | None = None) -> TokenRecord:
        """One of the actor's own PATs (that reaches ``org_id``, when given), as it stands there."""
        auth_id = parse_uuid(authorization_id, "authorizationId")
        with reading(self._uow) as uow:
            record = self._visible(uow, actor, auth_id, admin_ok=False, org_id=org_id)
            return EffectiveView(uow, self._catalog, org_id).one(record)

    def page(
        self,
        actor: Actor,
        org: str,
        *,
        filter: PatFilter = PatFilter.ACTIVE,
        sort: PatSort = PatSort.DISPLAY_DATE,
        ascending: bool = True,
        top: int = MAX_PAGE,
        continuation: str | None = None,
    ) -> PatPage:
        """One page of the actor's PATs that reach ``org`` (and that the actor's token may
        see), in their state there. Continuation tokens only use ``[0-9a-z.-]``."""
        if not 1 <= top <= MAX_PAGE:
            raise InvalidInput(f"$top must be between 1 and {MAX_PAGE}")
        offset = self._decode_continuation(continuation, filter, sort, ascending)
        now = self._clock.now()
        with reading(self._uow) as uow:
            org_id = get_org(uow, org).id
            require_member(uow, actor, org_id)
            mine = [
                r
                for r in uow.tokens.list_for_user(actor.user_id or "", TokenKind.PAT)
                if token_reaches(uow, r, org_id) and _may_see(actor, r)
            ]
            tokens = EffectiveView(uow, self._catalog, org_id).apply(mine)
        wanted = {
            PatFilter.ACTIVE: (TokenState.ACTIVE, TokenState.NOT_YET_VALID),
            PatFilter.REVOKED: (TokenState.REVOKED,),
            PatFilter.EXPIRED: (TokenState.EXPIRED,),
            PatFilter.ALL: tuple(TokenState),
        }[filter]
        selected = [t for t in tokens if t.state(now) in wanted]
        order = {
            TokenState.ACTIVE: 0,
            TokenState.NOT_YET_VALID: 1,
            TokenState.EXPIRED: 2,
            TokenState.REVOKED: 3,
        }
        if sort is PatSort.DISPLAY_NAME:
            selected.sort(
                key=lambda t: (t.display_name.casefold(), t.authorization_id), reverse=not ascending
            )
        elif sort is PatSort.STATUS:
            selected.sort(key=lambda t: (order[t.state(now)], t.authorization_id), reverse=not ascending)
        else:
            selected.sort(key=lambda t: (t.valid_from, t.authorization_id), reverse=not ascending)
        page = selected[offset : offset + top]
        more = offset + top < len(selected)
        nxt = f"{offset + top}.{filter.value}.{sort.value}.{int(ascending)}".lower() if more else ""
        return PatPage(page, nxt)

    @staticmethod
    def _decode_continuation(token: str | None, filter: PatFilter, sort: PatSort, ascending: bool) -> int:
        if not token:
            return 0
        parts = token.split(".")
        expected = [filter.value.lower(), sort.value.lower(), str(int(ascending))]
        if len(parts) != 4 or not is_ascii_digits(parts[0]) or parts[1:] != expected:
            raise InvalidInput(
                "continuationToken is invalid or was issued for other filter/sort options",
                code="invalidContinuationToken",
            )
        return int(parts[0])

    # ------------------------------------------------------------------ update
    def update(
        self,
        actor: Actor,
        authorization_id: str,
        *,
        display_name: str | None = None,
        scope: str | None = None,
        valid_to: datetime | None = None,
        all_orgs: bool | None = None,
        org_id: str | None = None,
    ) -> TokenRecord:
        """Rename, re-scope or move validTo of a still-valid PAT of the actor's (policies
        re-checked; the result may not exceed the acting token's scopes or organizations)."""
        auth_id = parse_uuid(authorization_id, "authorizationId")
        name = check_display_name(display_name) if display_name is not None else None
        scopes = self._catalog.parse(scope) if scope is not None else None
        now = self._clock.now()
        expires = self._check_valid_to(valid_to, now) if valid_to is not None else None
        return self._update(actor, auth_id, name, scopes, expires, all_orgs, org_id, now, interactive=False)

    def extend_own_interactive(
        self, actor: Actor, authorization_id: str, valid_to: datetime, org_id: str
    ) -> TokenRecord:
        """Move validTo of one's own still-valid PAT from one's browser session (the console).

        A session holds only the profile scopes, so :meth:`update` would refuse (no token
        widens a token beyond itself); this is the owner's own authority instead: only the
        PAT's owner, only through an interactive browser session, only with a second factor
        proved within five minutes (:attr:`fresh_factor`, whatever the organization's policy).
        Every other check stands — the policies' maximum lifetime, the PAT's state there, the
        organization's reach — and the audit entry says ``via: console``."""
        auth_id = parse_uuid(authorization_id, "authorizationId")
        now = self._clock.now()
        expires = self._check_valid_to(valid_to, now)
        return self._update(actor, auth_id, None, None, expires, None, org_id, now, interactive=True)

    def _update(
        self,
        actor: Actor,
        auth_id: str,
        name: str | None,
        scopes: tuple[str, ...] | None,
        expires: datetime | None,
        all_orgs: bool | None,
        org_id: str | None,
        now: datetime,
        *,
        interactive: bool,
    ) -> TokenRecord:
        with self._uow() as uow:
            if interactive:
                current = self._own_interactive(uow, actor, auth_id, org_id or "")
            else:
                current = self._visible(uow, actor, auth_id, admin_ok=False, org_id=org_id)
            state = EffectiveView(uow, self._catalog, org_id).one(current).state(now)
            if state is TokenState.EXPIRED:
                raise InvalidInput("an expired PAT cannot be updated", code="expiredPatCannotBeExtended")
            if state is TokenState.REVOKED:
                raise InvalidInput("a revoked PAT cannot be updated", code="failedToUpdateAccessToken")
            if current.is_recovery and expires is not None and expires > current.valid_to:
                raise PolicyViolation(
                    "a break-glass recovery token cannot outlive the 24 hours it was issued for",
                    code="recoveryTokenLifetime",
                )
            targets = current.target_orgs
            if all_orgs is not None:
                targets = None if all_orgs else (current.org_id,)
            updated = current.with_changes(
                display_name=name if name is not None else current.display_name,
                scopes=scopes if scopes is not None else current.scopes,
                valid_to=expires if expires is not None else current.valid_to,
                target_orgs=targets,
            )
            if not interactive:  # the owner's own sign-in with a fresh second factor is checked above
                actor.check_may_hold(updated.scopes, updated.target_orgs)
            owner = user_by_id(uow, current.user_id)
            before = set(self._policy_orgs(uow, owner, current.target_orgs))
            for policy in self._policies_for(uow, owner, updated.target_orgs):
                if policy.org_id not in before:  # widening into an org is creating a token there
                    check_may_create(policy, self._global, owner)
                check_token_shape(policy, updated.scopes, updated.valid_from, updated.valid_to)
            uow.tokens.update(updated)
            publish(uow, EventType.TOKEN_CHANGED, hashes=[current.secret_hash.hex()])
            if updated.scopes != current.scopes:
                emit_token_claims_change(
                    uow,
                    self._clock,
                    user=owner,
                    record=updated,
                    claims={"scope": updated.scope_string},
                    initiating_entity=initiated_by(actor, owner.id),
                )
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.PAT_UPDATE,
                org_id=current.org_id,
                target_type="pat",
                target_id=auth_id,
                details={
                    "before": _describe(current),
                    "after": _describe(updated),
                    **({"via": CONSOLE} if interactive else {}),
                },
            )
            uow.commit()
        return updated

    def regenerate(self, actor: Actor, authorization_id: str, org_id: str | None = None) -> IssuedPat:
        """New secret, same authorizationId and metadata; the old secret dies at once. The
        acting token must cover the PAT (a new secret is a new grant)."""
        return self._regenerate(actor, authorization_id, org_id, interactive=False)

    def regenerate_own_interactive(self, actor: Actor, authorization_id: str, org_id: str) -> IssuedPat:
        """:meth:`regenerate` one's own active PAT from one's browser session (the console): the
        owner's own authority, with the checks of :meth:`extend_own_interactive` in place of the
        acting token's coverage; the new secret is returned once, the old one dies at once."""
        return self._regenerate(actor, authorization_id, org_id, interactive=True)

    def _regenerate(
        self, actor: Actor, authorization_id: str, org_id: str | None, *, interactive: bool
    ) -> IssuedPat:
        auth_id = parse_uuid(authorization_id, "authorizationId")
        now = self._clock.now()
        with self._uow() as uow:
            if interactive:
                current = self._own_interactive(uow, actor, auth_id, org_id or "")
            else:
                current = self._visible(uow, actor, auth_id, admin_ok=False, org_id=org_id)
                actor.check_may_hold(current.scopes, current.target_orgs)
            if EffectiveView(uow, self._catalog, org_id).one(current).state(now) is not TokenState.ACTIVE:
                raise InvalidInput("only an active PAT can be regenerated", code="failedToUpdateAccessToken")
            secret = token_format.generate(TokenKind.PAT)
            updated = current.with_changes(
                secret_hash=self._hasher.hash(secret), pepper_id=self._hasher.current_id
            )
            uow.tokens.update(updated)
            publish(uow, EventType.TOKEN_REVOKED, hashes=[current.secret_hash.hex()])
            emit_credential_change(
                uow,
                self._clock,
                user=user_by_id(uow, current.user_id),
                record=updated,
                change_type="update",
                initiating_entity=initiated_by(actor, current.user_id),
                reason_admin="secret regenerated: the previous secret is revoked",
            )
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.PAT_REGENERATE,
                org_id=current.org_id,
                target_type="pat",
                target_id=auth_id,
                details={**_describe(current), **({"via": CONSOLE} if interactive else {})},
            )
            uow.commit()
        return IssuedPat(updated, secret)

    # ------------------------------------------------------------------ revoke
    def revoke(
        self, actor: Actor, authorization_id: str, reason: str | None = None, org_id: str | None = None
    ) -> TokenRecord:
        """Revoke one PAT (owner, an admin of the organization that issued it, or the operator).
        Idempotent."""
        auth_id = parse_uuid(authorization_id, "authorizationId")
        with self._uow() as uow:
            record = self._visible(uow, actor, auth_id, admin_ok=True, org_id=org_id)
            if record.revoked_at is not None:
                return record
            revoked = self._revoke_in(uow, actor, record, reason)
            uow.commit()
        return revoked

    def revoke_many(self, actor: Actor, org: str, authorization_ids: Sequence[str]) -> int:
        """Admin bulk revoke (Token Admin "revocations"): all ids are checked before any change;
        more than one id needs a fresh second factor (:attr:`step_up`).

        Only tokens this organization issued are revoked (a token issued elsewhere that is also
        valid here is cut off here by revoking its owner in this organization); other ids and
        unknown ones are ignored (no existence leak). Returns how many were newly revoked.
        """
        ids = [parse_uuid(i, "authorizationId") for i in authorization_ids]
        count = 0
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            if len(set(ids)) > 1:  # a bulk revocation: a fresh second factor (``step_up``)
                self.step_up(uow, actor, the_org.id)
            hashes: list[str] = []
            for auth_id in dict.fromkeys(ids):
                record = uow.tokens.get(auth_id)
                if record is None or record.revoked_at is not None:
                    continue
                if record.org_id != the_org.id:
                    continue
                self._revoke_in(
                    uow, actor, record, "revoked by organization administrator", publish_event=False
                )
                hashes.append(record.secret_hash.hex())
                count += 1
            if hashes:
                publish(uow, EventType.TOKEN_REVOKED, hashes=hashes)
            uow.commit()
        return count

    def _revoke_in(
        self,
        uow: UnitOfWork,
        actor: Actor,
        record: TokenRecord,
        reason: str | None,
        *,
        publish_event: bool = True,
    ) -> TokenRecord:
        by = RevokedBy.OWNER if actor.user_id == record.user_id else RevokedBy.ADMIN
        return revoke_record(
            uow,
            self._clock,
            actor,
            record,
            reason=reason or f"revoked by {by.value}",
            revoked_by=actor.user_id or "operator",
            details={"revokedBy": by.value},
            publish_event=publish_event,
        )

    # ------------------------------------------------------------------ admin views
    def list_for_admin(self, actor: Actor, org: str, user: str) -> tuple[User, list[TokenRecord]]:
        """Every PAT (active, expired, revoked) of an organization member, for its admins."""
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            owner, _ = member_of(uow, the_org.id, user)
            records = [
                r
                for r in uow.tokens.list_for_user(owner.id, TokenKind.PAT)
                if token_reaches(uow, r, the_org.id)
            ]
            return owner, EffectiveView(uow, self._catalog, the_org.id).apply(records)

    def token_in_org(self, actor: Actor, org_id: str, authorization_id: str) -> TokenView:
        """One token of any kind for its page in ``org_id``: its owner sees their own (through
        a token valid there), an active administrator of ``org_id`` any token issued or valid
        there. Anything else — another member's token, another organization's, an unknown or
        malformed id — is the same NotFound, so the answer tells nobody whether it exists."""
        missing = NotFound("no such token in this organization", code="tokenNotFound")
        try:
            auth_id = parse_uuid(authorization_id, "token id")
        except InvalidInput:
            raise missing from None
        with reading(self._uow) as uow:
            record = uow.tokens.get(auth_id)
            if record is None or actor.is_operator or not actor.reaches(org_id):
                raise missing
            if not token_reaches(uow, record, org_id):
                raise missing
            mine = record.user_id == actor.user_id
            m = uow.users.membership(org_id, actor.user_id or "")
            if m is None or not m.is_active or not (mine or m.role is Role.ADMIN):
                raise missing
            seen = EffectiveView(uow, self._catalog, org_id).one(record)
            owner = uow.users.get(record.user_id)
            valid_in = (
                self._policy_orgs(uow, owner, record.target_orgs) if owner is not None else [record.org_id]
            )
            told = valid_in if mine else [o for o in valid_in if o == org_id]
            orgs = [(o.id, o.name) for o in (uow.orgs.get(i) for i in told) if o is not None]
            return TokenView(
                record=seen,
                owner=owner,
                cause=cause_of(seen),
                orgs=sorted(orgs, key=lambda o: o[1].casefold()),
                other_orgs=len(told) < len(valid_in),
                is_own=mine,
            )

    # ------------------------------------------------------------------ helpers
    def _own_interactive(self, uow: UnitOfWork, actor: Actor, auth_id: str, org_id: str) -> TokenRecord:
        """The actor's own PAT, for a change made with the owner's own authority: refused
        unless the actor acts through their interactive browser session, the PAT is theirs
        (anything else: NotFound) and valid in ``org_id``, and a second factor was proved within
        five minutes (:attr:`fresh_factor`)."""
        reach = actor.token
        if actor.is_operator or reach is None or not reach.interactive or reach.key is None:
            raise Forbidden(
                "only the PAT's owner, signed in in a browser (the console), may change it beyond "
                "the scopes of the token that asks: use a token that holds the PAT's scopes",
                code="interactiveSessionRequired",
            )
        current = self._visible(uow, actor, auth_id, admin_ok=False, org_id=org_id)
        self.fresh_factor(uow, actor, org_id)
        return current

    def _check_valid_to(self, valid_to: datetime, now: datetime) -> datetime:
        value = ensure_utc(valid_to)
        if value <= now:
            raise InvalidInput("validTo must be in the future", code="invalidValidTo")
        return value

    @staticmethod
    def _policy_orgs(uow: UnitOfWork, owner: User, targets: tuple[str, ...] | None) -> list[str]:
        """The organizations a token with ``targets`` is valid in (None: all of the owner's)."""
        return (
            list(targets) if targets is not None else [m.org_id for m in uow.users.memberships_of(owner.id)]
        )

    def _policies_for(self, uow: UnitOfWork, owner: User, targets: tuple[str, ...] | None) -> list[OrgPolicy]:
        return [uow.policies.get(o) or OrgPolicy(org_id=o) for o in self._policy_orgs(uow, owner, targets)]

    def _visible(
        self, uow: UnitOfWork, actor: Actor, auth_id: str, *, admin_ok: bool, org_id: str | None = None
    ) -> TokenRecord:
        return visible_pat(uow, actor, auth_id, admin_ok=admin_ok, org_id=org_id)

    def _check_actor_may_manage(self, uow: UnitOfWork, actor: Actor, owner: User, org_id: str) -> None:
        if actor.is_operator or actor.user_id == owner.id:
            return
        require_admin(uow, actor, org_id)


def visible_pat(
    uow: UnitOfWork, actor: Actor, auth_id: str, *, admin_ok: bool, org_id: str | None = None
) -> TokenRecord:
    """The PAT if the actor may act on it: its owner, or (``admin_ok``) an active admin of the
    organization that issued it; through a token that reaches that organization; and, with
    ``org_id``, only a PAT valid there. Anything else answers as if it did not exist."""
    record = uow.tokens.get(auth_id)
    missing = NotFound(f"no PAT with authorizationId {auth_id}", code="authorizationNotFound")
    if record is None or record.kind is not TokenKind.PAT:
        raise missing
    if org_id is not None and not token_reaches(uow, record, org_id):
        raise missing
    if actor.is_operator:
        return record
    if not _may_see(actor, record):
        raise missing
    if record.user_id == actor.user_id:
        return record
    if admin_ok and actor.user_id is not None:
        m = uow.users.membership(record.org_id, actor.user_id)
        if m is not None and m.role is Role.ADMIN and m.is_active:
            return record
    raise missing


def revoke_record(
    uow: UnitOfWork,
    clock: Clock,
    actor: Actor,
    record: TokenRecord,
    *,
    reason: str,
    revoked_by: str,
    event_type: AuditEventType = AuditEventType.PAT_REVOKE,
    initiating_entity: str | None = None,
    details: dict[str, object] | None = None,
    publish_event: bool = True,
) -> TokenRecord:
    """Revoke one PAT or service token inside the caller's unit of work: the record, the
    invalidation event every node applies (unless the caller publishes one for a batch with
    ``publish_event=False``), the CAEP credential change and the audit entry. Returns the
    revoked record."""
    revoked = record.with_changes(revoked_at=clock.now(), revoked_by=revoked_by, revoke_reason=reason[:512])
    if publish_event:  # first: every node refuses the token from here on (an intent, see Database)
        publish(uow, EventType.TOKEN_REVOKED, hashes=[record.secret_hash.hex()])
    uow.tokens.update(revoked)
    emit_credential_change(
        uow,
        clock,
        user=user_by_id(uow, record.user_id),
        record=revoked,
        change_type="revoke",
        initiating_entity=initiating_entity or initiated_by(actor, record.user_id),
        reason_admin=revoked.revoke_reason,
    )
    audit(
        uow,
        clock,
        actor,
        event_type,
        org_id=record.org_id,
        target_type=record.kind.value,
        target_id=record.authorization_id,
        details={**_describe(record), **(details or {}), "reason": revoked.revoke_reason},
    )
    return revoked


def _may_see(actor: Actor, record: TokenRecord) -> bool:
    """A token restricted to some organizations sees only PATs issued in one of them."""
    return actor.reaches(record.org_id)


def _describe(record: TokenRecord) -> dict[str, object]:
    """Audit-safe description of a PAT (never the secret or its hash)."""
    return {
        "displayName": record.display_name,
        "scope": record.scope_string,
        "validFrom": record.valid_from.isoformat(),
        "validTo": record.valid_to.isoformat(),
        "allOrgs": record.all_orgs,
    }
