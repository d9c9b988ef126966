"""Signed checkpoints of the audit chain, verification, and exports that verify offline.

The chain itself is built by the audit repositories as entries are written (domain/audit_chain.py);
this service signs its heads (Ed25519, a key of the deployment's key store kept apart from the
keys JWKS publishes), checks a chain end to end, and writes exports carrying the public keys and
checkpoints an auditor needs to check them without the database.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.audit_chain import (
    INSTALLATION,
    ChainCheckpoint,
    ChainHead,
    ChainReport,
    Finding,
    checkpoint_payload,
    verify_chain,
)
from tokenwarden.domain.clock import Clock, iso_z
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.common import Actor, get_org, reading, require_admin
from tokenwarden.services.signing import ED25519, SigningKeys

log = logging.getLogger(__name__)

CHECKPOINT_TYP: Final = "tw-audit-checkpoint+jws"
KEEP_AUDIT_KEYS: Final = timedelta(days=36500)  # a retired checkpoint key still verifies what it signed
EXPORT_FORMATS: Final = ("ndjson", "csv")
EXPORT_VERSION: Final = 1
BATCH: Final = 5000


@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """Sign a chain's head when ``entries`` new entries have accumulated, or when any have and
    the last checkpoint is older than ``max_age``."""

    entries: int = 1000
    max_age: timedelta = timedelta(minutes=5)


class AuditChainService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        keys: SigningKeys,
        clock: Clock,
        policy: CheckpointPolicy | None = None,
    ) -> None:
        self._uow = uow
        self._keys = keys
        self._clock = clock
        self.policy = policy or CheckpointPolicy()

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, *, force: bool = False, min_entries: int | None = None) -> list[ChainCheckpoint]:
        """Sign the head of every chain the policy says is due (every advanced chain with
        ``force``); the checkpoints made."""
        now = self._clock.now()
        with reading(self._uow) as uow:
            due = [
                head
                for head in uow.audit.heads()
                if head.seq > 0
                and self._due(head, uow.audit.last_checkpoint(head.chain), now, force, min_entries)
            ]
        if not due:
            return []
        made = [self._sign(head, now) for head in due]
        with self._uow() as uow:
            for cp in made:
                uow.audit.add_checkpoint(cp)
            uow.commit()
        log.info(
            "audit checkpoints signed: %s", ", ".join(f"{c.chain or 'installation'}@{c.seq}" for c in made)
        )
        return made

    def run_job(self) -> dict[str, Any]:
        """The scheduled job: checkpoint what the policy says is due."""
        made = self.checkpoint()
        return {"checkpoints": len(made), "chains": sorted(c.chain or "installation" for c in made)}

    def _due(
        self,
        head: ChainHead,
        last: ChainCheckpoint | None,
        now: datetime,
        force: bool,
        min_entries: int | None,
    ) -> bool:
        signed = last.seq if last is not None else 0
        pending = head.seq - signed
        if pending <= 0:
            return False
        if force:
            return True
        if pending >= (min_entries or self.policy.entries):
            return True
        return min_entries is None and (last is None or now - last.at >= self.policy.max_age)

    def _sign(self, head: ChainHead, now: datetime) -> ChainCheckpoint:
        payload = checkpoint_payload(head.chain, head.seq, head.hash, now)
        signature = self._keys.sign(payload, typ=CHECKPOINT_TYP, alg=ED25519)
        kid, _ = self._keys.active(ED25519)
        return ChainCheckpoint(
            chain=head.chain, seq=head.seq, hash=head.hash, at=now, kid=kid, signature=signature
        )

    def rotate_key(self) -> tuple[str, list[str]]:
        """A new checkpoint key; the old ones stop signing and keep verifying."""
        return self._keys.rotate(ED25519, KEEP_AUDIT_KEYS)

    def public_keys(self) -> list[dict[str, Any]]:
        """The checkpoint keys' public halves (JWK), oldest first: what an auditor pins."""
        self._keys.active(ED25519)
        return [dict(k.public_jwk) for k in self._keys.published() if k.alg == ED25519]

    # ------------------------------------------------------------------ verification
    def verify(self, actor: Actor, org: str | None = None) -> list[ChainReport]:
        """Check ``org``'s chain (every chain, for the operator, when ``org`` is None)."""
        keys = _KeyRing(self.public_keys())
        with reading(self._uow) as uow:
            if org is not None:
                the_org = get_org(uow, org)
                require_admin(uow, actor, the_org.id)
                chains = [the_org.id]
            elif actor.is_operator:
                chains = [h.chain for h in uow.audit.heads()]
            else:
                raise InvalidInput("say which organization's audit log to verify", code="orgRequired")
            heads = {h.chain: h for h in uow.audit.heads()}
            reports = []
            for chain in chains:
                entries = _stream(
                    lambda after, c=chain: uow.audit.chain_entries(c, after_id=after, limit=BATCH)
                )
                report = verify_chain(
                    chain,
                    entries,
                    uow.audit.checkpoints(chain),
                    keys.check,
                    expected_head=heads.get(chain),
                )
                reports.append(report)
        return reports

    # ------------------------------------------------------------------ export
    def export(
        self,
        actor: Actor,
        org: str | None,
        *,
        since: datetime | None,
        until: datetime | None,
        fmt: str = "ndjson",
    ) -> Iterator[str]:
        """The entries of ``org`` ('' / None for the installation, operator only) in [since,
        until), with the checkpoints inside the range and the public keys: text chunks."""
        if fmt not in EXPORT_FORMATS:
            raise InvalidInput(
                f"unknown format {fmt!r:.20}; formats: {', '.join(EXPORT_FORMATS)}", code="invalidFormat"
            )
        if since and until and since >= until:
            raise InvalidInput("'from' must be before 'to'")
        keys = self.public_keys()
        with reading(self._uow) as uow:
            if org:
                the_org = get_org(uow, org)
                require_admin(uow, actor, the_org.id)
                chain = the_org.id
            elif actor.is_operator:
                chain = INSTALLATION
            else:
                raise InvalidInput("say which organization's audit log to export", code="orgRequired")
            entries = list(
                _stream(
                    lambda after: uow.audit.chain_entries(
                        chain, after_id=after, limit=BATCH, since=since, until=until
                    )
                )
            )
            seqs = [e.chain_seq for e in entries if e.chain_seq is not None]
            checkpoints = uow.audit.checkpoints(chain, from_seq=min(seqs), to_seq=max(seqs)) if seqs else []
        header = {
            "recordType": "header",
            "version": EXPORT_VERSION,
            "chain": chain or None,
            "from": iso_z(since),
            "to": iso_z(until),
            "exportedAt": iso_z(self._clock.now()),
            "entries": len(entries),
            "keys": keys,
        }
        records = [header, *(entry_record(e) for e in entries), *(checkpoint_record(c) for c in checkpoints)]
        if fmt == "ndjson":
            for record in records:
                yield json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
        else:
            yield from _csv_lines(records)


