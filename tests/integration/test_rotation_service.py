"""The rotation service over a real SQLite database, the real built-in store and tokenwarden's
own PATs as the source, with faults injected around the real parts at every step. After each
fault the invariant is checked: exactly one working stored secret, no orphan live token, every
failure alerted and audited."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import FakeClock
from tokenwarden.bootstrap import Container, build, wire_rotation
from tokenwarden.domain.errors import InvalidInput, Unauthenticated
from tokenwarden.domain.managed import CredentialStatus, ManagedCredential, StoreKind
from tokenwarden.domain.rotation import Step
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.ports.secrets import SecretMeta, SecretStore, SecretStoreError, StoredSecret
from tokenwarden.ports.token_sources import SourceToken, TokenSource, TokenSourceError
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.local_source import LocalPatSource
from tokenwarden.services.managed import NewCredential
from tokenwarden.services.rotation import RotationResult, RotationService
from tokenwarden.settings import Settings


class Crash(BaseException):
    """Stands for kill -9: nothing after the crash point runs (not even except blocks for
    Exception); the journal holds whatever was committed."""


@dataclass
class Faults:
    """Which call fails how. Keys: store.write, store.read, store.promote, store.discard,
    source.create, source.revoke; values: a list of actions consumed one per call."""

    plan: dict[str, list[str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def hit(self, point: str) -> str | None:
        self.calls.append(point)
        actions = self.plan.get(point)
        return actions.pop(0) if actions else None


class FaultyStore:
    """The real store, with faults injected before or after each call."""

    def __init__(self, real: SecretStore, faults: Faults) -> None:
        self._real = real
        self._f = faults
        self.kind = real.kind
        self.staged = real.staged

    def secret_name(self, name: str) -> str:
        return self._real.secret_name(name)

    def _before(self, point: str) -> str | None:
        action = self._f.hit(point)
        if action == "fail":
            raise SecretStoreError(f"{point}: injected failure")
        if action == "transient":
            raise SecretStoreError(f"{point}: injected timeout", transient=True, retry_after=0.5)
        if action == "crash-before":
            raise Crash(point)
        return action

    def write(self, name: str, value: str, meta: SecretMeta) -> str:
        action = self._before("store.write")
        version = self._real.write(name, "corrupted" if action == "corrupt" else value, meta)
        if action == "crash-after":
            raise Crash("store.write")
        return version

    def read(self, name: str, version: str | None = None) -> StoredSecret | None:
        self._before("store.read")
        return self._real.read(name, version)

    def promote(self, name: str, version: str) -> None:
        self._before("store.promote")
        self._real.promote(name, version)

    def discard(self, name: str, version: str) -> None:
        self._before("store.discard")
        self._real.discard(name, version)

    def current_version(self, name: str) -> str | None:
        return self._real.current_version(name)

    def delete(self, name: str) -> None:
        self._real.delete(name)

    def check(self) -> None:
        self._real.check()


class FaultySource:
    def __init__(self, real: TokenSource, faults: Faults) -> None:
        self._real = real
        self._f = faults
        self.kind = real.kind

    def get(self, authorization_id: str) -> SourceToken | None:
        return self._real.get(authorization_id)

    def create(self, display_name: str, scopes: Sequence[str], valid_to: datetime) -> SourceToken:
        action = self._f.hit("source.create")
        if action == "refuse":
            raise TokenSourceError("injected: policy refuses", status=400)
        if action == "rate-limited":
            raise TokenSourceError("injected: 429", transient=True, retry_after=1.0, status=429)
        made = self._real.create(display_name, scopes, valid_to)
        if action == "crash-after":
            raise Crash("source.create")
        if action == "timeout-after":  # created, but the answer was lost
            raise TokenSourceError("injected: read timeout", transient=True)
        return made

    def find_by_display_name(self, display_name: str) -> list[SourceToken]:
        return self._real.find_by_display_name(display_name)

    def revoke(self, authorization_id: str, reason: str | None = None) -> bool:
        action = self._f.hit("source.revoke")
        if action == "fail":
            raise TokenSourceError("injected: revoke refused", status=403)
        if action == "transient":
            raise TokenSourceError("injected: 503", transient=True, status=503)
        if action == "crash-before":
            raise Crash("source.revoke")
        if action == "lie":  # says "already revoked" without revoking
            return False
        return self._real.revoke(authorization_id, reason)


@dataclass
class World:
    container: Container
    clock: FakeClock
    faults: Faults
    service: RotationService
    sleeps: list[float]
    org_id: str
    user_id: str

    def add(
        self, name: str = "ci-deploy", *, overlap: int = 0, days: int = 3, **extra: Any
    ) -> ManagedCredential:
        issued = self.container.pats.create(
            OPERATOR,
            org="Acme",
            user="ci-bot@acme.test",
            display_name=f"{name} token",
            scope="vso.code vso.build",
            valid_to=self.clock.now() + timedelta(days=days),
        )
        return self.container.managed.add(
            OPERATOR,
            "Acme",
            NewCredential(
                name=name,
                authorization_id=issued.record.authorization_id,
                store="builtin",
                overlap_minutes=overlap,
                contacts=["ops@acme.test"],
                **extra,
            ),
        )

    def cred(self, name: str = "ci-deploy") -> ManagedCredential:
        with self.container.uow() as uow:
            found = uow.managed.by_name(self.org_id, name)
        assert found is not None
        return found

    def stored_secret(self, name: str = "ci-deploy") -> StoredSecret | None:
        return self.container.stores(StoreKind.BUILTIN).read(self.cred(name).secret_name)

    def live_pats(self) -> list[str]:
        with self.container.uow() as uow:
            records = uow.tokens.list_for_user(self.user_id, TokenKind.PAT)
        now = datetime.now(UTC)
        return sorted(r.authorization_id for r in records if r.revoked_at is None and r.valid_to > now)

    def works(self, secret: str) -> bool:
        self.container.validator.sync()
        try:
            self.container.validator.validate(secret)
        except Unauthenticated:
            return False
        return True

    def audit_types(self, cred: ManagedCredential) -> list[str]:
        with self.container.uow() as uow:
            entries = uow.audit.query(AuditQuery(target_id=cred.id))
        return [e.event_type for e in entries]

    def alerts(self, template: str) -> list[tuple[str, str]]:
        with self.container.uow() as uow:
            messages = uow.outbox.find(org_id=self.org_id, limit=1000)
        return [
            (m.destination, str(m.payload["rotation"]["step"])) for m in messages if m.template == template
        ]

    def check_invariant(self, name: str = "ci-deploy", *, overlap_open: bool = False) -> None:
        """Exactly one working stored secret (the credential's token in service), and no other
        live token of the credential unless an overlap window is open."""
        cred = self.cred(name)
        stored = self.stored_secret(name)
        live = self.live_pats()
        if stored is not None:
            assert self.works(stored.value), "the store serves a secret that does not work"
            with self.container.uow() as uow:
                record = uow.tokens.by_hash(self.container.hasher.hash(stored.value))
            assert record is not None and record.authorization_id == cred.authorization_id
        assert cred.authorization_id in live
        others = [a for a in live if a != cred.authorization_id]
        if overlap_open:
            assert len(others) <= 1
        else:
            assert others == [], f"orphan live tokens: {others}"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = FakeClock(datetime.now(UTC) - timedelta(hours=1))
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'data' / 'tw.db'}",
        scheduler_enabled=False,
        rotation_batch_pause_seconds=0.0,
    )
    container = build(settings, create_pepper=True, clock=clock)
    container.database.upgrade()
    init = container.directory.initialize("Acme", "admin@acme.test")
    added = container.directory.add_user(OPERATOR, "Acme", "ci-bot@acme.test")
    faults = Faults()
    sleeps: list[float] = []

    def sources(cred: ManagedCredential) -> TokenSource:
        real = LocalPatSource(
            container.pats, container.uow, clock, org_id=cred.org_id, user_id=cred.user_id or ""
        )
        return FaultySource(real, faults)

    def stores(kind: StoreKind) -> SecretStore:
        return FaultyStore(container.stores(kind), faults)

    service = wire_rotation(
        settings,
        container.uow,
        clock,
        container.pats,
        container.hasher,
        stores,
        sources=sources,
        sleep=sleeps.append,
    )
    yield World(container, clock, faults, service, sleeps, init.org.id, added.user.id)
    container.database.dispose()


def test_a_due_credential_is_rotated_into_the_store_and_the_predecessor_revoked(world: World) -> None:
    cred = world.add()
    report = world.service.run()
    assert report.counts()["rotated"] == 1, report.as_dict()
    after = world.cred()
    assert after.version == 1 and after.authorization_id != cred.authorization_id
    assert after.valid_to is not None and after.valid_to - world.clock.now() == timedelta(days=30)
    stored = world.stored_secret()
    assert stored is not None and stored.content_type == "application/x-pat-token"
    assert stored.tags["managed-by"] == "tokenwarden" and stored.tags["source"] == "local"
    assert stored.expires_at == after.valid_to
    world.check_invariant()
    assert cred.authorization_id not in world.live_pats()
    with world.container.uow() as uow:
        successor = uow.tokens.get(after.authorization_id)
        predecessor = uow.tokens.get(cred.authorization_id)
    assert successor is not None and successor.display_name == "ci-deploy token-v1"
    assert successor.scopes == cred.scopes  # same scopes, never more
    assert predecessor is not None and predecessor.revoked_at is not None
    assert "Rotation.RotateEvent" in world.audit_types(cred)
    assert world.alerts("rotation-completed") == [("ops@acme.test", "done")]
    # the next run finds nothing due
    assert world.service.run().counts()["skipped"] == 1


def test_not_due_is_skipped_and_dry_run_changes_nothing(world: World) -> None:
    world.add("far", days=60)
    world.add("near", days=2)
    dry = world.service.run(dry_run=True)
    assert {o.credential: o.result for o in dry.outcomes} == {
        "far": RotationResult.SKIPPED,
        "near": RotationResult.WOULD_ROTATE,
    }
    assert world.cred("near").version == 0 and world.stored_secret("near") is None
    assert world.faults.calls == []


def test_store_write_failure_revokes_the_successor_keeps_the_predecessor_and_alerts(world: World) -> None:
    cred = world.add()
    world.faults.plan["store.write"] = ["fail"]
    report = world.service.run()
    assert report.counts()["failed"] == 1
    assert "refused the write" in report.errors[0]
    after = world.cred()
    assert after.authorization_id == cred.authorization_id  # predecessor kept
    assert after.status is CredentialStatus.FAILING and after.failures == 1
    assert world.live_pats() == [cred.authorization_id]  # the successor was revoked at once
    world.check_invariant()
    assert ("ops@acme.test", "rolled_back") in world.alerts("rotation-failed")
    assert "Rotation.RotateFailedEvent" in world.audit_types(cred)
    # the schedule waits out the back-off; a manual run retries and succeeds
    assert world.service.run(trigger="schedule").counts()["skipped"] == 1
    assert world.service.run().counts()["rotated"] == 1
    world.check_invariant()
    assert world.cred().status is CredentialStatus.ACTIVE and world.cred().failures == 0


def test_read_back_mismatch_discards_the_write_and_rolls_back(world: World) -> None:
    world.add()
    assert world.service.run().counts()["rotated"] == 1  # version 1 stored
    first = world.stored_secret()
    assert first is not None
    world.clock.advance(days=25)  # due again
    world.faults.plan["store.write"] = ["corrupt"]
    report = world.service.run()
    assert report.counts()["failed"] == 1 and "does not match" in report.errors[0]
    again = world.stored_secret()
    assert again is not None and again.version == first.version  # the previous version is served again
    world.check_invariant()


def test_transient_store_failures_are_retried_with_retry_after(world: World) -> None:
    world.add()
    world.faults.plan["store.write"] = ["transient", "transient"]
    assert world.service.run().counts()["rotated"] == 1
    assert world.sleeps[:2] == [0.5, 0.5]  # the store's retry-after, not a guess
    world.check_invariant()


def test_source_refusal_fails_without_touching_anything(world: World) -> None:
    cred = world.add()
    world.faults.plan["source.create"] = ["refuse"]
    report = world.service.run()
    assert report.counts()["failed"] == 1
    assert world.live_pats() == [cred.authorization_id]
    assert world.stored_secret() is None
    assert ("ops@acme.test", "failed") in world.alerts("rotation-failed")


def test_revoke_failure_keeps_the_rotation_open_and_the_next_run_finishes(world: World) -> None:
    cred = world.add()
    world.faults.plan["source.revoke"] = ["fail"]
    report = world.service.run()
    assert report.counts()["failed"] == 1 and "still live" in report.errors[0]
    assert cred.authorization_id in world.live_pats()
    world.check_invariant(overlap_open=True)  # the successor is served; the predecessor lingers
    assert ("ops@acme.test", "promoted") in world.alerts("rotation-failed")
    assert world.service.run().counts()["rotated"] == 1
    world.check_invariant()
    assert cred.authorization_id not in world.live_pats()


def test_overlap_window_keeps_the_predecessor_until_it_ends(world: World) -> None:
    cred = world.add(overlap=30)
    assert world.service.run().counts()["pending"] == 1
    assert cred.authorization_id in world.live_pats()
    world.check_invariant(overlap_open=True)
    world.clock.advance(minutes=10)
    assert world.service.run().counts()["pending"] == 1
    world.clock.advance(minutes=21)
    assert world.service.run().counts()["rotated"] == 1
    assert cred.authorization_id not in world.live_pats()
    world.check_invariant()


@pytest.mark.parametrize(
    ("point", "action", "recovered_by"),
    [
        ("source.create", "crash-after", "orphan revoked"),  # created, id never journaled
        ("source.create", "timeout-after", "orphan revoked"),  # created, the answer lost
        ("store.write", "crash-before", "secret lost"),  # created and journaled, not stored
        ("store.write", "crash-after", "secret lost"),  # stored, not journaled as stored
        ("store.promote", "crash-before", "verified"),  # stored and journaled, not promoted
        ("source.revoke", "crash-before", "finished"),  # promoted, predecessor still live
    ],
)
def test_a_crash_at_any_step_is_recovered_by_the_next_run(
    world: World, point: str, action: str, recovered_by: str
) -> None:
    cred = world.add()
    world.faults.plan[point] = [action]
    with contextlib.suppress(Crash):
        world.service.run()
    # a killed process never released its lease: the next run waits until it expires
    world.clock.advance(minutes=16)
    with world.container.uow() as uow:
        assert uow.rotations.open_for(cred.id) is not None  # the journal knows it is unfinished
    report = world.service.run()
    assert report.counts()["rotated"] == 1, report.as_dict()
    world.check_invariant()
    after = world.cred()
    assert cred.authorization_id not in world.live_pats()
    with world.container.uow() as uow:
        history = uow.rotations.history(credential_id=cred.id)
    if recovered_by in ("orphan revoked", "secret lost"):
        # the interrupted rotation was rolled back (its successor revoked), a new one succeeded
        assert [r.step for r in history] == [Step.DONE, Step.ROLLED_BACK]
        assert history[1].successor_id is None or history[1].successor_id not in world.live_pats()
        assert after.version == 1
    else:
        assert [r.step for r in history] == [Step.DONE]
    assert len(world.live_pats()) == 1


def test_emergency_rotation_revokes_at_once_despite_the_overlap(world: World) -> None:
    cred = world.add(overlap=60, days=60)  # not due
    outcome = world.service.rotate_now(OPERATOR, world.cred(), compromised=True)
    assert outcome.result == RotationResult.ROTATED, outcome
    assert cred.authorization_id not in world.live_pats()
    world.check_invariant()
    with world.container.uow() as uow:
        predecessor = uow.tokens.get(cred.authorization_id)
        last = uow.rotations.history(credential_id=cred.id)[0]
    assert predecessor is not None and predecessor.revoked_at is not None
    assert last.reason.value == "compromised" and last.trigger == "emergency"


def test_emergency_rotation_during_an_open_overlap_kills_both_old_tokens(world: World) -> None:
    first = world.add(overlap=60)
    assert world.service.run().counts()["pending"] == 1
    middle = world.cred().authorization_id
    outcome = world.service.rotate_now(OPERATOR, world.cred(), compromised=True)
    assert outcome.result == RotationResult.ROTATED
    live = world.live_pats()
    assert first.authorization_id not in live and middle not in live
    assert live == [world.cred().authorization_id]
    world.check_invariant()


def test_a_leased_credential_is_not_rotated_twice(world: World) -> None:
    cred = world.add()
    now = world.clock.now()
    with world.container.uow() as uow:
        assert uow.managed.try_lease(cred.id, "other-node", now, now + timedelta(minutes=5))
        uow.commit()
    assert world.service.run().counts()["busy"] == 1
    assert world.faults.calls == []


def test_batches_are_paced(world: World) -> None:
    for i in range(12):
        world.add(f"cred-{i:02}")
    paced = RotationService(
        world.container.uow,
        world.clock,
        lambda c: LocalPatSource(
            world.container.pats, world.container.uow, world.clock, org_id=c.org_id, user_id=c.user_id or ""
        ),
        world.container.stores,
        world.container.hasher.hash,
        batch_size=5,
        batch_pause=2.0,
        sleep=world.sleeps.append,
    )
    assert paced.run().counts()["rotated"] == 12
    assert world.sleeps == [2.0, 2.0]  # after the 5th and the 10th


def test_expiry_warnings_say_a_managed_token_is_rotated(world: World) -> None:
    world.add("managed-one", days=3)
    world.container.pats.create(
        OPERATOR,
        org="Acme",
        user="ci-bot@acme.test",
        display_name="by hand",
        scope="vso.code",
        valid_to=world.clock.now() + timedelta(days=3),
    )
    run = world.container.jobs.run("expiry-notifications", trigger="manual")
    assert run is not None and run.status == "completed", run
    with world.container.uow() as uow:
        messages = uow.outbox.find(org_id=world.org_id, limit=100)
    flags = {
        t["displayName"]: t["managedByRotation"]
        for m in messages
        if m.template == "expiry-warning"
        for t in m.payload["tokens"]
    }
    assert flags == {"managed-one token": True, "by hand": False}, flags


def test_a_source_that_says_revoked_while_the_token_lives_is_not_believed(world: World) -> None:
    cred = world.add()
    world.faults.plan["source.revoke"] = ["lie"]
    report = world.service.run()
    assert report.counts()["failed"] == 1 and "still live" in report.errors[0], report.as_dict()
    assert cred.authorization_id in world.live_pats()
    assert ("ops@acme.test", "promoted") in world.alerts("rotation-failed")
    assert world.service.run().counts()["rotated"] == 1
    assert cred.authorization_id not in world.live_pats()
    world.check_invariant()


def test_an_emergency_takes_over_an_unfinished_rotation_whatever_its_step(world: World) -> None:
    cred = world.add(overlap=600)
    world.faults.plan["store.promote"] = ["transient"] * 5  # stuck at stored
    assert world.service.run().counts()["failed"] == 1
    with world.container.uow() as uow:
        open_one = uow.rotations.open_for(cred.id)
    assert open_one is not None and open_one.step is Step.STORED
    outcome = world.service.rotate_now(OPERATOR, world.cred(), compromised=True)
    assert outcome.result == RotationResult.ROTATED, outcome
    assert cred.authorization_id not in world.live_pats()  # no 600-minute overlap for a leak
    with world.container.uow() as uow:
        taken_over = uow.rotations.get(open_one.id)
    assert taken_over is not None and taken_over.reason.value == "compromised"  # persisted
    world.check_invariant()


def test_a_narrowed_or_shortened_token_gets_a_successor_no_wider(world: World) -> None:
    cred = world.add(days=60)
    with world.container.uow() as uow:  # the owner narrowed it and shortened it
        record = uow.tokens.get(cred.authorization_id)
        assert record is not None
        uow.tokens.update(
            replace(record, scopes=("vso.code",), valid_to=world.clock.now() + timedelta(days=2))
        )
        uow.commit()
    assert world.service.run().counts()["rotated"] == 1  # due now: 2 days left
    current = world.cred().authorization_id
    with world.container.uow() as uow:
        successor = uow.tokens.get(current)
    assert successor is not None and successor.scopes == ("vso.code",)
    assert world.cred().scopes == ("vso.code",)


def test_a_token_revoked_outside_rotation_is_not_silently_replaced(world: World) -> None:
    cred = world.add()
    world.container.pats.revoke(OPERATOR, cred.authorization_id, "compromised")
    report = world.service.run()
    assert report.counts()["failed"] == 1 and "outside rotation" in report.errors[0]
    assert world.live_pats() == [] and world.stored_secret() is None  # nothing minted
    assert world.cred().status is CredentialStatus.FAILING
    assert ("ops@acme.test", "failed") in world.alerts("rotation-failed")
    # an explicit rotate now replaces it
    assert (
        world.service.rotate_now(OPERATOR, world.cred(), compromised=False).result == RotationResult.ROTATED
    )
    world.check_invariant()


def test_a_node_without_the_store_journals_nothing_and_alerts(world: World) -> None:
    cred = world.add()

    def no_store(kind: StoreKind) -> SecretStore:
        raise InvalidInput("the vault store is not configured", code="storeNotConfigured")

    service = RotationService(
        world.container.uow,
        world.clock,
        lambda c: LocalPatSource(
            world.container.pats, world.container.uow, world.clock, org_id=c.org_id, user_id=c.user_id or ""
        ),
        no_store,
        world.container.hasher.hash,
    )
    report = service.run()
    assert report.counts()["failed"] == 1 and "not configured" in report.errors[0]
    with world.container.uow() as uow:
        assert uow.rotations.open_for(cred.id) is None
    assert world.cred().status is CredentialStatus.FAILING
    assert world.alerts("rotation-failed")
    assert world.live_pats() == [cred.authorization_id]
