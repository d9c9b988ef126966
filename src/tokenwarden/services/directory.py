"""Organizations, users and memberships, and the first-run initialization."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import timedelta

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from tokenwarden.domain.events import EventType
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.principals import (
    IdentitySource,
    Invitation,
    Membership,
    Organization,
    RiskLevel,
    Role,
    User,
    UserStatus,
    member_subject,
)
from tokenwarden.domain.scopes import FULL_ACCESS
from tokenwarden.domain.watermarks import ALL_KINDS, SubjectType
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import (
    OPERATOR,
    Actor,
    audit,
    get_org,
    member_of,
    new_id,
    parse_uuid,
    publish,
    reading,
    require_admin,
    user_by_id,
)
from tokenwarden.services.pats import IssuedPat, PatService, check_display_name
from tokenwarden.services.signals import emit_session_revoked

ORG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
UPN = re.compile(r"^[^\s@/\\]{1,128}@[^\s@/\\]{1,127}$")
INIT_TOKEN_DAYS = 90
INVITATION_DAYS = 14


@dataclass(frozen=True, slots=True)
class AddResult:
    """What adding a user did: a membership (new identity, or the operator enrolling one), or an
    invitation the existing identity has to accept."""

    user: User
    membership: Membership | None
    invitation: Invitation | None


@dataclass(frozen=True, slots=True)
class InitResult:
    org: Organization
    admin: User
    token: IssuedPat


def check_upn(upn: str) -> str:
    """A UPN is visible text: no control, format (zero-width, BOM), line/paragraph separator,
    surrogate or bidirectional control character (RLO and friends) that would make two UPNs
    look alike on screen."""
    upn = upn.strip()
    if not UPN.match(upn) or any(
        unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")
        or unicodedata.bidirectional(c) in ("LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI")
        for c in upn
    ):
        raise InvalidInput(f"not a valid user principal name: {upn!r:.80}", code="invalidUserId")
    return upn


def check_not_service(user: User) -> None:
    """An OAuth client's service principal is managed only through its client (issue 11)."""
    if user.identity_source is IdentitySource.SERVICE:
        what = (
            "the organization's SCIM provisioning principal: manage its tokens with `tokenwarden scim token`"
            if user.upn.startswith("scim-provisioning@") and user.upn.endswith(".scim.invalid")
            else "an OAuth client's service principal: manage it through the client (disable or remove it)"
        )
        raise Conflict(f"{user.upn} is {what}", code="servicePrincipal")


def check_org_name(name: str) -> str:
    if not ORG_NAME.match(name):
        raise InvalidInput(
            "organization names are 1-63 characters of letters, digits, '.', '_' and '-'",
            code="invalidOrganizationName",
        )
    return name


