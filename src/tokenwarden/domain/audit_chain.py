"""The tamper-evident audit chain: canonical form, entry hashes and verification.

Every audit entry of one chain (an organization, or the installation for entries without one)
carries ``seq`` (1, 2, 3 ... in append order), the hash of the entry before it and its own hash:
SHA-256 over the canonical JSON of its fields and the previous hash. A modified row no longer
matches its hash; a deleted, inserted or reordered row breaks the sequence or the link. Someone
who rewrites the rows *and* recomputes every hash after them is caught by the signed checkpoints
(``ChainCheckpoint``): a checkpoint signs (chain, seq, hash) with a key the database does not
hold in the clear.

Pure Python: signatures are checked by the caller (services/audit_chain.py) and passed in as a
callable, so this module stays free of cryptography and storage.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from tokenwarden.domain.audit import AuditEntry

GENESIS: Final = "0" * 64  # the "previous hash" of every chain's first entry
INSTALLATION: Final = ""  # the chain of entries without an organization
CANONICAL_VERSION: Final = 1


def chain_of(org_id: str | None) -> str:
    """The chain an entry of ``org_id`` belongs to."""
    return org_id or INSTALLATION


def normalize_details(details: dict[str, Any]) -> dict[str, Any]:
    """``details`` as it will read back from a JSON column (string keys, lists, no tuples), so the
    hash computed before storing matches the one recomputed after reading."""
    normalized: dict[str, Any] = json.loads(json.dumps(details, default=str, allow_nan=False))
    return normalized


def _iso(at: datetime) -> str:
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical(entry: AuditEntry, seq: int, prev_hash: str) -> bytes:
    """The bytes an entry's hash is taken over (sorted keys, no whitespace, UTF-8)."""
    body = {
        "v": CANONICAL_VERSION,
        "chain": chain_of(entry.org_id),
        "seq": seq,
        "prev": prev_hash,
        "at": _iso(entry.at),
        "eventType": entry.event_type,
        "orgId": entry.org_id,
        "actorId": entry.actor_id,
        "actorUpn": entry.actor_upn,
        "targetType": entry.target_type,
        "targetId": entry.target_id,
        "ip": entry.ip,
        "userAgent": entry.user_agent,
        "details": entry.details,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def entry_hash(entry: AuditEntry, seq: int, prev_hash: str) -> str:
    """Hex SHA-256 of the canonical form."""
    return hashlib.sha256(canonical(entry, seq, prev_hash)).hexdigest()


def seal(entry: AuditEntry, seq: int, prev_hash: str) -> AuditEntry:
    """``entry`` with its place in the chain and its hash (details normalized first)."""
    normalized = replace(entry, details=normalize_details(entry.details))
    return replace(
        normalized, chain_seq=seq, prev_hash=prev_hash, hash=entry_hash(normalized, seq, prev_hash)
    )


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The newest entry of a chain: the next one gets ``seq + 1`` and links to ``hash``."""

    chain: str
    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class ChainCheckpoint:
    """A signed statement "entry ``seq`` of ``chain`` has hash ``hash``" (a compact JWS whose
    payload is exactly those fields plus ``at``)."""

    chain: str
    seq: int
    hash: str
    at: datetime
    kid: str
    signature: str
    id: int | None = None


def checkpoint_payload(chain: str, seq: int, hash_: str, at: datetime) -> dict[str, Any]:
    """What a checkpoint signs."""
    return {"typ": "tokenwarden-audit-checkpoint", "chain": chain, "seq": seq, "hash": hash_, "at": _iso(at)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong with a chain, naming the row (database id and chain position)."""

    kind: str  # modified | deleted | inserted | reordered | broken-link | checkpoint-mismatch | bad-signature
    message: str
    row_id: int | None = None
    seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "rowId": self.row_id, "seq": self.seq}


@dataclass(slots=True)
class ChainReport:
    """The verdict on one chain."""

    chain: str
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    signed_through: int = 0  # the highest seq a valid checkpoint vouches for
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def unsigned_tail(self) -> int:
        """Entries after the last valid checkpoint (protected by the chain only)."""
        if self.last_seq is None:
            return 0
        return max(0, self.last_seq - max(self.signed_through, (self.first_seq or 1) - 1))

    def as_dict(self) -> dict[str, Any]:
        return {
            "chain": self.chain or None,
            "ok": self.ok,
            "entries": self.entries,
            "firstSeq": self.first_seq,
            "lastSeq": self.last_seq,
            "checkpoints": self.checkpoints,
            "signedThrough": self.signed_through,
            "unsignedTail": self.unsigned_tail,
            "findings": [f.as_dict() for f in self.findings],
        }


MAX_FINDINGS: Final = 100  # past this, a chain is reported as badly damaged, not row by row

SignatureCheck = Callable[[ChainCheckpoint], bool]