def verify_export(
    lines: Iterable[str], *, trusted_kids: set[str] | None = None
) -> tuple[ChainReport, list[str]]:
    """Verify an export offline: the chain inside it and its checkpoints, against the keys it
    carries (only those in ``trusted_kids`` when given — pin them: whoever can rewrite a file
    can also put a key of their own in it). Returns the report and the kids that vouched."""
    records = _parse_export(lines)
    headers = [r for r in records if r.get("recordType") == "header"]
    if len(headers) != 1:
        raise InvalidInput(
            "not a tokenwarden audit export: it needs exactly one header record", code="invalidExport"
        )
    header = headers[0]
    keys = [k for k in header.get("keys") or [] if isinstance(k, dict)]
    if trusted_kids is not None:
        keys = [k for k in keys if k.get("kid") in trusted_kids]
    ring = _KeyRing(keys)
    chain = header.get("chain") or INSTALLATION
    try:
        entries = [record_entry(r) for r in records if r.get("recordType") == "entry"]
        checkpoints = [record_checkpoint(r) for r in records if r.get("recordType") == "checkpoint"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"a record of the export is malformed: {exc}", code="invalidExport") from exc
    report = verify_chain(
        chain, entries, [c for c in checkpoints if c.chain == chain], ring.check, partial=True
    )
    if header.get("entries") != len(entries):
        report.findings.append(
            Finding(
                "deleted", f"the header says {header.get('entries')} entries, the file holds {len(entries)}"
            )
        )
    return report, sorted(ring.used)


