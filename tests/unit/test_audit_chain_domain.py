"""The chain's domain rules without storage: sealing, and what verification names."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.audit_chain import (
    GENESIS,
    MAX_FINDINGS,
    ChainCheckpoint,
    ChainHead,
    canonical,
    entry_hash,
    seal,
    verify_chain,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def chain(n: int, org: str = "o1") -> list[AuditEntry]:
    out: list[AuditEntry] = []
    prev = GENESIS
    for i in range(n):
        e = AuditEntry(
            at=T0 + timedelta(seconds=i),
            event_type="Token.PatRevokeEvent",
            org_id=org,
            actor_id="u1",
            actor_upn="a@acme.test",
            target_type="pat",
            target_id=f"t{i}",
            details={"n": i, 3: "int key"},  # type: ignore[dict-item]
            id=i + 1,
        )
        e = seal(e, i + 1, prev)
        prev = e.hash or ""
        out.append(e)
    return out


def always(cp: ChainCheckpoint) -> bool:
    return True


def test_sealing_normalizes_details_as_json_reads_them_back() -> None:
    e = chain(1)[0]
    assert e.details == {"n": 0, "3": "int key"}
    assert e.hash == entry_hash(e, 1, GENESIS)


def test_the_canonical_form_is_stable() -> None:
    # A change here would make every stored chain fail verification: bump CANONICAL_VERSION instead.
    e = chain(1)[0]
    head = b'{"actorId":"u1","actorUpn":"a@acme.test","at":"2026-12-01T09:00:00.000000Z"'
    assert canonical(e, 1, GENESIS).startswith(head)
    assert b'"v":1' in canonical(e, 1, GENESIS)


def test_an_intact_chain_and_a_partial_range_verify() -> None:
    entries = chain(10)
    head = ChainHead("o1", 10, entries[-1].hash or "")
    assert verify_chain("o1", entries, [], always, expected_head=head).ok
    assert not verify_chain("o1", entries[3:], [], always).ok  # must start at seq 1 ...
    assert verify_chain("o1", entries[3:], [], always, partial=True).ok  # ... unless partial


def test_a_checkpoint_vouches_for_its_seq_and_a_false_one_is_named() -> None:
    entries = chain(5)
    good = ChainCheckpoint("o1", 3, entries[2].hash or "", T0, "k", "sig")
    report = verify_chain("o1", entries, [good], always)
    assert report.ok and report.signed_through == 3 and report.unsigned_tail == 2
    wrong = replace(good, hash="f" * 64)
    report = verify_chain("o1", entries, [wrong], always)
    assert [(f.kind, f.row_id) for f in report.findings] == [("checkpoint-mismatch", 3)]
    report = verify_chain("o1", entries, [good], lambda cp: False)
    assert [f.kind for f in report.findings] == ["bad-signature"]


def test_a_checkpoint_past_the_end_means_rows_were_cut_off() -> None:
    entries = chain(5)
    cp = ChainCheckpoint("o1", 5, entries[4].hash or "", T0, "k", "sig")
    report = verify_chain("o1", entries[:3], [cp], always)
    assert [(f.kind, f.seq) for f in report.findings] == [("deleted", 5)]


def test_a_badly_damaged_chain_is_reported_without_a_flood() -> None:
    entries = [replace(e, target_id="x") for e in chain(MAX_FINDINGS + 50)]
    report = verify_chain("o1", entries, [], always)
    assert len(report.findings) == MAX_FINDINGS + 1 and report.findings[-1].kind == "truncated"


def test_a_row_without_chain_fields_is_named() -> None:
    entries = chain(3)
    entries[1] = replace(entries[1], chain_seq=None, hash=None)
    report = verify_chain("o1", entries, [], always)
    assert ("inserted", 2) in [(f.kind, f.row_id) for f in report.findings]
