"""The tamper-evident audit chain over real SQLite and PostgreSQL: rows edited, deleted, inserted
and reordered directly in the database (the append-only triggers lifted, as an attacker with
database access would) are caught and named; an audit write that fails stops the change it
describes; exports verify offline and fail when edited."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.e2e.conftest import run_cli
from tokenwarden.bootstrap import Container, build
from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.audit_chain import entry_hash
from tokenwarden.domain.errors import DomainError
from tokenwarden.services.audit_chain import verify_export
from tokenwarden.services.common import OPERATOR
from tokenwarden.settings import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Container]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'tw.db'}"
    else:
        url = request.getfixturevalue("postgres_database_factory")()
    settings = Settings(data_dir=tmp_path / "data", database_url=url, scheduler_enabled=False)
    c = build(settings, create_pepper=True)
    c.database.upgrade()
    c.directory.initialize("Acme", "admin@acme.test")
    c.directory.create_org(OPERATOR, "Globex")
    for n in range(6):
        c.directory.add_user(OPERATOR, "Acme", f"user{n}@acme.test")
    c.directory.add_user(OPERATOR, "Globex", "g@globex.test")
    yield c
    c.database.dispose()


def tamper(c: Container, *statements: str, **params: Any) -> None:
    """Run SQL with the append-only triggers lifted (what a database-level attacker does)."""
    engine = c.database.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # triggers off
        else:
            for verb in ("update", "delete"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS audit_log_no_{verb}"))
        for stmt in statements:
            conn.execute(text(stmt), params)


def rows(c: Container, org: str = "Acme") -> list[Any]:
    org_id = c.directory.find_org(org).id  # type: ignore[union-attr]
    with c.database.engine.connect() as conn:  # type: ignore[attr-defined]
        return list(
            conn.execute(text("SELECT * FROM audit_log WHERE org_id = :o ORDER BY id"), {"o": org_id})
        )


def entries(c: Container, org: str = "Acme") -> list[AuditEntry]:
    """The org's entries as the repository reads them (typed columns)."""
    org_id = c.directory.find_org(org).id  # type: ignore[union-attr]
    with c.uow() as uow:
        return uow.audit.chain_entries(org_id)


def acme(c: Container) -> Any:
    (report,) = c.audit_chain.verify(OPERATOR, "Acme")
    return report


def kinds(report: Any) -> list[tuple[str, int | None, int | None]]:
    return [(f.kind, f.row_id, f.seq) for f in report.findings]


def test_an_untouched_chain_verifies_per_organization(world: Container) -> None:
    reports = world.audit_chain.verify(OPERATOR)
    assert reports and all(r.ok for r in reports), [r.as_dict() for r in reports]
    by_chain = {r.chain: r for r in reports}
    globex = world.directory.find_org("Globex")
    assert globex is not None and by_chain[globex.id].entries >= 2
    assert acme(world).entries == len(rows(world))
    assert [r.chain_seq for r in rows(world)] == list(range(1, len(rows(world)) + 1))


def test_a_modified_row_is_named(world: Container) -> None:
    target = rows(world)[3]
    tamper(world, "UPDATE audit_log SET actor_upn = 'mallory@evil.test' WHERE id = :id", id=target.id)
    report = acme(world)
    assert not report.ok
    assert ("modified", target.id, target.chain_seq) in kinds(report)


def test_a_row_rewritten_with_a_fresh_hash_breaks_the_link_to_the_next(world: Container) -> None:
    r = entries(world)
    target, following = r[2], r[3]
    # The attacker recomputes the hash of the row they changed (but not of the rows after it).
    forged = replace(target, target_id="forged")
    new_hash = entry_hash(forged, forged.chain_seq or 0, forged.prev_hash or "")
    tamper(
        world,
        "UPDATE audit_log SET target_id = 'forged', entry_hash = :h WHERE id = :id",
        h=new_hash,
        id=target.id,
    )
    report = acme(world)
    assert ("broken-link", following.id, following.chain_seq) in kinds(report), report.as_dict()
    assert all(f.kind != "modified" for f in report.findings)  # its own hash matches now


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(world: Container) -> None:
    assert world.audit_chain.checkpoint(force=True)
    # Rewrite a row and recompute every hash after it, and the head: only the checkpoint knows.
    r = entries(world)
    prev = r[0].hash
    statements, params = [], {}
    for n, e in enumerate(r[1:], start=1):
        if n == 1:
            e = replace(e, actor_upn="mallory@evil.test")
        e = replace(e, prev_hash=prev)
        h = entry_hash(e, e.chain_seq or 0, prev)
        statements.append(
            f"UPDATE audit_log SET actor_upn = :upn{n}, prev_hash = :p{n}, entry_hash = :h{n} "
            f"WHERE id = :id{n}"
        )
        params.update({f"upn{n}": e.actor_upn, f"p{n}": prev, f"h{n}": h, f"id{n}": e.id})
        prev = h
    statements.append("UPDATE audit_chain_heads SET entry_hash = :head WHERE chain = :chain")
    params.update(head=prev, chain=r[0].org_id)
    tamper(world, *statements, **params)
    report = acme(world)
    assert [k for k, _, _ in kinds(report)] == ["checkpoint-mismatch"], report.as_dict()
    assert report.findings[0].row_id == r[-1].id