def verify_chain(
    chain: str,
    entries: Iterable[AuditEntry],
    checkpoints: Iterable[ChainCheckpoint],
    signature_ok: SignatureCheck,
    *,
    partial: bool = False,
    expected_head: ChainHead | None = None,
) -> ChainReport:
    """Walk ``entries`` (in database id order) and say what, if anything, was tampered with,
    naming each row by its database id and its place (seq) in the chain.

    Without ``partial`` the chain must start at seq 1 from GENESIS; with it (an export of a time
    range) it starts wherever its first entry does. ``expected_head`` is the head recorded at the
    last append: rows cut off the end show up against it.
    """
    walk = _Walk(ChainReport(chain=chain))
    for cp in checkpoints:
        walk.report.checkpoints += 1
        if signature_ok(cp):
            walk.signed.setdefault(cp.seq, []).append(cp)
        else:
            walk.add(
                "bad-signature", f"the checkpoint at seq {cp.seq} has an invalid signature", None, cp.seq
            )
    for entry in entries:
        if partial and walk.report.entries == 0 and entry.chain_seq is not None:
            walk.prev_seq, walk.prev_hash = entry.chain_seq - 1, entry.prev_hash or ""
        walk.step(entry)
    walk.finish(expected_head)
    return walk.report


class _Walk:
    """The state of one pass over a chain in id order."""

    def __init__(self, report: ChainReport) -> None:
        self.report = report
        self.signed: dict[int, list[ChainCheckpoint]] = {}
        self.prev_seq = 0
        self.prev_hash = GENESIS
        self.prev_id: int | None = None
        self.seen_max = 0
        # seqs skipped over, with the rows around the gap: deleted unless they turn up later
        self.missing: dict[int, tuple[int | None, int | None]] = {}

    def add(self, kind: str, message: str, row_id: int | None, seq: int | None) -> None:
        findings = self.report.findings
        if len(findings) < MAX_FINDINGS:
            findings.append(Finding(kind, message, row_id, seq))
        elif len(findings) == MAX_FINDINGS:
            findings.append(
                Finding("truncated", f"more than {MAX_FINDINGS} findings: the chain is badly damaged")
            )

    def step(self, entry: AuditEntry) -> None:
        report = self.report
        report.entries += 1
        seq, name = entry.chain_seq, f"row {entry.id} (seq {entry.chain_seq})"
        if seq is None or entry.hash is None or entry.prev_hash is None:
            self.add("inserted", f"row {entry.id} has no place in the chain (no seq or hash)", entry.id, seq)
            return
        if report.first_seq is None:
            report.first_seq = seq
        intact = entry.hash == entry_hash(entry, seq, entry.prev_hash)
        if not intact:
            self.add(
                "modified", f"{name} was modified: its content no longer matches its hash", entry.id, seq
            )
        self._checkpoints(entry, seq, intact)
        expected = self.prev_seq + 1
        if seq == expected:
            if entry.prev_hash != self.prev_hash:
                before = f"row {self.prev_id}" if self.prev_id is not None else "the start of the chain"
                self.add(
                    "broken-link",
                    f"{name} does not link to {before} (seq {self.prev_seq}): one of them was rewritten",
                    entry.id,
                    seq,
                )
        elif seq > expected:
            for gap in range(expected, min(seq, expected + MAX_FINDINGS)):
                self.missing[gap] = (self.prev_id, entry.id)
        elif seq in self.missing:
            del self.missing[seq]
            self.add(
                "reordered",
                f"{name} is out of order: it comes after row {self.prev_id} (seq {self.prev_seq})",
                entry.id,
                seq,
            )
            return
        else:
            self.add("inserted", f"{name} repeats seq {seq}: a row was inserted", entry.id, seq)
            return
        self.prev_seq, self.prev_hash, self.prev_id = seq, entry.hash, entry.id
        report.last_seq = seq

    def _checkpoints(self, entry: AuditEntry, seq: int, intact: bool) -> None:
        for cp in self.signed.pop(seq, []):
            if intact and cp.hash == entry.hash:
                self.report.signed_through = max(self.report.signed_through, seq)
            else:
                self.add(
                    "checkpoint-mismatch",
                    f"row {entry.id} (seq {seq}) differs from what the checkpoint signed: "
                    "it or the rows before it were rewritten",
                    entry.id,
                    seq,
                )

    def finish(self, expected_head: ChainHead | None) -> None:
        for seq, (before, after) in sorted(self.missing.items()):
            self.add(
                "deleted", f"seq {seq} is missing: deleted between row {before} and row {after}", None, seq
            )
        last = self.report.last_seq or 0
        first = self.report.first_seq or 1
        for seq in sorted(self.signed):
            if seq > last:
                self.add(
                    "deleted",
                    f"the checkpoint at seq {seq} names a row past the end of the chain (seq {last})",
                    None,
                    seq,
                )
            elif seq >= first and seq not in self.missing:
                self.add("deleted", f"the row the checkpoint at seq {seq} signed is gone", None, seq)
        if expected_head is None:
            return
        if expected_head.seq > last:
            self.add(
                "deleted",
                f"rows {last + 1}..{expected_head.seq} at the end of the chain are gone "
                f"(the chain head says seq {expected_head.seq})",
                None,
                last + 1,
            )
        elif expected_head.seq == last and expected_head.hash != self.prev_hash:
            self.add(
                "modified",
                f"the last row (seq {last}) differs from the recorded chain head",
                self.prev_id,
                last,
            )
