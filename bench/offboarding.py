"""Issue 17: a SCIM deactivation, request to refusal of the leaver's tokens on every other node.

Three single-worker ``tokenwarden serve`` nodes on one PostgreSQL (LISTEN/NOTIFY bus). Per sample
a user is provisioned through node A's SCIM endpoint, given ``tokens`` PATs (in process, straight
into the shared database), and one of them is validated on nodes B and C (cached there). Then
Entra's deactivation — ``PATCH /scim/v2/bench/Users/{id}`` with ``"op": "Replace", "path":
"active", "value": "False"`` — is sent to node A (a pre-built raw request: the clock starts as it
leaves) while B and C are polled over kept-alive connections until both answer 401.

Ceiling, same run and cluster: the revocation of one PAT through node A
(``DELETE /api/v1/orgs/bench/pats/{id}``), timed the same way — what the fastest single
revocation costs, so the deactivation's figure is read against it. The deactivation does more in
its transaction (membership, watermarks for every token kind, successor choice, audit), and the
leaver's PAT count must not move it (watermarks: O(1)).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import timedelta
from typing import Any

from bench.propagation import EXE, SETTLE, Cluster, RawHttp, _pct, _poll_until_refused

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
DEACTIVATE = json.dumps(
    {"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}
).encode()


def _raw(conn: RawHttp, method: str, path: str, token: str, body: bytes = b"") -> None:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/scim+json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    conn.request = head.encode() + body


def _timed(conns: list[list[RawHttp]], sender: RawHttp, expected: int) -> tuple[float, float]:
    """Send ``sender``'s prepared request while polling ``conns``; (all refuse ms, response ms)."""
    start = threading.Event()
    result: list[list[float]] = []
    t0_box = [0.0]
    poller = threading.Thread(target=_poll_until_refused, args=(conns, t0_box, start, result))
    poller.start()
    t0 = t0_box[0] = time.perf_counter()
    start.set()
    sender.send()
    status = sender.status()
    response = (time.perf_counter() - t0) * 1000
    if status != expected:
        raise RuntimeError(f"expected {expected}, got {status}: {sender.last_body[:300]!r}")
    poller.join(timeout=10)
    if not result:
        raise RuntimeError("the other nodes did not refuse within 10 s")
    return max(result[0]) * 1000, response


def _warm(conns: list[list[RawHttp]], token: str) -> None:
    for node in conns:
        for conn in node:
            conn.prepare("/api/v1/validate", token)
            conn.send()
            if conn.status() != 200:
                raise RuntimeError("a fresh PAT was refused")
    time.sleep(SETTLE)


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": _pct(values, 0.5), "p99_ms": _pct(values, 0.99), "max_ms": round(max(values), 2)}


def run(quick: bool = False) -> dict[str, Any]:
    from tokenwarden.bootstrap import build
    from tokenwarden.services.common import OPERATOR
    from tokenwarden.settings import Settings

    samples = 20 if quick else 200
    cluster = Cluster("auto", nodes=3, workers=1)
    container = build(
        Settings(database_url=cluster.db_url, peppers=cluster.env["TOKENWARDEN_PEPPERS"], bus_url="memory")
    )
    made = subprocess.run(
        [EXE, "scim", "token", "create", "--org", "bench", "--json"],
        env=cluster.env,
        cwd=cluster.tmp.name,
        capture_output=True,
        text=True,
        check=True,
    )
    scim_token = json.loads(made.stdout)["token"]
    conns = [[RawHttp(url)] for url in cluster.urls[1:]]
    sender = RawHttp(cluster.urls[0])
    out: dict[str, Any] = {"samples": samples, "nodes": 3, "bus": "postgres"}
    try:
        seq = 0
        for tokens in (1, 50):
            refused, response = [], []
            for _ in range(samples if tokens == 1 else max(10, samples // 4)):
                seq += 1
                created = cluster.clients[0].post(
                    "/scim/v2/bench/Users",
                    json={"schemas": [USER], "userName": f"leaver{seq}@bench.test", "active": True},
                    headers={"Authorization": f"Bearer {scim_token}"},
                )
                created.raise_for_status()
                secrets_ = [
                    container.pats.create(
                        OPERATOR,
                        org="bench",
                        user=f"leaver{seq}@bench.test",
                        display_name=f"ci-{n}",
                        scope="vso.code",
                        lifetime=timedelta(days=30),
                    ).secret
                    for n in range(tokens)
                ]
                _warm(conns, secrets_[-1])
                _raw(sender, "PATCH", f"/scim/v2/bench/Users/{created.json()['id']}", scim_token, DEACTIVATE)
                r, t = _timed(conns, sender, 200)
                refused.append(r)
                response.append(t)
                for secret in secrets_[:3]:  # every token of theirs, not only the watched one
                    if (
                        cluster.clients[2]
                        .get("/api/v1/validate", headers={"Authorization": f"Bearer {secret}"})
                        .status_code
                        != 401
                    ):
                        raise RuntimeError("a deactivated user's PAT is still accepted")
            out[f"deactivation_{tokens}_pats"] = {
                "refused_on_every_other_node": _summary(refused),
                "scim_response": _summary(response),
            }
        refused, response = [], []
        for _ in range(samples):
            auth_id, secret = cluster.create_pat()
            _warm(conns, secret)
            sender.prepare(f"/api/v1/orgs/bench/pats/{auth_id}", cluster.admin, "DELETE")
            r, t = _timed(conns, sender, 204)
            refused.append(r)
            response.append(t)
        out["ceiling_single_pat_revoke"] = {
            "refused_on_every_other_node": _summary(refused),
            "revoke_response": _summary(response),
        }
        return out
    finally:
        for node in conns:
            for conn in node:
                conn.close()
        sender.close()
        container.close()
        cluster.close()


if __name__ == "__main__":
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
