"""Offboarding (issue 17): a leaver's every token dead in one step, their service credentials and
token watches handed to a successor (docs/offboarding.md).

One transaction (:meth:`OffboardingService.offboard_in`, which SCIM deactivation also runs in its
own transaction) disables the membership, cuts every token kind of the member by watermarks and
hands over; after the commit :meth:`OffboardingService.complete` rotates each handed-over managed
credential, so the token the secret store serves is minted for the successor and the leaver's copy
is dead for good (it already is by the watermark; the rotation makes the store serve a live one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import DomainError, InvalidInput, NotFound
from tokenwarden.domain.events import EventType
from tokenwarden.domain.managed import CredentialStatus, ManagedCredential, SourceKind
from tokenwarden.domain.principals import IdentitySource, Organization, User, UserStatus, member_subject
from tokenwarden.domain.watermarks import ALL_KINDS, SubjectType
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import Actor, audit, get_org, member_of, publish, require_admin
from tokenwarden.services.directory import check_not_service
from tokenwarden.services.rotation import RotationResult, RotationService
from tokenwarden.services.signals import emit_session_revoked

# The leaver's stored tokens named to every node before the commit (an intent: refused at once);
# beyond this many the rest wait for the commit, which cuts them all by watermark anyway.
EARLY_HASHES: Final = 1000
HASHES_PER_EVENT: Final = 100  # an event's hashes must fit one bus message (NOTIFY: < 8,000 bytes)
MAX_ERROR: Final = 300


@dataclass(frozen=True, slots=True)
class OffboardPlan:
    """What the offboarding transaction did, and the credentials :meth:`OffboardingService.complete`
    rotates once it has committed."""

    org_id: str
    org_name: str
    user_id: str
    upn: str
    successor_id: str | None
    successor_upn: str | None
    how: str
    initiated_by: str
    previous_status: str
    membership_status: str
    revoked_kinds: tuple[str, ...]
    tokens_revoked: int
    to_rotate: tuple[tuple[str, str], ...]  # (credential id, name)
    watchers_handed_over: int
    contacts_replaced: int
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CredentialHandover:
    """One managed credential passed to the successor, and how its rotation went."""

    id: str
    name: str
    rotated: bool
    rotation_result: str | None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "rotated": self.rotated,
            "rotationResult": self.rotation_result,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class OffboardReport:
    """The outcome of an offboarding, as the CLI and SCIM report it."""

    plan: OffboardPlan
    credentials: tuple[CredentialHandover, ...]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Every handed-over credential was rotated."""
        return all(c.rotated for c in self.credentials)

    def as_dict(self) -> dict[str, Any]:
        p = self.plan
        return {
            "upn": p.upn,
            "userId": p.user_id,
            "org": p.org_name,
            "orgId": p.org_id,
            "successor": p.successor_upn,
            "successorChosenBy": p.how,
            "initiatedBy": p.initiated_by,
            "previousStatus": p.previous_status,
            "membershipStatus": p.membership_status,
            "revokedKinds": list(p.revoked_kinds),
            "tokensRevokedCount": p.tokens_revoked,
            "credentialsHandedOver": [c.as_dict() for c in self.credentials],
            "watchersHandedOver": p.watchers_handed_over,
            "contactsReplaced": p.contacts_replaced,
            "warnings": list(self.warnings),
        }


def _raw_addresses(user: User) -> list[str]:
    return [a for a in (user.upn, user.email) if a]


def _addresses(user: User) -> set[str]:
    return {a.casefold() for a in _raw_addresses(user)}


def _swap_contacts(contacts: Sequence[str], leaver: set[str], new: str) -> tuple[str, ...]:
    """``contacts`` with the leaver's addresses replaced by ``new`` (no duplicates)."""
    result: dict[str, str] = {}
    for contact in contacts:
        address = new if contact.casefold() in leaver else contact
        result.setdefault(address.casefold(), address)
    return tuple(result.values())