def test_a_deleted_row_is_named_by_its_place(world: Container) -> None:
    r = rows(world)
    gone = r[2]
    tamper(world, "DELETE FROM audit_log WHERE id = :id", id=gone.id)
    report = acme(world)
    assert [(k, s) for k, _, s in kinds(report)] == [("deleted", gone.chain_seq)], report.as_dict()
    assert f"between row {r[1].id} and row {r[3].id}" in report.findings[0].message


def test_rows_cut_off_the_end_are_caught_by_the_head(world: Container) -> None:
    r = rows(world)
    tamper(world, "DELETE FROM audit_log WHERE id = :id", id=r[-1].id)
    report = acme(world)
    assert [(k, s) for k, _, s in kinds(report)] == [("deleted", r[-1].chain_seq)]


def test_an_inserted_row_is_named(world: Container) -> None:
    r = rows(world)
    src = r[2]
    tamper(
        world,
        "INSERT INTO audit_log (at, event_type, org_id, actor_id, actor_upn, target_type, target_id, ip, "
        "details, user_agent, chain_seq, prev_hash, entry_hash) SELECT at, 'Token.PatRevokeEvent', org_id, "
        "actor_id, actor_upn, target_type, target_id, ip, details, user_agent, chain_seq, prev_hash, "
        "entry_hash FROM audit_log WHERE id = :id",
        id=src.id,
    )
    inserted = rows(world)[-1]
    report = acme(world)
    found = kinds(report)
    assert ("inserted", inserted.id, src.chain_seq) in found, report.as_dict()
    assert ("modified", inserted.id, src.chain_seq) in found


def test_reordered_rows_are_named(world: Container) -> None:
    r = rows(world)
    a, b = r[2], r[3]
    cols = ["at", "event_type", "actor_id", "actor_upn", "target_type", "target_id", "ip", "details"]
    cols += ["user_agent", "chain_seq", "prev_hash", "entry_hash"]
    swap = ", ".join(f"{col} = (SELECT {col} FROM audit_log WHERE id = :other)" for col in cols)
    # swap every column of two rows (their ids stay): the log now reads them in the wrong order
    tamper(
        world,
        "CREATE TABLE tw_swap AS SELECT * FROM audit_log WHERE id IN (:a, :b)",
        f"UPDATE audit_log SET {swap.replace('FROM audit_log', 'FROM tw_swap')} WHERE id = :a".replace(
            ":other", ":b"
        ),
        f"UPDATE audit_log SET {swap.replace('FROM audit_log', 'FROM tw_swap')} WHERE id = :b".replace(
            ":other", ":a"
        ),
        "DROP TABLE tw_swap",
        a=a.id,
        b=b.id,
    )
    report = acme(world)
    assert [(k, row) for k, row, _ in kinds(report)] == [("reordered", b.id)], report.as_dict()
    assert rows(world)[3].chain_seq == a.chain_seq  # the row now at b's place holds a's entry


def test_a_checkpoint_with_a_forged_signature_is_refused(world: Container) -> None:
    assert world.audit_chain.checkpoint(force=True)
    engine = world.database.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS audit_checkpoints_no_update"))
        conn.execute(text("UPDATE audit_checkpoints SET seq = seq - 1"))
    report = acme(world)
    assert "bad-signature" in [k for k, _, _ in kinds(report)]


def test_when_the_audit_cannot_be_written_the_change_does_not_happen(world: Container) -> None:
    created = world.pats.create(
        OPERATOR, org="Acme", user="user1@acme.test", display_name="ci", scope="vso.code"
    )
    engine = world.database.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    "CREATE FUNCTION tw_test_audit_down() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'audit storage down'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER tw_test_audit_down BEFORE INSERT ON audit_log "
                    "FOR EACH ROW EXECUTE FUNCTION tw_test_audit_down()"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE TRIGGER tw_test_audit_down BEFORE INSERT ON audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'audit storage down'); END"
                )
            )
    with pytest.raises(DomainError):
        world.pats.revoke(OPERATOR, created.record.authorization_id)
    with world.uow() as uow:
        record = uow.tokens.get(created.record.authorization_id)
    assert record is not None and record.revoked_at is None  # not revoked: the audit failed
    assert world.validator.validate(created.secret).user.id == created.record.user_id  # still accepted


