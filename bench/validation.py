"""In-process validation throughput (one core) and memory per cached token."""

from __future__ import annotations

import gc
import hashlib
import os
import random
import statistics
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tokenwarden.bootstrap import Container, memory_container
from tokenwarden.domain import token_format
from tokenwarden.domain.events import EventType, InvalidationEvent
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.settings import Settings

SCOPE_SETS = [
    ("vso.code",),
    ("vso.code_write", "vso.pats"),
    ("vso.code_manage", "vso.build_execute"),
    ("vso.code", "vso.packaging", "vso.work"),
]


def setup(n_tokens: int) -> tuple[Container, list[str]]:
    """A container whose validator cache holds ``n_tokens`` PATs of one user; returns the secrets."""
    c = memory_container(Settings(staleness_seconds=1.0))
    init = c.directory.initialize("bench", "bench@example.com")
    user_id, org_id = init.admin.id, init.org.id
    now = datetime.now(UTC)
    secrets: list[str] = []
    for i in range(n_tokens):
        secret = token_format.generate(TokenKind.PAT)
        record = TokenRecord(
            authorization_id=str(uuid.uuid4()),
            kind=TokenKind.PAT,
            user_id=user_id,
            org_id=org_id,
            display_name="bench",
            scopes=SCOPE_SETS[i % len(SCOPE_SETS)],
            target_orgs=(org_id,),
            secret_hash=c.hasher.hash(secret),
            pepper_id=c.hasher.current_id,
            valid_from=now,
            valid_to=now + timedelta(days=30),
            created_at=now,
        )
        c.validator.preload(record.secret_hash, record)
        secrets.append(secret)
    c.start_background()  # the real sync thread runs, as in a server
    return c, secrets


def add_rules(c: Container, count: int) -> None:
    """``count`` revocation rules in the tokens' organization, all cut-offs in the past (so every
    token is still checked against them and survives); one in ten also names kinds."""
    if count == 0:
        return
    rng = random.Random(7)
    org = c.directory.find_org("bench")
    scopes = sorted(c.catalog.scopes)
    past = datetime.now(UTC) - timedelta(days=1)
    with c.uow() as uow:
        for i in range(count):
            uow.rules.add(
                RevocationRule(
                    id=str(uuid.uuid4()),
                    org_id=org.id,
                    scopes=(scopes[rng.randrange(len(scopes))],),
                    created_before=past - timedelta(seconds=rng.randrange(86_400)),
                    created_at=past,
                    kinds=(TokenKind.SESSION,) if i % 10 == 0 else None,
                )
            )
        uow.events.append(InvalidationEvent(EventType.RULE_ADDED, {}))
        uow.commit()
    c.validator.sync()


def throughput(c: Container, secrets: list[str], calls: int = 500_000, repeats: int = 5) -> dict[str, Any]:
    """Median validations/s over ``repeats`` runs of ``calls`` validations of random live tokens."""
    rng = random.Random(42)
    sample = [secrets[rng.randrange(len(secrets))] for _ in range(calls)]
    validate = c.validator.validate
    org_id = c.directory.find_org("bench").id
    rates = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        for s in sample:
            validate(s, "vso.code", org_id, "10.0.0.1")
        rates.append(calls / (time.perf_counter() - t0))
    return {"median_per_s": round(statistics.median(rates)), "runs_per_s": [round(r) for r in rates]}


def ceiling(secrets: list[str], calls: int = 500_000, repeats: int = 5) -> dict[str, Any]:
    """The interpreter's limit for the same work, in the same run: a bare loop of the keyed
    BLAKE2b of each secret (the validator's own pre-keyed-copy method, same pepper size) and one
    dictionary lookup among ``len(secrets)`` keys. Nothing a validator does can beat it."""
    keyed = hashlib.blake2b(key=os.urandom(32), digest_size=16)
    copy = keyed.copy

    def hash_(secret: str) -> bytes:
        h = copy()
        h.update(secret.encode())
        return h.digest()

    table = {hash_(s): i for i, s in enumerate(secrets)}
    rng = random.Random(42)
    sample = [secrets[rng.randrange(len(secrets))] for _ in range(calls)]
    get = table.get
    rates = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        for s in sample:
            get(hash_(s))
        rates.append(calls / (time.perf_counter() - t0))
    del table
    return {"median_per_s": round(statistics.median(rates)), "runs_per_s": [round(r) for r in rates]}


def memory_per_token(n_tokens: int) -> dict[str, Any]:
    """Bytes retained per cache entry (dict slot + hash key + entry), measured by tracemalloc.

    Everything is built inside the traced region and the records are dropped, so what remains
    is exactly what the cache holds.
    """
    c = memory_container(Settings())
    init = c.directory.initialize("bench", "bench@example.com")
    now = datetime.now(UTC)
    later = now + timedelta(days=30)
    secrets = [token_format.generate(TokenKind.PAT) for _ in range(n_tokens)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, secret in enumerate(secrets):
        h = c.hasher.hash(secret)
        record = TokenRecord(
            authorization_id=str(uuid.uuid4()),
            kind=TokenKind.PAT,
            user_id=init.admin.id,
            org_id=init.org.id,
            display_name="bench",
            scopes=SCOPE_SETS[i % len(SCOPE_SETS)],
            target_orgs=(init.org.id,),
            secret_hash=h,
            pepper_id="p1",
            valid_from=now,
            valid_to=later,
            created_at=now,
        )
        c.validator.preload(h, record)
    del record, h
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"entries": c.validator.cache_size(), "bytes_per_token": round((after - before) / n_tokens, 1)}


def run(sizes: list[int], calls: int, rule_counts: tuple[int, ...] = (0, 100, 10_000)) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for n in sizes:
        c, secrets = setup(n)
        results[f"validate_{n}"] = throughput(c, secrets, calls=calls)
        results[f"ceiling_{n}"] = ceiling(secrets, calls=calls)
        results[f"ratio_{n}"] = round(
            results[f"validate_{n}"]["median_per_s"] / results[f"ceiling_{n}"]["median_per_s"], 3
        )
        if n == max(sizes):
            added = 0
            for count in rule_counts:
                add_rules(c, count - added)
                added = count
                results[f"validate_{n}_rules_{count}"] = throughput(c, secrets, calls=calls)
        c.close()
        del c, secrets
        gc.collect()
    results["memory"] = memory_per_token(max(sizes))
    return results
