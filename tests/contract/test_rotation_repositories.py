"""The rotation repositories' contract (issue 13): every backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from tests.contract.test_repositories import T0, make_org, new_id
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.managed import CredentialStatus, ManagedCredential, SourceKind, StoreKind
from tokenwarden.domain.rotation import Reason, RotationSettings, Step
from tokenwarden.ports.repositories import Database
from tokenwarden.ports.rotation import RotationRecord


def credential(org_id: str, name: str = "deploy-bot", **changes: object) -> ManagedCredential:
    base = ManagedCredential(
        id=new_id(),
        org_id=org_id,
        name=name,
        source=SourceKind.LOCAL,
        authorization_id=new_id(),
        display_base="deploy bot",
        scopes=("vso.code", "vso.build"),
        store=StoreKind.BUILTIN,
        secret_name=name,
        store_secret_name=f"{name}-0000abcd",
        rotation=RotationSettings(7, 30, 15),
        created_at=T0,
        updated_at=T0,
        valid_to=T0 + timedelta(days=30),
        contacts=("ops@example.com",),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def rotation(cred: ManagedCredential, **changes: object) -> RotationRecord:
    base = RotationRecord(
        id=new_id(),
        credential_id=cred.id,
        org_id=cred.org_id,
        trigger="schedule",
        reason=Reason.EXPIRING,
        step=Step.PLANNED,
        predecessor_id=cred.authorization_id,
        successor_name=f"{cred.display_base}-v{cred.version + 1}",
        started_at=T0,
        updated_at=T0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _org(db: Database, name: str = "acme") -> str:
    org = make_org(name)
    with db() as uow:
        uow.orgs.add(org)
        uow.commit()
    return org.id


def test_credentials_round_trip_and_names_are_unique_per_org_and_store(db: Database) -> None:
    org, other = _org(db), _org(db, "globex")
    cred = credential(org)
    with db() as uow:
        uow.managed.add(cred, sealed_ado_credential="sealed-blob")
        uow.commit()
    with db() as uow:
        assert uow.managed.get(cred.id) == cred
        assert uow.managed.by_name(org, "DEPLOY-BOT") == cred  # case-insensitive
        assert uow.managed.by_name(other, "deploy-bot") is None
        assert uow.managed.sealed_ado_credential(cred.id) == "sealed-blob"
        assert uow.managed.by_authorization(cred.authorization_id) == [cred]
        with pytest.raises(Conflict, match="exists in this organization"):
            uow.managed.add(credential(org, "Deploy-Bot", store_secret_name="other-1"))
        # another org may use the name, but not the same store-side secret
        with pytest.raises(Conflict, match="already holds a managed secret"):
            uow.managed.add(credential(other, "deploy-bot"))
        uow.managed.add(credential(other, "deploy-bot", store_secret_name="deploy-bot-2"))
        uow.commit()
    with db() as uow:
        assert [c.org_id for c in uow.managed.all()] == sorted([org, other])
        assert [c.name for c in uow.managed.all(org)] == ["deploy-bot"]


def test_update_writes_the_mutable_fields_and_remove_deletes(db: Database) -> None:
    org = _org(db)
    cred = credential(org)
    with db() as uow:
        uow.managed.add(cred)
        uow.commit()
    changed = replace(
        cred,
        authorization_id=new_id(),
        version=1,
        valid_to=T0 + timedelta(days=60),
        status=CredentialStatus.FAILING,
        failures=2,
        last_error="store unreachable",
        next_attempt_at=T0 + timedelta(minutes=5),
        last_rotated_at=T0 + timedelta(days=1),
        contacts=("a@example.com", "b@example.com"),
        rotation=RotationSettings(3, 10, 0),
        updated_at=T0 + timedelta(days=1),
    )
    with db() as uow:
        uow.managed.update(changed)
        uow.commit()
    with db() as uow:
        assert uow.managed.get(cred.id) == changed
        assert uow.managed.sealed_ado_credential(cred.id) is None
        assert uow.managed.remove(cred.id)
        assert not uow.managed.remove(cred.id)
        uow.commit()
    with db() as uow:
        assert uow.managed.get(cred.id) is None


def test_lease_is_a_compare_and_set_that_expires(db: Database) -> None:
    org = _org(db)
    cred = credential(org)
    with db() as uow:
        uow.managed.add(cred)
        uow.commit()
    until = T0 + timedelta(minutes=5)
    with db() as uow:
        assert uow.managed.try_lease(cred.id, "node-a", T0, until)
        assert not uow.managed.try_lease(cred.id, "node-b", T0 + timedelta(minutes=1), until)
        uow.managed.release(cred.id, "node-b")  # not the holder: no effect
        assert not uow.managed.try_lease(cred.id, "node-b", T0 + timedelta(minutes=1), until)
        uow.commit()
    with db() as uow:  # node-a died: its lease runs out
        later = until + timedelta(seconds=1)
        assert uow.managed.try_lease(cred.id, "node-b", later, later + timedelta(minutes=5))
        uow.managed.release(cred.id, "node-b")
        assert uow.managed.try_lease(cred.id, "node-c", later, later + timedelta(minutes=5))
        assert not uow.managed.try_lease("no-such-credential", "node-c", later, later)
        uow.commit()


def test_one_open_rotation_per_credential_and_closing_frees_it(db: Database) -> None:
    org = _org(db)
    cred = credential(org)
    with db() as uow:
        uow.managed.add(cred)
        first = rotation(cred)
        uow.rotations.start(first)
        uow.commit()
    with db() as uow:
        with pytest.raises(Conflict, match="in progress"):
            uow.rotations.start(rotation(cred))
        assert uow.rotations.open_for(cred.id) == first
        created = replace(
            first,
            step=Step.CREATED,
            successor_id=new_id(),
            successor_valid_to=T0 + timedelta(days=30),
            successor_fingerprint=b"\x00\x01fingerprint\xff",
            updated_at=T0 + timedelta(seconds=1),
        )
        uow.rotations.save(created)
        uow.commit()
    with db() as uow:
        assert uow.rotations.get(first.id) == created
        assert uow.rotations.open_all() == [created]
        done = replace(
            created,
            step=Step.DONE,
            store_version="3",
            revoke_after=T0 + timedelta(minutes=15),
            attempts=2,
            error=None,
            finished_at=T0 + timedelta(minutes=16),
        )
        uow.rotations.save(done)
        uow.commit()
    with db() as uow:
        assert uow.rotations.open_for(cred.id) is None
        assert uow.rotations.open_all() == []
        second = rotation(cred, started_at=T0 + timedelta(days=1), updated_at=T0 + timedelta(days=1))
        uow.rotations.start(second)  # the closed one no longer blocks
        uow.commit()
    with db() as uow:
        assert [r.id for r in uow.rotations.history(credential_id=cred.id)] == [second.id, first.id]
        assert [r.id for r in uow.rotations.history(org_id=org, limit=1)] == [second.id]
        assert uow.rotations.history(org_id="another-org") == []
        assert uow.rotations.get(first.id) == done


def test_leaving_without_commit_undoes_credential_and_journal_writes(db: Database) -> None:
    org = _org(db)
    cred = credential(org)
    with db() as uow:
        uow.managed.add(cred)
        uow.rotations.start(rotation(cred))
    with db() as uow:
        assert uow.managed.get(cred.id) is None
        assert uow.rotations.open_for(cred.id) is None
