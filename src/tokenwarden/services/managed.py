"""Managed credentials (issue 13): putting a credential under rotation, listing, removing, and
reading a built-in-store secret. Every change is an org administrator's, scoped to the org and
audited; the external source's admin credential is sealed at rest and never shown again."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Conflict, InvalidInput, NotFound
from tokenwarden.domain.managed import (
    ManagedCredential,
    SourceKind,
    StoreKind,
    check_ado_url,
    check_contacts,
    check_credential_name,
)
from tokenwarden.domain.rotation import RotationSettings, display_base
from tokenwarden.domain.secret_names import MAX_LOGICAL_NAME, check_logical_name
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.ports.rotation import RotationRecord
from tokenwarden.ports.secrets import SecretStore, StoredSecret
from tokenwarden.ports.token_sources import TokenSource, TokenSourceError
from tokenwarden.services.common import Actor, audit, get_org, get_user, new_id, reading, require_admin
from tokenwarden.services.signing import SecretBox

StoreFactory = Callable[[StoreKind], SecretStore]
AdoSourceFactory = Callable[[str, str, str], TokenSource]  # (url, org, credential)

MAX_ADO_CREDENTIAL = 4096


def ado_credential_aad(credential_id: str) -> str:
    return f"managed-credential:{credential_id}"


@dataclass(frozen=True, slots=True)
class NewCredential:
    """What ``managed add`` asks for."""

    name: str
    authorization_id: str
    store: str
    source: str = SourceKind.LOCAL.value
    user: str | None = None
    secret_name: str | None = None
    threshold_days: int = 7
    valid_days: int = 30
    overlap_minutes: int = 0
    contacts: Sequence[str] = ()
    ado_url: str | None = None
    ado_org: str | None = None
    ado_credential: str | None = field(default=None, repr=False)  # a file or stdin, never an argument


def credential_dict(cred: ManagedCredential, last: RotationRecord | None = None) -> dict[str, Any]:
    """The JSON shape of a managed credential (``managed show --json``, the API)."""
    return {
        "id": cred.id,
        "name": cred.name,
        "orgId": cred.org_id,
        "source": cred.source.value,
        "userId": cred.user_id,
        "authorizationId": cred.authorization_id,
        "displayName": cred.display_base,
        "scopes": list(cred.scopes),
        "validTo": cred.valid_to.isoformat() if cred.valid_to else None,
        "adoUrl": cred.ado_url,
        "adoOrg": cred.ado_org,
        "store": cred.store.value,
        "logicalSecretName": cred.secret_name.split("/", 1)[-1],
        "secretName": cred.store_secret_name,
        "thresholdDays": cred.rotation.threshold_days,
        "validDays": cred.rotation.valid_days,
        "overlapMinutes": cred.rotation.overlap_minutes,
        "contacts": list(cred.contacts),
        "version": cred.version,
        "status": cred.status.value,
        "failures": cred.failures,
        "lastError": cred.last_error,
        "lastRotatedAt": cred.last_rotated_at.isoformat() if cred.last_rotated_at else None,
        "nextAttemptAt": cred.next_attempt_at.isoformat() if cred.next_attempt_at else None,
        "createdAt": cred.created_at.isoformat(),
        "lastRotation": rotation_dict(last) if last else None,
    }


def rotation_dict(r: RotationRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "trigger": r.trigger,
        "reason": r.reason.value,
        "step": r.step.value,
        "open": r.open,
        "predecessorId": r.predecessor_id,
        "successorName": r.successor_name,
        "successorId": r.successor_id,
        "storeVersion": r.store_version,
        "revokeAfter": r.revoke_after.isoformat() if r.revoke_after else None,
        "attempts": r.attempts,
        "error": r.error,
        "startedAt": r.started_at.isoformat(),
        "finishedAt": r.finished_at.isoformat() if r.finished_at else None,
    }


class ManagedCredentialService:
    """Use cases on managed credentials (admins of the credential's organization, or the operator)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        stores: StoreFactory,
        box: SecretBox,
        ado_source: AdoSourceFactory,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._stores = stores
        self._box = box
        self._ado_source = ado_source

    # ------------------------------------------------------------------ add
    def add(self, actor: Actor, org: str, new: NewCredential) -> ManagedCredential:
        """Put a credential under rotation. The source must know it and the store must be
        configured on this node; nothing is written to the store until its first rotation."""
        name = check_credential_name(new.name.strip())
        try:
            source = SourceKind(new.source)
        except ValueError:
            raise InvalidInput("source is 'local' or 'ado'", code="invalidSource") from None
        try:
            store_kind = StoreKind(new.store)
        except ValueError:
            kinds = ", ".join(k.value for k in StoreKind)
            raise InvalidInput(f"store is one of: {kinds}", code="invalidStore") from None
        try:
            settings = RotationSettings(new.threshold_days, new.valid_days, new.overlap_minutes)
        except ValueError as exc:
            raise InvalidInput(str(exc), code="invalidRotationSettings") from None
        contacts = check_contacts(list(new.contacts))
        logical = check_logical_name(new.secret_name if new.secret_name is not None else name)
        store = self._stores(store_kind)  # InvalidInput if this node has no such store configured
        now = self._clock.now()
        cred_id = new_id()
        sealed: str | None = None
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
        # a store is shared by every org of the installation: names live under the org's name, so
        # two orgs' "ci" never meet and one org cannot take over (or delete) another's secret
        room = MAX_LOGICAL_NAME - len(the_org.name) - 1
        if len(logical) > room:
            raise InvalidInput(
                f"the secret name is at most {max(room, 0)} characters in {the_org.name} (it is stored "
                "under the organization's name)",
                code="invalidSecretName",
            )
        logical = check_logical_name(f"{the_org.name}/{logical}")
        store_secret_name = store.secret_name(logical)
        if source is SourceKind.LOCAL:
            authorization_id, user_id, scopes, display, valid_to = self._local_token(actor, the_org.id, new)
            ado_url = ado_org = None
        else:
            ado_url, ado_org, credential = self._ado_fields(new)
            source_client = self._ado_source(ado_url, ado_org, credential)
            try:
                token = source_client.get(new.authorization_id.strip())
            except TokenSourceError as exc:
                if exc.code == "targetRefused":  # the operator's allow-list: the caller's input
                    raise InvalidInput(exc.message, code="targetRefused") from None
                raise
            finally:
                close = getattr(source_client, "close", None)
                if callable(close):
                    close()
            if token is None or token.revoked:
                raise NotFound(
                    "the Azure DevOps server has no live PAT with authorizationId "
                    f"{new.authorization_id!r:.80}",
                    code="authorizationNotFound",
                )
            actor.check_may_hold(token.scopes, (the_org.id,))
            authorization_id = token.authorization_id  # as the source spells it: one token, one id
            user_id, scopes, display, valid_to = None, token.scopes, token.display_name, token.valid_to
            sealed = self._box.seal_text(credential, ado_credential_aad(cred_id))
        cred = ManagedCredential(
            id=cred_id,
            org_id=the_org.id,
            name=name,
            source=source,
            authorization_id=authorization_id,
            display_base=display_base(display),
            scopes=tuple(scopes),
            store=store_kind,
            secret_name=logical,
            store_secret_name=store_secret_name,
            rotation=settings,
            created_at=now,
            updated_at=now,
            user_id=user_id,
            valid_to=valid_to,
            ado_url=ado_url,
            ado_org=ado_org,
            contacts=contacts,
            created_by=actor.user_id,
        )
        with self._uow() as uow:
            same = [
                c
                for c in uow.managed.by_authorization(cred.authorization_id)
                if (c.source, c.ado_url, c.ado_org) == (cred.source, cred.ado_url, cred.ado_org)
            ]
            if same:
                raise Conflict(
                    "this token is already under management (one managed credential per token)",
                    code="alreadyManaged",
                )
            uow.managed.add(cred, sealed)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.MANAGED_ADD,
                org_id=the_org.id,
                target_type="managedCredential",
                target_id=cred.id,
                details={
                    "name": cred.name,
                    "source": source.value,
                    "authorizationId": cred.authorization_id,
                    "store": store_kind.value,
                    "secretName": store_secret_name,
                    "thresholdDays": settings.threshold_days,
                    "validDays": settings.valid_days,
                    "overlapMinutes": settings.overlap_minutes,
                },
            )
            uow.commit()
        return cred

    def _local_token(
        self, actor: Actor, org_id: str, new: NewCredential
    ) -> tuple[str, str, tuple[str, ...], str, datetime]:
        if new.ado_url or new.ado_org or new.ado_credential:
            raise InvalidInput(
                "--ado-url, --ado-org and the ADO credential are for --source ado", code="invalidSource"
            )
        with reading(self._uow) as uow:
            record = uow.tokens.get(new.authorization_id.strip().lower())
            missing = NotFound(
                f"no PAT with authorizationId {new.authorization_id!r:.80} in this organization",
                code="authorizationNotFound",
            )
            if record is None or record.kind is not TokenKind.PAT or record.org_id != org_id:
                raise missing
            if new.user is not None:
                owner = get_user(uow, new.user)
                if owner.id != record.user_id:
                    raise InvalidInput("that PAT belongs to another user", code="ownerMismatch")
            if record.revoked_at is not None or record.valid_to <= self._clock.now():
                raise InvalidInput(
                    "that PAT is revoked or expired: create a new one to put under management",
                    code="tokenNotLive",
                )
            if uow.users.membership(org_id, record.user_id) is None:
                raise missing
            policy = uow.policies.get(org_id)
        # an admin acting through a narrow token cannot put a wider token under a rotation
        # that would mint its successors
        actor.check_may_hold(record.scopes, record.target_orgs)
        if policy is not None and new.valid_days > policy.max_lifetime_days:
            raise InvalidInput(
                f"validDays {new.valid_days} is beyond the organization's maximum token lifetime of "
                f"{policy.max_lifetime_days} days",
                code="patLifespanPolicyViolation",
            )
        return record.authorization_id, record.user_id, record.scopes, record.display_name, record.valid_to

    @staticmethod
    def _ado_fields(new: NewCredential) -> tuple[str, str, str]:
        if not new.ado_url or not new.ado_org:
            raise InvalidInput("--source ado needs --ado-url and --ado-org", code="invalidSource")
        credential = (new.ado_credential or "").strip()
        if not credential:
            raise InvalidInput(
                "--source ado needs the Azure DevOps credential (from --ado-credential-file)",
                code="missingCredential",
            )
        if len(credential) > MAX_ADO_CREDENTIAL or not all(0x21 <= ord(ch) < 0x7F for ch in credential):
            raise InvalidInput("the Azure DevOps credential is not a token", code="invalidCredential")
        org = new.ado_org.strip()
        if not org or len(org) > 256 or "/" in org or any(ord(ch) < 0x20 for ch in org):
            raise InvalidInput("--ado-org is an organization name", code="invalidSource")
        return check_ado_url(new.ado_url), org, credential

    # ------------------------------------------------------------------ read
    def get(self, actor: Actor, org: str, name: str) -> tuple[ManagedCredential, RotationRecord | None]:
        with reading(self._uow) as uow:
            cred = self._find(uow, actor, org, name)
            history = uow.rotations.history(credential_id=cred.id, limit=1)
        return cred, (history[0] if history else None)

    def all(self, actor: Actor, org: str) -> list[tuple[ManagedCredential, RotationRecord | None]]:
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            out = []
            for cred in uow.managed.all(the_org.id):
                history = uow.rotations.history(credential_id=cred.id, limit=1)
                out.append((cred, history[0] if history else None))
        return out

    def history(self, actor: Actor, org: str, name: str, limit: int = 20) -> list[RotationRecord]:
        with reading(self._uow) as uow:
            cred = self._find(uow, actor, org, name)
            return uow.rotations.history(credential_id=cred.id, limit=max(1, min(limit, 200)))

    def _find(self, uow: UnitOfWork, actor: Actor, org: str, name: str) -> ManagedCredential:
        the_org = get_org(uow, org)
        require_admin(uow, actor, the_org.id)
        cred = uow.managed.by_name(the_org.id, name.strip()) if name.strip() else None
        if cred is None:
            raise NotFound(
                f"no managed credential named {name!r:.80} in {the_org.name}", code="credentialNotFound"
            )
        return cred

    def find(self, actor: Actor, org: str, name: str) -> ManagedCredential:
        with reading(self._uow) as uow:
            return self._find(uow, actor, org, name)

    # ------------------------------------------------------------------ remove
    def remove(self, actor: Actor, org: str, name: str, *, delete_secret: bool = False) -> ManagedCredential:
        """Stop managing a credential (its token lives on until it expires or is revoked).
        Refused while a rotation is unfinished. ``delete_secret`` also deletes it from the store."""
        with self._uow() as uow:
            cred = self._find(uow, actor, org, name)
            now = self._clock.now()
            if uow.rotations.open_for(cred.id) is not None or not uow.managed.try_lease(
                cred.id, "managed-remove", now, now
            ):
                raise Conflict(
                    "a rotation of this credential is running or unfinished: wait for it, or run "
                    "`tokenwarden rotate run` first",
                    code="rotationInProgress",
                )
            uow.managed.remove(cred.id)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.MANAGED_REMOVE,
                org_id=cred.org_id,
                target_type="managedCredential",
                target_id=cred.id,
                details={
                    "name": cred.name,
                    "deleteSecret": delete_secret,
                    "secretName": cred.store_secret_name,
                },
            )
            uow.commit()
        if delete_secret:
            self._stores(cred.store).delete(cred.secret_name)
        return cred

    # ------------------------------------------------------------------ secrets
    def read_secret(
        self, actor: Actor, org: str, name: str, *, version: str | None = None
    ) -> tuple[ManagedCredential, StoredSecret]:
        """The current (or a given) version of a managed credential's built-in-store secret,
        audited. Only the built-in and file stores are read through tokenwarden."""
        cred = self.find(actor, org, name)
        # reading the secret is holding the token: only a caller whose reach covers it may
        actor.check_may_hold(cred.scopes, (cred.org_id,))
        if cred.store not in (StoreKind.BUILTIN, StoreKind.FILE):
            raise InvalidInput(
                f"{cred.name} is stored in {cred.store.value}: read it from there", code="externalStore"
            )
        stored = self._stores(cred.store).read(cred.secret_name, version)
        if stored is None or (version is None and not stored.current):
            raise NotFound(
                f"{cred.name} has no stored secret yet: it is written at its first rotation",
                code="secretNotFound",
            )
        with self._uow() as uow:
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.SECRET_READ,
                org_id=cred.org_id,
                target_type="managedCredential",
                target_id=cred.id,
                details={"name": cred.name, "version": stored.version},
            )
            uow.commit()
        return cred, stored

    def update_contacts(
        self, actor: Actor, org: str, name: str, contacts: Sequence[str]
    ) -> ManagedCredential:
        checked = check_contacts(list(contacts))
        with self._uow() as uow:
            cred = self._find(uow, actor, org, name)
            changed = replace(cred, contacts=checked, updated_at=self._clock.now())
            uow.managed.update(changed)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.MANAGED_UPDATE,
                org_id=cred.org_id,
                target_type="managedCredential",
                target_id=cred.id,
                details={"name": cred.name, "contacts": len(checked)},
            )
            uow.commit()
        return changed
