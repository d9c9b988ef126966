"""Three `tokenwarden serve` processes on one PostgreSQL: a revocation through node A is
enforced by nodes B and C — for every revocation mode, over the PostgreSQL and Redis buses.
Also: a cut bus costs latency only; an unreachable database makes nodes fail closed."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.conftest import free_port, run_cli
from tokenwarden.bootstrap import build
from tokenwarden.domain import token_format
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.settings import Settings

pytestmark = pytest.mark.slow
NODES = 3


@dataclass
class Cluster:
    nodes: list[str]
    admin_token: str
    env: dict[str, str]
    db_url: str
    tmp: Path
    procs: list[subprocess.Popen[bytes]]

    def h(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def api(
        self, method: str, path: str, node: int = 0, token: str | None = None, **kw: object
    ) -> httpx.Response:
        return httpx.request(method, self.nodes[node] + path, headers=self.h(token), timeout=10, **kw)  # type: ignore[arg-type]

    def valid_on(self, node: int, token: str) -> int:
        return httpx.get(self.nodes[node] + "/api/v1/validate", headers=self.h(token), timeout=10).status_code

    def member_with_pat(self, upn: str, scope: str = "vso.code") -> str:
        r = self.api("POST", "/api/v1/orgs/Acme/users", json={"upn": upn})
        assert r.status_code in (201, 409), r.text
        out = run_cli(
            ["pat", "create", "--user", upn, "--org", "Acme", "--name", "n", "--scope", scope, "--json"],
            self.env,
            self.tmp,
        )
        assert out.returncode == 0, out.stderr
        return str(json.loads(out.stdout)["token"])

    def mint(self, upn: str, kind: TokenKind, scopes: tuple[str, ...] = ("vso.code",)) -> str:
        """A token of any kind straight into the shared database (OAuth kinds come with issue 4)."""
        c = build(
            Settings(database_url=self.db_url, peppers=self.env["TOKENWARDEN_PEPPERS"], bus_url="memory")
        )
        try:
            with c.uow() as uow:
                user = uow.users.by_upn(upn)
                org = uow.orgs.by_name("Acme")
                assert user and org
                secret = token_format.generate(TokenKind.SESSION if kind is TokenKind.ACCESS else kind)
                now = datetime.now(UTC)
                uow.tokens.add(
                    TokenRecord(
                        authorization_id=str(uuid.uuid4()),
                        kind=kind,
                        user_id=user.id,
                        org_id=org.id,
                        display_name=kind.value,
                        scopes=scopes,
                        target_orgs=(org.id,),
                        secret_hash=c.hasher.hash(secret),
                        pepper_id=c.hasher.current_id,
                        valid_from=now,
                        valid_to=now + timedelta(hours=1),
                        created_at=now,
                    )
                )
                uow.commit()
        finally:
            c.database.dispose()
        return secret


def wait_rejected(cluster: Cluster, token: str, nodes: range | list[int], budget: float = 2.0) -> float:
    """Seconds until every node in ``nodes`` rejects ``token`` (fails past ``budget``)."""
    t0 = time.monotonic()
    pending = set(nodes)
    while pending:
        pending = {n for n in pending if cluster.valid_on(n, token) == 200}
        elapsed = time.monotonic() - t0
        assert elapsed < budget, f"nodes {sorted(pending)} still accept a revoked token after {elapsed:.2f}s"
    return time.monotonic() - t0


def warm(cluster: Cluster, token: str) -> None:
    for n in range(NODES):
        assert cluster.valid_on(n, token) == 200, f"node {n} rejects a live token"


def start_nodes(
    env: dict[str, str], tmp: Path, count: int = NODES
) -> tuple[list[str], list[subprocess.Popen[bytes]]]:
    exe = str(Path(sys.executable).parent / "tokenwarden")
    nodes, procs = [], []
    for _ in range(count):
        port = free_port()
        procs.append(
            subprocess.Popen(
                [exe, "serve", "--port", str(port)],
                env=env,
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        nodes.append(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    for base in nodes:
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{base} did not start"
            time.sleep(0.1)
    return nodes, procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture(scope="module", params=["postgres", "redis"])
def cluster(
    request: pytest.FixtureRequest,
    postgres_database_factory: Callable[[], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    if request.param == "redis":
        try:
            import redis

            redis.Redis.from_url("redis://127.0.0.1:6379/0").ping()
        except Exception as exc:
            if os.environ.get("CI"):
                pytest.fail(f"Redis not reachable in CI: {exc}")
            pytest.skip(f"Redis not reachable: {exc}")
    tmp = tmp_path_factory.mktemp(f"cluster-{request.param}")
    db_url = postgres_database_factory()
    env = {
        **os.environ,
        "TOKENWARDEN_DATABASE_URL": db_url,
        "TOKENWARDEN_PEPPERS": f"p1:{secrets.token_hex(32)}",
        "TOKENWARDEN_DATA_DIR": str(tmp / "data"),
        "TOKENWARDEN_LOG_LEVEL": "warning",
        # redis: a doorbell only — another run ringing it merely triggers an extra sync
        "TOKENWARDEN_BUS_URL": "auto" if request.param == "postgres" else "redis://127.0.0.1:6379/0",
    }
    init = run_cli(["init", "--org", "Acme", "--admin", "admin@acme.test", "--json"], env, tmp)
    assert init.returncode == 0, init.stderr
    nodes, procs = start_nodes(env, tmp)
    try:
        yield Cluster(nodes, json.loads(init.stdout)["token"], env, db_url, tmp, procs)
    finally:
        stop(procs)


def test_one_token_by_id_and_by_value(cluster: Cluster) -> None:
    token = cluster.member_with_pat("one@acme.test")
    warm(cluster, token)
    found = cluster.api("POST", "/api/v1/orgs/Acme/tokens/lookup", json={"token": token})
    assert found.status_code == 200 and found.json()["owner"]["upn"] == "one@acme.test"
    r = cluster.api("DELETE", f"/api/v1/orgs/Acme/pats/{found.json()['authorizationId']}")
    assert r.status_code == 204
    wait_rejected(cluster, token, [1, 2])
    leaked = cluster.member_with_pat("one@acme.test")
    warm(cluster, leaked)
    r = cluster.api("POST", "/api/v1/orgs/Acme/tokens/revoke-by-value", node=1, json={"token": leaked})
    assert r.status_code == 200 and r.json()["revokedAt"]
    wait_rejected(cluster, leaked, [0, 2])


def test_all_tokens_of_a_user_and_disable(cluster: Cluster) -> None:
    pat = cluster.member_with_pat("two@acme.test")
    session = cluster.mint("two@acme.test", TokenKind.SESSION)
    other = cluster.member_with_pat("bystander@acme.test")
    for t in (pat, session, other):
        warm(cluster, t)
    r = cluster.api("POST", "/api/v1/orgs/Acme/users/two@acme.test/revoke", json={"kinds": ["session"]})
    assert r.status_code == 200 and r.json()["revoked"] == {"session": 1}
    wait_rejected(cluster, session, [1, 2])
    assert cluster.valid_on(2, pat) == 200  # only sessions were asked for
    r = cluster.api("POST", "/api/v1/orgs/Acme/users/two@acme.test/revoke", node=2)
    assert r.status_code == 200 and r.json()["revoked"]["pat"] == 1
    wait_rejected(cluster, pat, [0, 1])
    assert cluster.valid_on(1, other) == 200
    r = cluster.api("PATCH", "/api/v1/orgs/Acme/users/bystander@acme.test", json={"status": "disabled"})
    assert r.status_code == 200
    wait_rejected(cluster, other, [1, 2])


def test_scim_deactivation_kills_pat_session_and_access_token_on_every_node(cluster: Cluster) -> None:
    """Issue 17: Entra's deactivation (a PATCH with active "False") through node B; the leaver's
    PAT, browser session and access token are refused by all three nodes within the bound."""
    made = run_cli(["scim", "token", "create", "--org", "Acme", "--json"], cluster.env, cluster.tmp)
    assert made.returncode == 0, made.stderr
    scim_token = json.loads(made.stdout)["token"]
    created = cluster.api(
        "POST",
        "/scim/v2/Acme/Users",
        token=scim_token,
        json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "scim-leaver@acme.test"},
    )
    assert created.status_code == 201, created.text
    pat = cluster.member_with_pat("scim-leaver@acme.test")
    session = cluster.mint("scim-leaver@acme.test", TokenKind.SESSION)
    access = cluster.mint("scim-leaver@acme.test", TokenKind.ACCESS)
    for t in (pat, session, access):
        warm(cluster, t)
    r = cluster.api(
        "PATCH",
        f"/scim/v2/Acme/Users/{created.json()['id']}",
        node=1,
        token=scim_token,
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        },
    )
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    for t in (pat, session, access):
        wait_rejected(cluster, t, range(NODES))


def test_entra_watermarks_and_risky_users(cluster: Cluster) -> None:
    cluster.member_with_pat("three@acme.test")
    session = cluster.mint("three@acme.test", TokenKind.SESSION)
    refresh = cluster.mint("three@acme.test", TokenKind.REFRESH)
    access = cluster.mint("three@acme.test", TokenKind.ACCESS)
    for t in (session, refresh, access):
        warm(cluster, t)
    r = cluster.api("POST", "/api/v1/orgs/Acme/users/three@acme.test/revoke", json={"kinds": ["refresh"]})
    assert r.status_code == 200
    wait_rejected(cluster, refresh, [1, 2])
    assert cluster.valid_on(1, access) == 200
    risky = cluster.member_with_pat("four@acme.test")
    warm(cluster, risky)
    r = cluster.api("PUT", "/api/v1/orgs/Acme/users/four@acme.test/risk", json={"riskLevel": "high"})
    assert r.status_code == 200 and r.json()["riskState"] == "atRisk"
    r = cluster.api("POST", "/api/v1/orgs/Acme/risky-users/revoke", node=1, json={"minRiskLevel": "medium"})
    assert r.status_code == 200 and r.json()["users"] == 1
    wait_rejected(cluster, risky, [0, 2])


def test_revoke_sign_in_sessions_on_one_node_stops_an_issued_jwt_on_the_others(cluster: Cluster) -> None:
    """A JWT access token and refresh token issued by the real authorization server (code flow
    over the shared database), warmed on every node; Graph revokeSignInSessions through node A
    is enforced by nodes B and C within the bound, and the refresh token is dead too."""
    from tests.unit.test_oauth_server import authorize, exchange, refresh, register

    cluster.member_with_pat("oauth@acme.test")
    c = build(
        Settings(database_url=cluster.db_url, peppers=cluster.env["TOKENWARDEN_PEPPERS"], bus_url="memory")
    )
    try:
        from tokenwarden.services.common import OPERATOR

        user = c.directory.get_member(OPERATOR, "Acme", "oauth@acme.test")[0]
        client, secret = register(c)
        status, tokens = exchange(c, client, secret, authorize(c, client, user))
        assert status == 200, tokens
        access = str(tokens["access_token"])
        warm(cluster, access)
        time.sleep(0.01)
        r = cluster.api("POST", "/graph/v1.0/users/oauth@acme.test/revokeSignInSessions")
        assert r.status_code == 200, r.text
        elapsed = wait_rejected(cluster, access, [1, 2])
        assert elapsed < 2.0
        r = httpx.get(cluster.nodes[2] + "/api/v1/validate", headers=cluster.h(access), timeout=10)
        assert r.json()["error"]["message"] == "token is revoked"
        c.validator.sync()
        assert refresh(c, client, secret, str(tokens["refresh_token"]))[0] == 400
    finally:
        c.database.dispose()


def test_revocation_rule_by_scope_and_date(cluster: Cluster) -> None:
    code = cluster.member_with_pat("five@acme.test", scope="vso.code")
    work = cluster.member_with_pat("five@acme.test", scope="vso.work")
    for t in (code, work):
        warm(cluster, t)
    r = cluster.api("POST", "/Acme/_apis/tokenadmin/revocationrules", json={"scopes": "vso.code"})
    assert r.status_code == 201
    wait_rejected(cluster, code, [1, 2])
    assert all(cluster.valid_on(n, work) == 200 for n in range(NODES))
    assert cluster.valid_on(1, cluster.admin_token) == 200  # app_token is not caught literally


def test_deleting_a_rule_reaches_every_node(cluster: Cluster) -> None:
    token = cluster.member_with_pat("rules@acme.test", scope="vso.work")
    warm(cluster, token)
    before = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body = {"createdBefore": before, "users": ["rules@acme.test"]}  # no scopes: every token
    r = cluster.api("POST", "/api/v1/orgs/Acme/revocation-rules", json=body)
    assert r.status_code == 201, r.text
    wait_rejected(cluster, token, [1, 2])
    r = cluster.api("DELETE", f"/api/v1/orgs/Acme/revocation-rules/{r.json()['id']}", node=1)
    assert r.status_code == 200 and r.json()["restoredTokens"] == 1
    deadline = time.monotonic() + 2.0
    while not all(cluster.valid_on(n, token) == 200 for n in (0, 2)):
        assert time.monotonic() < deadline, "a node still rejects a token whose rule was deleted"
        time.sleep(0.02)


def test_csv_job_through_one_node_is_enforced_by_the_others(cluster: Cluster) -> None:
    tokens = [cluster.member_with_pat(f"csv{i}@acme.test") for i in range(3)]
    for t in tokens:
        warm(cluster, t)
    body = "UserPrincipalName\n" + "".join(f"csv{i}@acme.test\n" for i in range(3)) + "ghost@acme.test\n"
    r = httpx.post(
        cluster.nodes[0] + "/api/v1/orgs/Acme/revocations/users-csv",
        content=body.encode(),
        headers={**cluster.h(), "Content-Type": "text/csv"},
        timeout=10,
    )
    assert r.status_code == 202, r.text
    for t in tokens:
        wait_rejected(cluster, t, [1, 2], budget=10.0)
    job_id = r.json()["jobId"]
    deadline = time.monotonic() + 10
    while cluster.api("GET", f"/api/v1/orgs/Acme/jobs/{job_id}", node=2).json()["state"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    results = cluster.api("GET", f"/api/v1/orgs/Acme/jobs/{job_id}/results", node=1).text.splitlines()
    assert results[0] == "UserPrincipalName,Status,Error,RevokedCount"
    assert results[1:] == [f"csv{i}@acme.test,Success,,1" for i in range(3)] + [
        "ghost@acme.test,Failed,not a member of Acme,0"
    ]


def test_break_glass_kills_everything_everywhere(cluster: Cluster) -> None:
    victims = [cluster.member_with_pat("six@acme.test"), cluster.mint("six@acme.test", TokenKind.REFRESH)]
    for t in victims:
        warm(cluster, t)
    preview = cluster.api("GET", "/api/v1/orgs/Acme/break-glass/preview").json()
    assert preview["total"] >= 2 and preview["confirmWith"] == "Acme"
    wrong = cluster.api("POST", "/api/v1/orgs/Acme/break-glass", json={"confirm": "acme"})
    assert wrong.status_code == 400
    r = cluster.api("POST", "/api/v1/orgs/Acme/break-glass", json={"confirm": "Acme", "reason": "test"})
    assert r.status_code == 200 and r.json()["status"] == "executed"
    recovery = r.json()["recoveryToken"]["token"]
    for t in [*victims, cluster.admin_token]:
        wait_rejected(cluster, t, [0, 1, 2])
    # the recovery token works on every node, and can see what happened
    for n in range(NODES):
        assert cluster.valid_on(n, recovery) == 200
    audit = cluster.api(
        "GET", "/api/v1/orgs/Acme/audit?eventType=Token.BreakGlassExecuteEvent", token=recovery
    )
    assert audit.status_code == 200 and len(audit.json()["value"]) == 1
    cluster.admin_token = recovery


def test_cut_bus_costs_latency_not_correctness(
    postgres_database_factory: Callable[[], str], tmp_path: Path
) -> None:
    """Nodes on a private Redis that dies: revocations still arrive through the event poll."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    redis_proc = subprocess.Popen(
        [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db_url = postgres_database_factory()
    env = {
        **os.environ,
        "TOKENWARDEN_DATABASE_URL": db_url,
        "TOKENWARDEN_PEPPERS": f"p1:{secrets.token_hex(32)}",
        "TOKENWARDEN_BUS_URL": f"redis://127.0.0.1:{port}/0",
        "TOKENWARDEN_LOG_LEVEL": "warning",
    }
    try:
        time.sleep(0.3)
        init = run_cli(["init", "--org", "Acme", "--admin", "admin@acme.test", "--json"], env, tmp_path)
        assert init.returncode == 0, init.stderr
        nodes, procs = start_nodes(env, tmp_path, 2)
        c = Cluster(nodes, json.loads(init.stdout)["token"], env, db_url, tmp_path, procs)
        try:
            token = c.member_with_pat("cut@acme.test")
            warm_two = [c.valid_on(n, token) for n in range(2)]
            assert warm_two == [200, 200]
            redis_proc.kill()
            redis_proc.wait()
            r = c.api("POST", "/api/v1/orgs/Acme/users/cut@acme.test/revoke")
            assert r.status_code == 200
            wait_rejected(c, token, [1], budget=2.0)  # the 250 ms poll carries it
        finally:
            stop(procs)
    finally:
        if redis_proc.poll() is None:
            redis_proc.kill()


def test_unreachable_database_fails_closed(
    postgres_database_factory: Callable[[], str], tmp_path: Path
) -> None:
    """With the database gone, a node answers 503 after its staleness bound — never a stale 200."""
    db_url = postgres_database_factory()
    env = {
        **os.environ,
        "TOKENWARDEN_DATABASE_URL": db_url,
        "TOKENWARDEN_PEPPERS": f"p1:{secrets.token_hex(32)}",
        "TOKENWARDEN_LOG_LEVEL": "warning",
    }
    init = run_cli(["init", "--org", "Acme", "--admin", "admin@acme.test", "--json"], env, tmp_path)
    assert init.returncode == 0, init.stderr
    nodes, procs = start_nodes(env, tmp_path, 1)
    url = make_url(db_url)
    admin_dsn = f"host={url.host} port={url.port or 5432} user={url.username} dbname=postgres"
    try:
        c = Cluster(nodes, json.loads(init.stdout)["token"], env, db_url, tmp_path, procs)
        assert c.valid_on(0, c.admin_token) == 200
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (url.database,)
            )
            try:
                deadline = time.monotonic() + 5
                status = 200
                while time.monotonic() < deadline:
                    r = httpx.get(nodes[0] + "/api/v1/validate", headers=c.h(), timeout=10)
                    status = r.status_code
                    if status == 503:
                        assert r.headers.get("retry-after")
                        break
                    time.sleep(0.1)
                assert status == 503, "node kept answering from a cache it could no longer confirm"
            finally:
                admin.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS true')
        deadline = time.monotonic() + 10
        while c.valid_on(0, c.admin_token) != 200:
            assert time.monotonic() < deadline, "node did not recover after the database came back"
            time.sleep(0.2)
    finally:
        stop(procs)