# ---------------------------------------------------------------------- records
def entry_record(e: AuditEntry) -> dict[str, Any]:
    return {
        "recordType": "entry",
        "id": e.id,
        "seq": e.chain_seq,
        "at": e.at.isoformat(timespec="microseconds"),
        "eventType": e.event_type,
        "orgId": e.org_id,
        "actorId": e.actor_id,
        "actorUpn": e.actor_upn,
        "targetType": e.target_type,
        "targetId": e.target_id,
        "ip": e.ip,
        "userAgent": e.user_agent,
        "details": e.details,
        "prevHash": e.prev_hash,
        "hash": e.hash,
    }


def record_entry(r: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        id=r["id"],
        at=datetime.fromisoformat(r["at"]),
        event_type=r["eventType"],
        org_id=r["orgId"],
        actor_id=r["actorId"],
        actor_upn=r["actorUpn"],
        target_type=r["targetType"],
        target_id=r["targetId"],
        ip=r["ip"],
        user_agent=r["userAgent"],
        details=dict(r["details"]),
        chain_seq=r["seq"],
        prev_hash=r["prevHash"],
        hash=r["hash"],
    )


def checkpoint_record(c: ChainCheckpoint) -> dict[str, Any]:
    return {
        "recordType": "checkpoint",
        "chain": c.chain or None,
        "seq": c.seq,
        "hash": c.hash,
        "at": c.at.isoformat(timespec="microseconds"),
        "kid": c.kid,
        "signature": c.signature,
    }


def record_checkpoint(r: dict[str, Any]) -> ChainCheckpoint:
    return ChainCheckpoint(
        chain=r["chain"] or INSTALLATION,
        seq=int(r["seq"]),
        hash=str(r["hash"]),
        at=datetime.fromisoformat(r["at"]),
        kid=str(r["kid"]),
        signature=str(r["signature"]),
    )


CSV_COLUMNS: Final = ("recordType", "data")


def _csv_lines(records: list[dict[str, Any]]) -> Iterator[str]:
    """CSV with one record per row: its type and the record as JSON (spreadsheets open it, the
    verifier reads it back exactly)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        writer.writerow([record["recordType"], json.dumps(record, separators=(",", ":"), ensure_ascii=False)])
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    yield out.getvalue()


def _parse_export(lines: Iterable[str]) -> list[dict[str, Any]]:
    text = "".join(lines)
    records: list[dict[str, Any]] = []
    if text.startswith("recordType,"):
        rows = csv.reader(io.StringIO(text))
        next(rows, None)
        values = [row[1] for row in rows if len(row) == 2]
    else:
        values = [line for line in text.splitlines() if line.strip()]
    for n, value in enumerate(values, start=1):
        try:
            record = json.loads(value)
        except ValueError as exc:
            raise InvalidInput(f"record {n} of the export is not JSON", code="invalidExport") from exc
        if not isinstance(record, dict):
            raise InvalidInput(f"record {n} of the export is not an object", code="invalidExport")
        records.append(record)
    return records


def _stream(page: Any) -> Iterator[AuditEntry]:
    after = 0
    while True:
        batch = page(after)
        if not batch:
            return
        yield from batch
        after = batch[-1].id or after


class _KeyRing:
    """Ed25519 public keys by kid; checks a checkpoint's signature and that what it signed is
    exactly the checkpoint's fields."""

    def __init__(self, jwks: list[dict[str, Any]]) -> None:
        self._keys: dict[str, OKPKey] = {}
        self.used: set[str] = set()
        for jwk in jwks:
            try:
                self._keys[str(jwk["kid"])] = OKPKey.import_key(
                    {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "kid")}
                )
            except (JoseError, KeyError, ValueError, TypeError):
                log.warning("skipping an unusable audit checkpoint key")

    def check(self, cp: ChainCheckpoint) -> bool:
        key = self._keys.get(cp.kid)
        if key is None:
            return False
        try:
            obj = jws.deserialize_compact(cp.signature, key, algorithms=[ED25519])
            claims = json.loads(obj.payload)
        except (JoseError, ValueError, TypeError):
            return False
        if obj.headers().get("kid") != cp.kid:
            return False
        expected = checkpoint_payload(cp.chain, cp.seq, cp.hash, cp.at)
        if claims != expected:
            return False
        self.used.add(cp.kid)
        return True