class DirectoryService:
    """Organization membership management (org admins) and ``init`` (operator)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        pats: PatService,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._pats = pats
        self._orgs_by_key: dict[str, Organization] = {}

    def initialize(self, org_name: str, admin_upn: str, admin_name: str | None = None) -> InitResult:
        """Create the first organization, its admin and the admin's full-scope PAT. Runs once."""
        check_org_name(org_name)
        upn = check_upn(admin_upn)
        with self._uow() as uow:
            if uow.orgs.all():
                raise Conflict("this database is already initialized", code="alreadyInitialized")
            org = self._create_org(uow, OPERATOR, org_name)
            admin = self._create_user(
                uow, OPERATOR, org, upn, admin_name or upn, Role.ADMIN, IdentitySource.LOCAL
            )
            uow.commit()
        token = self._pats.create(
            OPERATOR,
            org=org.id,
            user=admin.id,
            display_name="initial admin token",
            scope=FULL_ACCESS,
            valid_to=self._clock.now() + timedelta(days=INIT_TOKEN_DAYS),
        )
        return InitResult(org, admin, token)

    def add_org(self, org_name: str, admin_upn: str, admin_name: str | None = None) -> InitResult:
        """Operator: another organization with its administrator (new or existing user) and a
        full-scope PAT for that administrator in the new organization, shown once."""
        check_org_name(org_name)
        upn = check_upn(admin_upn)
        with self._uow() as uow:
            if uow.orgs.by_name(org_name):
                raise Conflict(f"organization {org_name!r} exists", code="organizationExists")
            org = self._create_org(uow, OPERATOR, org_name)
            admin = uow.users.by_upn(upn)
            if admin is None:
                admin = self._create_user(
                    uow, OPERATOR, org, upn, admin_name or upn, Role.ADMIN, IdentitySource.LOCAL
                )
            else:
                self._set_role(uow, OPERATOR, org, admin, Role.ADMIN)
            uow.commit()
        token = self._pats.create(
            OPERATOR,
            org=org.id,
            user=admin.id,
            display_name=f"initial admin token for {org.name}",
            scope=FULL_ACCESS,
            valid_to=self._clock.now() + timedelta(days=INIT_TOKEN_DAYS),
        )
        return InitResult(org, admin, token)

    def create_org(self, actor: Actor, name: str) -> Organization:
        check_org_name(name)
        with self._uow() as uow:
            if uow.orgs.by_name(name):
                raise Conflict(f"organization {name!r} exists", code="organizationExists")
            org = self._create_org(uow, actor, name)
            uow.commit()
        return org

    def add_user(
        self,
        actor: Actor,
        org: str,
        upn: str,
        *,
        display_name: str | None = None,
        role: Role = Role.MEMBER,
        identity_source: IdentitySource = IdentitySource.LOCAL,
    ) -> AddResult:
        """Add a user to an organization, creating the user when the UPN is new.

        An identity that already exists belongs to someone else's organization (or did): an
        administrator only *invites* it, and nothing changes until it accepts. Only the
        operator enrols an existing identity directly."""
        upn = check_upn(upn)
        name = check_display_name(display_name) if display_name else upn
        if identity_source is IdentitySource.SERVICE:
            raise InvalidInput(
                "identitySource 'service' is reserved for OAuth clients' service principals",
                code="invalidIdentitySource",
            )
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            user = uow.users.by_upn(upn)
            if user is None:
                user = self._create_user(uow, actor, the_org, upn, name, role, identity_source)
                membership = uow.users.membership(the_org.id, user.id)
                result = AddResult(user, membership, None)
            elif uow.users.membership(the_org.id, user.id) is not None:
                raise Conflict(f"{upn} is already a member of {the_org.name}", code="memberExists")
            elif user.identity_source is IdentitySource.SERVICE:
                check_not_service(user)
            elif actor.is_operator:
                self._set_role(uow, actor, the_org, user, role)
                self._close_invitations(uow, the_org.id, user.id)
                result = AddResult(user, uow.users.membership(the_org.id, user.id), None)
            else:
                result = AddResult(user, None, self._invite(uow, actor, the_org, user, role))
            uow.commit()
        return result

    def _invite(self, uow: UnitOfWork, actor: Actor, org: Organization, user: User, role: Role) -> Invitation:
        for pending in uow.invitations.find(org_id=org.id, user_id=user.id):
            if pending.status == "pending" and pending.expires_at > self._clock.now():
                return pending
        now = self._clock.now()
        invitation = Invitation(
            id=new_id(),
            org_id=org.id,
            user_id=user.id,
            role=role,
            invited_by=actor.user_id,
            created_at=now,
            expires_at=now + timedelta(days=INVITATION_DAYS),
        )
        uow.invitations.add(invitation)
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.MEMBER_INVITE,
            org_id=org.id,
            target_type="invitation",
            target_id=invitation.id,
            details={"upn": user.upn, "role": role.value, "expiresAt": invitation.expires_at.isoformat()},
        )
        return invitation

    def _close_invitations(self, uow: UnitOfWork, org_id: str, user_id: str) -> None:
        """Pending invitations of a user to an organization end when the membership changes
        otherwise (enrolled directly, removed): an old invitation never re-admits anyone."""
        for inv in uow.invitations.find(org_id=org_id, user_id=user_id):
            if inv.status == "pending":
                uow.invitations.update(replace(inv, status="cancelled", decided_at=self._clock.now()))

    def list_invitations(self, actor: Actor, org: str) -> list[tuple[Invitation, User]]:
        """An organization's pending invitations (its admins)."""
        now = self._clock.now()
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            return [
                (inv, user_by_id(uow, inv.user_id))
                for inv in uow.invitations.find(org_id=the_org.id)
                if inv.status == "pending" and inv.expires_at > now
            ]

    def cancel_invitation(self, actor: Actor, org: str, invitation_id: str) -> Invitation:
        """Withdraw a pending invitation (an admin of the inviting organization)."""
        inv_id = parse_uuid(invitation_id, "invitation id", code="invalidInvitationId")
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            inv = uow.invitations.get(inv_id)
            if inv is None or inv.org_id != the_org.id:
                raise NotFound(f"no invitation {inv_id} in this organization", code="invitationNotFound")
            if inv.status != "pending":
                raise Conflict(f"this invitation is already {inv.status}", code="invitationClosed")
            cancelled = replace(inv, status="cancelled", decided_at=self._clock.now())
            uow.invitations.update(cancelled)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.MEMBER_INVITE_CANCEL,
                org_id=the_org.id,
                target_type="invitation",
                target_id=inv.id,
                details={"role": inv.role.value},
            )
            uow.commit()
        return cancelled

    def invitations_for(self, actor: Actor) -> list[tuple[Invitation, Organization]]:
        """The pending invitations addressed to the actor (with the inviting organization)."""
        now = self._clock.now()
        with reading(self._uow) as uow:
            result = []
            for inv in uow.invitations.find(user_id=actor.user_id or ""):
                o = uow.orgs.get(inv.org_id)
                if inv.status == "pending" and inv.expires_at > now and o is not None:
                    result.append((inv, o))
            return result

    def answer_invitation(self, actor: Actor, invitation_id: str, accept: bool) -> Invitation:
        """The invited identity accepts (becomes a member) or declines. Nobody else can."""
        inv_id = parse_uuid(invitation_id, "invitation id", code="invalidInvitationId")
        now = self._clock.now()
        with self._uow() as uow:
            inv = uow.invitations.get(inv_id)
            if inv is None or actor.is_operator or inv.user_id != actor.user_id:
                raise NotFound(f"no invitation {inv_id} for you", code="invitationNotFound")
            if inv.status != "pending":
                raise Conflict(f"this invitation is already {inv.status}", code="invitationClosed")
            if inv.expires_at <= now:
                raise Conflict("this invitation has expired", code="invitationExpired")
            the_org = get_org(uow, inv.org_id)
            if accept:
                if not actor.reaches(the_org.id):
                    raise Forbidden(
                        "this token is restricted to other organizations: accept with a token valid "
                        "in all of your organizations (allOrgs; the operator issues one with "
                        "`tokenwarden pat create --all-orgs`)",
                        code="accessDenied",
                    )
                inviter = uow.users.membership(the_org.id, inv.invited_by or "")
                if inv.invited_by is not None and (
                    inviter is None or inviter.role is not Role.ADMIN or not inviter.is_active
                ):
                    uow.invitations.update(replace(inv, status="cancelled", decided_at=now))
                    uow.commit()
                    raise Conflict(
                        "whoever sent this invitation no longer administers the organization",
                        code="invitationClosed",
                    )
                if uow.users.membership(the_org.id, inv.user_id) is not None:
                    raise Conflict("you are already a member of this organization", code="memberExists")
            decided = replace(inv, status="accepted" if accept else "declined", decided_at=now)
            uow.invitations.update(decided)
            if accept:
                self._set_role(uow, actor, the_org, user_by_id(uow, inv.user_id), inv.role)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.MEMBER_INVITE_ACCEPT if accept else AuditEventType.MEMBER_INVITE_DECLINE,
                org_id=the_org.id,
                target_type="invitation",
                target_id=inv.id,
                details={"upn": actor.upn, "role": inv.role.value},
            )
            uow.commit()
        return decided

    def set_role(self, actor: Actor, org: str, upn: str, role: Role) -> Membership:
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            user, _ = member_of(uow, the_org.id, upn)
            check_not_service(user)
            if user.id == actor.user_id and role is not Role.ADMIN:
                raise InvalidInput("administrators cannot demote themselves", code="cannotDemoteSelf")
            self._set_role(uow, actor, the_org, user, role)
            membership = uow.users.membership(the_org.id, user.id)
            uow.commit()
        assert membership is not None  # noqa: S101 - set just above, in this transaction
        return membership

    def remove_member(self, actor: Actor, org: str, upn: str) -> None:
        """Remove a member: their tokens stop working in this organization at once (and, since
        the membership is gone, stay dead even if the identity is enrolled again later)."""
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            user, _ = member_of(uow, the_org.id, upn)
            check_not_service(user)
            if user.id == actor.user_id:
                raise InvalidInput("administrators cannot remove themselves", code="cannotRemoveSelf")
            uow.users.remove_membership(the_org.id, user.id)
            self._close_invitations(uow, the_org.id, user.id)
            uow.watermarks.raise_to(
                SubjectType.MEMBER,
                [member_subject(the_org.id, user.id)],
                [k.value for k in ALL_KINDS],
                self._clock.now(),
            )
            publish(uow, EventType.MEMBERSHIP_CHANGED, user_id=user.id, org_id=the_org.id)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.MEMBERSHIP_CHANGE,
                org_id=the_org.id,
                target_type="user",
                target_id=user.id,
                details={"upn": user.upn, "role": None},
            )
            uow.commit()

    def set_status(self, actor: Actor, org: str, upn: str, status: UserStatus) -> Membership:
        """Disable or re-activate a member *in this organization*. Disabling kills every token of
        the member there at once; their standing in other organizations is untouched."""
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            user, current = member_of(uow, the_org.id, upn)
            check_not_service(user)
            if user.id == actor.user_id and status is not UserStatus.ACTIVE:
                raise InvalidInput("administrators cannot disable themselves", code="cannotDisableSelf")
            updated = current.with_changes(status=status)
            uow.users.set_membership(updated)
            if status is not UserStatus.ACTIVE:
                # Watermarks, not just the status: re-enabling the member later must not
                # bring back the tokens that existed when it was disabled.
                uow.watermarks.raise_to(
                    SubjectType.MEMBER,
                    [member_subject(the_org.id, user.id)],
                    [k.value for k in ALL_KINDS],
                    self._clock.now(),
                )
            publish(uow, EventType.USER_CHANGED, user_id=user.id)
            if status is not UserStatus.ACTIVE:
                emit_session_revoked(
                    uow,
                    self._clock,
                    user=user,
                    org_id=the_org.id,
                    initiating_entity="admin",
                    reason_admin=f"user {status.value}",
                )
            event = (
                AuditEventType.USER_DISABLE if status is not UserStatus.ACTIVE else AuditEventType.USER_UPDATE
            )
            audit(
                uow,
                self._clock,
                actor,
                event,
                org_id=the_org.id,
                target_type="user",
                target_id=user.id,
                details={"upn": user.upn, "status": status.value, "previousStatus": current.status.value},
            )
            uow.commit()
        return updated

    def list_users(self, actor: Actor, org: str) -> list[tuple[User, Membership]]:
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            result = []
            for user in uow.users.find(org_id=the_org.id):
                m = uow.users.membership(the_org.id, user.id)
                if m is not None:
                    result.append((user, m))
            return result

    def get_member(self, actor: Actor, org: str, upn_or_id: str) -> tuple[User, Membership]:
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            if actor.is_operator or not actor.reaches(the_org.id):
                require_admin(uow, actor, the_org.id)
            user, m = member_of(uow, the_org.id, upn_or_id)
            if user.id != actor.user_id:
                require_admin(uow, actor, the_org.id)
            return user, m

    def orgs_of(self, actor: Actor) -> list[tuple[Organization, Role]]:
        with reading(self._uow) as uow:
            if actor.is_operator:
                return [(o, Role.ADMIN) for o in uow.orgs.all()]
            result = []
            for m in uow.users.memberships_of(actor.user_id or ""):
                o = uow.orgs.get(m.org_id)
                # Only what the acting token reaches: an org-restricted token sees its own org.
                if o is not None and m.is_active and actor.reaches(o.id):
                    result.append((o, m.role))
            return sorted(result, key=lambda pair: pair[0].name.casefold())

    def find_org(self, name_or_id: str) -> Organization:
        """Organization by name (case-insensitive) or id. Organizations are never renamed or
        deleted, so positive answers are cached for the life of the process."""
        key = name_or_id.casefold()
        cached = self._orgs_by_key.get(key)
        if cached is not None:
            return cached
        with reading(self._uow) as uow:
            org = get_org(uow, name_or_id)
        if len(self._orgs_by_key) < 10_000:
            self._orgs_by_key[key] = org
        return org

    # ------------------------------------------------------------------ helpers
    def _create_org(self, uow: UnitOfWork, actor: Actor, name: str) -> Organization:
        org = Organization(id=new_id(), name=name, created_at=self._clock.now())
        uow.orgs.add(org)
        uow.policies.save(OrgPolicy(org_id=org.id))
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.ORG_CREATE,
            org_id=org.id,
            target_type="org",
            target_id=org.id,
            details={"name": name},
        )
        return org

    def _create_user(
        self,
        uow: UnitOfWork,
        actor: Actor,
        org: Organization,
        upn: str,
        name: str,
        role: Role,
        source: IdentitySource,
    ) -> User:
        user = User(
            id=new_id(),
            upn=upn,
            display_name=name,
            status=UserStatus.ACTIVE,
            risk_level=RiskLevel.NONE,
            identity_source=source,
            created_at=self._clock.now(),
        )
        uow.users.add(user)
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.USER_CREATE,
            org_id=org.id,
            target_type="user",
            target_id=user.id,
            details={"upn": upn, "displayName": name, "identitySource": source.value},
        )
        self._set_role(uow, actor, org, user, role)
        return user

    def _set_role(self, uow: UnitOfWork, actor: Actor, org: Organization, user: User, role: Role) -> None:
        current = uow.users.membership(org.id, user.id)
        uow.users.set_membership(
            current.with_changes(role=role) if current is not None else Membership(org.id, user.id, role)
        )
        publish(uow, EventType.MEMBERSHIP_CHANGED, user_id=user.id, org_id=org.id)
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.MEMBERSHIP_CHANGE,
            org_id=org.id,
            target_type="user",
            target_id=user.id,
            details={"upn": user.upn, "role": role.value},
        )
