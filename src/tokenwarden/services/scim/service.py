"""An organization's SCIM service: who may call it (its provisioning tokens only), the tokens
themselves, its settings, and the Users and Groups endpoints (docs/scim.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import scim2_models as scim

from tokenwarden.domain import token_format
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import InvalidInput, NotFound
from tokenwarden.domain.events import EventType
from tokenwarden.domain.hashing import SecretHasher
from tokenwarden.domain.principals import (
    IdentitySource,
    Membership,
    Organization,
    RiskLevel,
    Role,
    User,
    UserStatus,
)
from tokenwarden.domain.scopes import PROVISIONING
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.ports.scim import ScimConfig
from tokenwarden.services.common import Actor, audit, get_org, new_id, publish, reading, require_admin
from tokenwarden.services.pats import revoke_record
from tokenwarden.services.scim.documents import ScimAnswer, page
from tokenwarden.services.scim.groups import ScimGroups, sync_admins
from tokenwarden.services.scim.models import LIST_RESPONSE
from tokenwarden.services.scim.users import Offboarding, ScimUsers
from tokenwarden.services.validation import Caller

SCIM_SCOPE: Final = PROVISIONING
DEFAULT_TOKEN_DAYS: Final = 365
MAX_TOKEN_DAYS: Final = 730
TOKEN_NAME: Final = "SCIM provisioning token"


@dataclass(frozen=True, slots=True)
class IssuedScimToken:
    """A provisioning token; ``secret`` is shown once and never stored."""

    record: TokenRecord
    secret: str


class ScimService:
    """Per-organization SCIM 2.0 provisioning: the ``Users`` and ``Groups`` endpoints, the
    provisioning tokens that alone may call them, and the admin-group setting."""

    def __init__(
        self, uow: UnitOfWorkFactory, clock: Clock, hasher: SecretHasher, offboarding: Offboarding
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._hasher = hasher
        self.users = ScimUsers(uow, clock, offboarding)
        self.groups = ScimGroups(uow, clock)

    # ------------------------------------------------------------------ who may call
    def organization(self, org: str) -> Organization | None:
        """The organization a ``/scim/v2/{org}`` URL names (by name or id), if any."""
        with reading(self._uow) as uow:
            return uow.orgs.by_name(org) or uow.orgs.get(org)

    def check_caller(self, caller: Caller, org: Organization) -> None:
        """Only this organization's provisioning tokens reach its SCIM service: a service token
        of its SCIM principal (a full-access admin PAT is not one). Raises ``401``."""
        with reading(self._uow) as uow:
            config = uow.scim.config(org.id)
        if (
            caller.token.kind is not TokenKind.SERVICE
            or config is None
            or config.principal_id is None
            or caller.token.user_id != config.principal_id
        ):
            raise scim.SCIMException.from_error(
                scim.Error(status=401, detail="a provisioning token of this organization is required")
            )

    # ------------------------------------------------------------------ searching everything
    def search_all(
        self,
        org: Organization,
        base: str,
        filter_text: str | None,
        start_index: int | None,
        count: int | None,
        attributes: str | None = None,
        excluded: str | None = None,
    ) -> ScimAnswer:
        """``POST /.search`` at the root (RFC 7644 §3.4.3): users, then groups, paged as one list.
        A filter on an attribute only one of them has matches nothing of the other."""
        start, size = page(start_index, count)
        endpoints: list[ScimUsers | ScimGroups] = [self.users, self.groups]
        totals: list[int] = []
        failure: scim.SCIMException | None = None
        for endpoint in endpoints:
            try:
                found = endpoint.search(org, base, filter_text, 1, 0)
                totals.append(int((found.body or {})["totalResults"]))
            except scim.InvalidFilterException as exc:
                failure = failure or exc
                totals.append(-1)
        if all(t < 0 for t in totals) and failure is not None:
            raise failure
        resources: list[dict[str, Any]] = []
        offset = start - 1
        for endpoint, total in zip(endpoints, totals, strict=True):
            if total <= 0:
                continue
            if offset < total and len(resources) < size:
                part = endpoint.search(
                    org, base, filter_text, offset + 1, size - len(resources), attributes, excluded
                )
                resources += (part.body or {})["Resources"]
            offset = max(0, offset - total)
        body = {
            "schemas": [LIST_RESPONSE],
            "totalResults": sum(max(0, t) for t in totals),
            "startIndex": start,
            "itemsPerPage": len(resources),
            "Resources": resources,
        }
        return ScimAnswer(body)

    # ------------------------------------------------------------------ tokens (admins)
    def create_token(self, actor: Actor, org: str, days: int = DEFAULT_TOKEN_DAYS) -> IssuedScimToken:
        """Issue a provisioning token (created with the organization's SCIM principal on first use)."""
        if not 1 <= days <= MAX_TOKEN_DAYS:
            raise InvalidInput(f"--days must be between 1 and {MAX_TOKEN_DAYS}", code="invalidLifetime")
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            principal = self._principal(uow, actor, the_org)
            secret = token_format.generate(TokenKind.SERVICE)
            record = TokenRecord(
                authorization_id=new_id(),
                kind=TokenKind.SERVICE,
                user_id=principal.id,
                org_id=the_org.id,
                display_name=TOKEN_NAME,
                scopes=(SCIM_SCOPE,),
                target_orgs=(the_org.id,),
                secret_hash=self._hasher.hash(secret),
                pepper_id=self._hasher.current_id,
                valid_from=now,
                valid_to=now + timedelta(days=days),
                created_at=now,
            )
            uow.tokens.add(record)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.SCIM_TOKEN_CREATE,
                org_id=the_org.id,
                target_type="serviceToken",
                target_id=record.authorization_id,
                details={"validTo": record.valid_to.isoformat() if record.valid_to else None},
            )
            uow.commit()
        return IssuedScimToken(record, secret)

    def tokens(self, actor: Actor, org: str) -> list[TokenRecord]:
        """The organization's provisioning tokens, newest first (revoked and expired included)."""
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            config = uow.scim.config(the_org.id)
            if config is None or config.principal_id is None:
                return []
            records = uow.tokens.list_for_user(config.principal_id, TokenKind.SERVICE)
        return sorted(
            (r for r in records if r.org_id == the_org.id), key=lambda r: r.created_at, reverse=True
        )

    def revoke_token(self, actor: Actor, org: str, token_id: str) -> TokenRecord:
        """Revoke one provisioning token at once, on every node."""
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            config = uow.scim.config(the_org.id)
            record = uow.tokens.get(token_id) if config and config.principal_id else None
            if record is None or config is None or record.user_id != config.principal_id:
                raise NotFound(f"no provisioning token {token_id!r:.80} in this organization")
            if record.revoked_at is not None:
                return record
            revoked = revoke_record(
                uow,
                self._clock,
                actor,
                record,
                reason="SCIM provisioning token revoked",
                revoked_by=actor.upn or "operator",
            )
            uow.commit()
        return revoked

    # ------------------------------------------------------------------ settings (admins)
    def configure(self, actor: Actor, org: str, admin_group: str | None) -> ScimConfig:
        """Name the group whose members are admins (``""`` clears it); roles follow at once."""
        if admin_group is not None and len(admin_group) > 256:
            raise InvalidInput("the admin group is at most 256 characters", code="invalidValue")
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            config = (uow.scim.config(the_org.id) or ScimConfig(the_org.id)).with_changes(
                admin_group=admin_group or None
            )
            uow.scim.save_config(config)
            provisioned, total = uow.scim.users(the_org.id, {}, 0, 1_000_000)
            sync_admins(uow, self._clock, actor, the_org, [r.id for r in provisioned])
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.SCIM_CONFIGURE,
                org_id=the_org.id,
                target_type="organization",
                target_id=the_org.id,
                details={"adminGroup": config.admin_group, "provisionedUsers": total},
            )
            uow.commit()
        return config

    def config(self, actor: Actor, org: str) -> ScimConfig:
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            return uow.scim.config(the_org.id) or ScimConfig(the_org.id)

    def _principal(self, uow: UnitOfWork, actor: Actor, org: Organization) -> User:
        """The organization's SCIM service principal: a member with no rights of its own, whose
        only tokens are provisioning tokens."""
        config = uow.scim.config(org.id) or ScimConfig(org.id)
        if config.principal_id is not None:
            existing = uow.users.get(config.principal_id)
            if existing is not None:
                return existing
        now: datetime = self._clock.now()
        principal = User(
            id=new_id(),
            upn=f"scim-provisioning@{org.id}.scim.invalid",
            display_name=f"SCIM provisioning ({org.name})",
            status=UserStatus.ACTIVE,
            risk_level=RiskLevel.NONE,
            identity_source=IdentitySource.SERVICE,
            created_at=now,
        )
        uow.users.add(principal)
        uow.users.set_membership(Membership(org.id, principal.id, Role.MEMBER))
        uow.scim.save_config(config.with_changes(principal_id=principal.id))
        publish(uow, EventType.MEMBERSHIP_CHANGED, user_id=principal.id, org_id=org.id)
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.USER_CREATE,
            org_id=org.id,
            target_type="user",
            target_id=principal.id,
            details={"upn": principal.upn, "identitySource": "service", "via": "scim"},
        )
        return principal