class OffboardingService:
    """Offboard a member of one organization (its administrators, the operator, SCIM)."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, rotation: RotationService) -> None:
        self._uow = uow
        self._clock = clock
        self._rotation = rotation

    def offboard(self, actor: Actor, org: str, upn: str, successor_upn: str | None = None) -> OffboardReport:
        """Offboard ``upn`` from ``org`` (an administrator of it, or the operator) in one
        transaction, then rotate what was handed over. Safe to run again: a retry finishes
        whatever an interrupted run left (the handover, the rotations)."""
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            user, _ = member_of(uow, the_org.id, upn)
            self._check_leaver(actor, user)
            successor, how = self.choose_successor(uow, the_org, user, successor_upn)
            initiated_by = "operator" if actor.is_operator else "admin"
            plan = self.offboard_in(uow, actor, the_org, user, successor, initiated_by=initiated_by, how=how)
            uow.commit()
        return self.complete(actor, plan)

    def choose_successor(
        self, uow: UnitOfWork, org: Organization, leaver: User, given_upn: str | None
    ) -> tuple[User | None, str]:
        """The successor and how they were chosen: ``given_upn`` ("given"; an active member
        of ``org`` other than the leaver, else InvalidInput), else the organization's security
        contact when it names an active member ("securityContact"), else nobody ("none")."""
        if given_upn is not None:
            return self._given(uow, org, leaver, given_upn.strip()), "given"
        policy = uow.policies.get(org.id)
        contact = policy.security_contact if policy else None
        found = self._member_named(uow, org, contact, leaver) if contact else None
        return (found, "securityContact") if found is not None else (None, "none")

    def offboard_in(
        self,
        uow: UnitOfWork,
        actor: Actor,
        org: Organization,
        user: User,
        successor: User | None,
        *,
        initiated_by: str,
        how: str | None = None,
    ) -> OffboardPlan:
        """Offboard ``user`` inside the caller's open unit of work (the caller authorized the
        actor and commits): membership disabled, every token kind of the member cut by watermarks,
        managed credentials and token watches handed to ``successor``, audited. Then call
        :meth:`complete` after the commit."""
        self._check_leaver(actor, user)
        current = uow.users.membership(org.id, user.id)
        if current is None:
            raise NotFound(f"user {user.upn!r:.80} is not a member of this organization", code="userNotFound")
        if successor is not None:
            successor = self._given(uow, org, user, successor.id)
        now = self._clock.now()
        _announce_cut(uow, org, user, now)  # first: the other nodes refuse while the rest is written
        kinds = tuple(k.value for k in ALL_KINDS)
        # live before the cut: issued in this organization, not revoked, expired or already cut
        counts = uow.tokens.count_live(user_ids=[user.id], org_id=org.id, issued_before=now, now=now)
        updated = current.with_changes(status=UserStatus.DISABLED) if current.is_active else current
        if updated != current:
            uow.users.set_membership(updated)
        # watermarks even when already disabled: re-enabling must never bring these tokens back
        uow.watermarks.raise_to(SubjectType.MEMBER, [member_subject(org.id, user.id)], list(kinds), now)
        publish(uow, EventType.USER_CHANGED, user_id=user.id)
        emit_session_revoked(
            uow,
            self._clock,
            user=user,
            org_id=org.id,
            initiating_entity="admin",
            reason_admin="user offboarded",
        )
        warnings: list[str] = []
        to_rotate, contacts = self._hand_over_credentials(uow, org, user, successor, warnings)
        watches = self._hand_over_watches(uow, actor, org, user, successor, warnings)
        how = how or ("given" if successor is not None else "none")
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.USER_OFFBOARD,
            org_id=org.id,
            target_type="user",
            target_id=user.id,
            details={
                "upn": user.upn,
                "successor": successor.upn if successor else None,
                "how": how,
                "initiatedBy": initiated_by,
                "previousStatus": current.status.value,
                "tokensRevoked": sum(counts.values()),
                "credentials": [cred_id for cred_id, _ in to_rotate],
                "watchers": watches,
            },
        )
        return OffboardPlan(
            org_id=org.id,
            org_name=org.name,
            user_id=user.id,
            upn=user.upn,
            successor_id=successor.id if successor else None,
            successor_upn=successor.upn if successor else None,
            how=how,
            initiated_by=initiated_by,
            previous_status=current.status.value,
            membership_status=updated.status.value,
            revoked_kinds=kinds,
            tokens_revoked=sum(counts.values()),
            to_rotate=tuple(to_rotate),
            watchers_handed_over=watches,
            contacts_replaced=contacts,
            warnings=tuple(warnings),
        )

    def complete(self, actor: Actor, plan: OffboardPlan) -> OffboardReport:
        """After the commit: rotate each handed-over managed credential (an emergency rotation:
        the leaver may hold a copy), so the store serves a token minted for the successor."""
        # The rotation runs as the system, not through rotate_now's caller checks: the caller was
        # authorized for the offboarding, the successor goes to the secret store (never to the
        # caller), and the callers here (SCIM's provisioning token, an admin's narrow token, a
        # console session without a fresh factor) would each be refused a token they never see.
        system = Actor(user_id=None, upn="tokenwarden-offboarding", ip=actor.ip)
        done: list[CredentialHandover] = []
        warnings = list(plan.warnings)
        for cred_id, name in plan.to_rotate:
            handed = self._rotate(system, cred_id, name)
            done.append(handed)
            if not handed.rotated:
                warnings.append(
                    f"{name} was handed over but not rotated ({handed.detail}): its store still serves "
                    f"the leaver's dead token; run tokenwarden rotate now {name} --org {plan.org_name}"
                )
        return OffboardReport(plan, tuple(done), tuple(warnings))

    # ------------------------------------------------------------------ helpers
    def _rotate(self, system: Actor, cred_id: str, name: str) -> CredentialHandover:
        with self._uow() as uow:
            cred = uow.managed.get(cred_id)
        if cred is None or cred.status is CredentialStatus.REMOVED:
            return CredentialHandover(cred_id, name, False, None, "the credential was removed")
        try:
            outcome = self._rotation.rotate_now(system, cred, compromised=True)
        except (DomainError, ValueError) as exc:  # e.g. its store is not configured on this node
            return CredentialHandover(cred.id, cred.name, False, RotationResult.FAILED, str(exc)[:MAX_ERROR])
        rotated = outcome.result == RotationResult.ROTATED
        return CredentialHandover(cred.id, cred.name, rotated, outcome.result, outcome.detail[:MAX_ERROR])

    @staticmethod
    def _check_leaver(actor: Actor, user: User) -> None:
        check_not_service(user)
        if user.id == actor.user_id:
            raise InvalidInput("administrators cannot offboard themselves", code="cannotOffboardSelf")

    @staticmethod
    def _given(uow: UnitOfWork, org: Organization, leaver: User, upn_or_id: str) -> User:
        """The successor named: an active member of ``org`` (not a service principal) other than
        the leaver. The same answer for an unknown identity and another organization's."""
        if not upn_or_id:
            raise InvalidInput("the successor's UPN is empty", code="invalidSuccessor")
        user = uow.users.by_upn(upn_or_id) or uow.users.get(upn_or_id)
        m = uow.users.membership(org.id, user.id) if user is not None else None
        if user is None or m is None:
            raise InvalidInput(
                f"successor {upn_or_id!r:.80} is not a member of {org.name}", code="invalidSuccessor"
            )
        if user.id == leaver.id:
            raise InvalidInput("the successor cannot be the leaver", code="invalidSuccessor")
        if user.identity_source is IdentitySource.SERVICE:
            raise InvalidInput(f"successor {user.upn} is a service principal", code="invalidSuccessor")
        if not m.is_active or not user.is_active:
            status = m.status if not m.is_active else user.status
            raise InvalidInput(
                f"successor {user.upn} is {status.value} in {org.name}: choose an active member",
                code="invalidSuccessor",
            )
        return user

    @staticmethod
    def _member_named(uow: UnitOfWork, org: Organization, address: str, leaver: User) -> User | None:
        """The active member (not the leaver) whose UPN, else e-mail, is ``address``."""

        def fits(user: User | None) -> bool:
            if user is None or user.id == leaver.id or not user.is_active:
                return False
            if user.identity_source is IdentitySource.SERVICE:
                return False
            m = uow.users.membership(org.id, user.id)
            return m is not None and m.is_active

        by_upn = uow.users.by_upn(address)
        if fits(by_upn):
            return by_upn
        key = address.casefold()
        matches = [u for u in uow.users.find(org_id=org.id) if (u.email or "").casefold() == key and fits(u)]
        return min(matches, key=lambda u: u.upn.casefold()) if matches else None

    def _hand_over_credentials(
        self,
        uow: UnitOfWork,
        org: Organization,
        leaver: User,
        successor: User | None,
        warnings: list[str],
    ) -> tuple[list[tuple[str, str]], int]:
        """Credentials the leaver owns pass to the successor; the leaver's address in any
        credential's contacts becomes the successor's. Returns (credentials to rotate, contacts
        replaced). A credential handed over by an earlier, interrupted run whose token in service
        is still the leaver's is rotated too."""
        now = self._clock.now()
        leaver_addresses = _addresses(leaver)
        to_rotate: list[tuple[str, str]] = []
        kept: list[str] = []
        replaced = 0
        for cred in uow.managed.all(org.id):
            if cred.status is CredentialStatus.REMOVED:
                continue
            changed: ManagedCredential = cred
            if cred.user_id == leaver.id:
                if successor is None:
                    kept.append(cred.name)
                    continue
                changed = replace(changed, user_id=successor.id)
                to_rotate.append((cred.id, cred.name))
            elif cred.source is SourceKind.LOCAL and self._serves_token_of(uow, cred, leaver):
                to_rotate.append((cred.id, cred.name))
            if successor is not None:
                contacts = _swap_contacts(changed.contacts, leaver_addresses, successor.notify_address)
                if contacts != changed.contacts:
                    changed = replace(changed, contacts=contacts)
                    replaced += 1
            if changed != cred:
                uow.managed.update(replace(changed, updated_at=now))
        if kept:
            warnings.append(
                f"no successor: managed credentials {', '.join(kept)} still name the leaver and their "
                f"tokens in service are dead; run tokenwarden user offboard {leaver.upn} --org {org.name} "
                "--successor UPN"
            )
        return to_rotate, replaced

    @staticmethod
    def _serves_token_of(uow: UnitOfWork, cred: ManagedCredential, leaver: User) -> bool:
        record = uow.tokens.get(cred.authorization_id)
        return record is not None and record.user_id == leaver.id

    def _hand_over_watches(
        self,
        uow: UnitOfWork,
        actor: Actor,
        org: Organization,
        leaver: User,
        successor: User | None,
        warnings: list[str],
    ) -> int:
        """Where the leaver watches a live PAT of this organization (someone else's: their own
        are dead), the successor watches it instead, so its expiry warnings reach a live person.
        Returns how many tokens were handed over."""
        now = self._clock.now()
        leaver_addresses = _addresses(leaver)
        watched = [  # (token id, owner id, the leaver's address as stored)
            (token_id, owner_id, address)
            for token_id, owner_id, address in uow.lifecycle.watched_by(org.id, _raw_addresses(leaver), now)
            if owner_id != leaver.id and address.casefold() in leaver_addresses
        ]
        if successor is None:
            if watched:
                warnings.append(
                    f"no successor: {len(watched)} token watch(es) still send expiry warnings to the leaver"
                )
            return 0
        tokens: set[str] = set()
        for token_id, owner_id, address in watched:
            uow.lifecycle.remove_watcher(token_id, address)
            if owner_id != successor.id:  # an owner hears their own token's warnings anyway
                uow.lifecycle.add_watcher(token_id, successor.notify_address, actor.user_id, now)
            tokens.add(token_id)
        return len(tokens)


def _announce_cut(uow: UnitOfWork, org: Organization, user: User, now: datetime) -> None:
    """Name the leaver's stored tokens of this organization only (up to ``EARLY_HASHES``) as revoked:
    the event store announces these as an intent, so every node refuses them before this
    transaction commits instead of after it (the watermarks, committed with them, are what cut
    them for good and what cuts JWT access tokens). A rollback withdraws the intent."""
    records = uow.rules.live_tokens(
        org.id, issued_before=now, now=now, user_ids=[user.id], limit=EARLY_HASHES
    )
    # a token valid in other organizations too stays valid there: only the watermark cuts it here
    hashes = [r.secret_hash.hex() for r in records if r.target_orgs == (org.id,)]
    for start in range(0, len(hashes), HASHES_PER_EVENT):
        publish(uow, EventType.TOKEN_REVOKED, hashes=hashes[start : start + HASHES_PER_EVENT])