def test_an_export_verifies_offline_and_an_edited_one_does_not(world: Container, tmp_path: Path) -> None:
    world.audit_chain.checkpoint(force=True)
    text_out = "".join(world.audit_chain.export(OPERATOR, "Acme", since=None, until=None))
    kids = {k["kid"] for k in world.audit_chain.public_keys()}
    report, used = verify_export(text_out.splitlines(keepends=True), trusted_kids=kids)
    assert report.ok and report.signed_through == report.last_seq and used == sorted(kids)
    # CSV round trip
    csv_out = "".join(world.audit_chain.export(OPERATOR, "Acme", since=None, until=None, fmt="csv"))
    assert verify_export([csv_out], trusted_kids=kids)[0].ok
    # an edited record
    lines = text_out.splitlines(keepends=True)
    record = json.loads(lines[3])
    record["actorUpn"] = "mallory@evil.test"
    lines[3] = json.dumps(record) + "\n"
    report, _ = verify_export(lines, trusted_kids=kids)
    assert [f.kind for f in report.findings] == ["modified"]
    # an attacker's own key in the file is not trusted when the kids are pinned
    forged, _ = verify_export(text_out.splitlines(keepends=True), trusted_kids={"someone-else"})
    assert "bad-signature" in [f.kind for f in forged.findings]


def test_entries_written_before_the_chain_existed_are_chained_by_the_migration(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'data' / 'tw.db'}"
    c = build(
        Settings(data_dir=tmp_path / "data", database_url=url, scheduler_enabled=False), create_pepper=True
    )
    cfg = c.database.alembic_config()  # type: ignore[attr-defined]
    with c.database.engine.connect() as conn:  # type: ignore[attr-defined]
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0009")
        for n in range(3):
            conn.execute(
                text(
                    "INSERT INTO audit_log (at, event_type, org_id, actor_id, actor_upn, target_type, "
                    "target_id, ip, details) VALUES (:at, 'User.Create', :org, NULL, 'operator', 'user', "
                    ":t, NULL, :d)"
                ),
                {
                    "at": f"2026-11-0{n + 1} 10:00:00.000000",
                    "org": "org-1",
                    "t": f"u{n}",
                    "d": json.dumps({"n": n}),
                },
            )
        conn.commit()
    c.database.upgrade()
    reports = c.audit_chain.verify(OPERATOR)
    assert [(r.chain, r.entries, r.ok) for r in reports] == [("org-1", 3, True)]
    c.database.dispose()


def _cli_world(tmp_path: Path) -> Callable[..., Any]:
    env = {**os.environ, "TOKENWARDEN_DATA_DIR": str(tmp_path / "data")}
    env.pop("TOKENWARDEN_DATABASE_URL", None)
    return lambda *args: run_cli(list(args), env, tmp_path)


def test_the_cli_names_the_tampered_row_and_exits_1(tmp_path: Path) -> None:
    cli = _cli_world(tmp_path)
    assert cli("init", "--org", "Acme", "--admin", "a@acme.test", "--json").returncode == 0
    assert cli("user", "add", "b@acme.test", "--org", "Acme").returncode == 0
    ok = cli("audit", "verify", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    c = build(Settings(data_dir=tmp_path / "data", scheduler_enabled=False))
    victim = rows(c)[1]
    tamper(c, "UPDATE audit_log SET ip = '203.0.113.9' WHERE id = :id", id=victim.id)
    c.database.dispose()
    bad = cli("audit", "verify")
    assert bad.returncode == 1
    assert f"row {victim.id}" in bad.stdout and "modified" in bad.stdout
    data = json.loads(cli("audit", "verify", "--json").stdout)
    assert data["ok"] is False
    assert data["chains"][0]["findings"][0]["rowId"] == victim.id
    export = tmp_path / "audit.ndjson"
    assert cli("audit", "export", "--org", "Acme", "--output", str(export)).returncode == 0
    offline = cli("audit", "verify", "--file", str(export), "--json")
    assert (
        offline.returncode == 1
        and json.loads(offline.stdout)["chains"][0]["findings"][0]["kind"] == "modified"
    )
