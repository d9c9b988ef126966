"""Issue 13 over HTTP: managed credentials, rotation runs and rotate-now, the rotation status,
the consumers' secret door with ETags and long-polling, and /health's rotation figures — over a
real SQLite app with the built-in secret store."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import httpx

from tokenwarden.domain.managed import StoreKind
from tokenwarden.ports.secrets import SecretStoreError
from tokenwarden.services.common import OPERATOR

from .conftest import Server

SERVICE = "svc@acme.test"


def creds(server: Server) -> str:
    return f"/api/v1/orgs/{server.org}/managed-credentials"


def put_under_management(server: Server, name: str = "ci", **extra: Any) -> tuple[dict[str, Any], str]:
    """A service PAT of svc@acme.test under rotation into the built-in store: (credential, secret)."""
    r = server.client.post(f"/api/v1/orgs/{server.org}/users", json={"upn": SERVICE}, headers=server.auth())
    assert r.status_code in (201, 409), r.text
    auth_id, secret = server.pat_for(SERVICE, scope="vso.code", name=f"{name} token", days=30)
    body = {"name": name, "authorizationId": auth_id, "store": "builtin", **extra}
    r = server.client.post(creds(server), json=body, headers=server.auth())
    assert r.status_code == 201, r.text
    return r.json(), secret


def rotate(server: Server, name: str = "ci", token: str | None = None, **body: Any) -> httpx.Response:
    return server.client.post(f"{creds(server)}/{name}/rotate", json=body or None, headers=server.auth(token))


def secret_url(server: Server, name: str = "ci") -> str:
    return f"/api/v1/orgs/{server.org}/secrets/{name}"


def admin_pat(server: Server, upn: str) -> str:
    server.add_member(upn, role="admin")
    return server.pat_for(upn, scope="vso.tokenadministration")[1]


# ---------------------------------------------------------------------- managed credentials
def test_add_list_show_patch_delete(server: Server) -> None:
    cred, _ = put_under_management(server, contacts=["ops@acme.test"], thresholdDays=5, validDays=20)
    assert cred["name"] == "ci" and cred["store"] == "builtin" and cred["source"] == "local"
    assert cred["orgId"] == server.org_id and cred["version"] == 0 and cred["status"] == "active"
    assert cred["logicalSecretName"] == "ci"
    # the built-in store is shared by every org: the name lives under the org's id
    assert re.fullmatch(rf"{server.org}/ci-[0-9a-f]{{8}}", cred["secretName"]), cred["secretName"]
    assert (cred["thresholdDays"], cred["validDays"], cred["overlapMinutes"]) == (5, 20, 0)
    assert cred["contacts"] == ["ops@acme.test"] and cred["lastRotation"] is None
    assert cred["scopes"] == ["vso.code"] and cred["displayName"] == "ci token"

    other, _ = put_under_management(server, "deploy", secretName="deploy/prod key")
    assert re.fullmatch(rf"{server.org}/deploy/prod-key-[0-9a-f]{{8}}", other["secretName"]), other[
        "secretName"
    ]

    listing = server.client.get(creds(server), headers=server.auth()).json()
    assert listing["count"] == 2 and sorted(c["name"] for c in listing["value"]) == ["ci", "deploy"]

    shown = server.client.get(f"{creds(server)}/CI", headers=server.auth())  # names: any case
    assert shown.status_code == 200 and shown.json()["id"] == cred["id"]
    r = server.client.get(f"{creds(server)}/nope", headers=server.auth())
    assert r.status_code == 404 and r.json()["error"]["code"] == "credentialNotFound"

    r = server.client.patch(
        f"{creds(server)}/ci", json={"contacts": ["a@acme.test", "b@acme.test"]}, headers=server.auth()
    )
    assert r.status_code == 200 and r.json()["contacts"] == ["a@acme.test", "b@acme.test"]
    r = server.client.patch(
        f"{creds(server)}/ci", json={"contacts": ["not an address"]}, headers=server.auth()
    )
    assert r.status_code == 400
    r = server.client.patch(f"{creds(server)}/ci", json={"owner": "x"}, headers=server.auth())
    assert r.status_code == 400 and "owner" in r.json()["error"]["message"]

    r = server.client.delete(f"{creds(server)}/deploy?deleteSecret=false", headers=server.auth())
    assert r.status_code == 204 and r.content == b""
    assert server.client.get(f"{creds(server)}/deploy", headers=server.auth()).status_code == 404
    assert server.client.delete(f"{creds(server)}/deploy", headers=server.auth()).status_code == 404
    r = server.client.delete(f"{creds(server)}/ci?deleteSecret=maybe", headers=server.auth())
    assert r.status_code == 400 and "deleteSecret" in r.json()["error"]["message"]


def test_duplicate_and_bad_input_are_precise_400s_and_409s(server: Server) -> None:
    cred, _ = put_under_management(server)
    c, url = server.client, creds(server)
    r = c.post(
        url,
        json={"name": "ci-again", "authorizationId": cred["authorizationId"], "store": "builtin"},
        headers=server.auth(),
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "alreadyManaged"
    auth_id, _ = server.pat_for(SERVICE, scope="vso.code", name="second")
    r = c.post(
        url, json={"name": "CI", "authorizationId": auth_id, "store": "builtin"}, headers=server.auth()
    )
    assert r.status_code == 409 and "exists" in r.json()["error"]["message"]

    def bad(body: dict[str, Any]) -> dict[str, Any]:
        r = c.post(
            url,
            json={"name": "x", "authorizationId": auth_id, "store": "builtin", **body},
            headers=server.auth(),
        )
        assert r.status_code == 400, (body, r.status_code, r.text)
        error: dict[str, Any] = r.json()["error"]
        return error

    e = bad({"store": "s3"})
    assert e["code"] == "invalidStore" and "builtin" in e["message"] and "vault" in e["message"]
    e = bad({"thresholdDays": 30, "validDays": 30})
    assert (
        e["code"] == "invalidRotationSettings" and "thresholdDays must be less than validDays" in e["message"]
    )
    e = bad({"validDays": 400})
    assert "validDays must be between 1 and 366" in e["message"]
    e = bad({"thresholdDays": True})
    assert "thresholdDays" in e["message"]
    e = bad({"name": "a/b"})
    assert e["code"] == "invalidName" and "letters, digits" in e["message"]
    e = bad({"name": "x" * 200})
    assert e["code"] == "invalidName"
    e = bad({"name": "x" * 100_000})  # under the body limit, past the field's bound
    assert "name" in e["message"]
    e = bad({"colour": "blue"})
    assert "colour" in e["message"] and "Extra inputs are not permitted" in e["message"]
    e = bad({"source": "github"})
    assert e["code"] == "invalidSource"
    e = bad({"adoUrl": "https://ado.example"})
    assert e["code"] == "invalidSource"
    e = bad({"contacts": [f"c{i}@acme.test" for i in range(21)]})
    assert "20" in e["message"]
    e = bad({"secretName": "bad\x01name"})
    assert e["code"] == "invalidSecretName"
    r = c.post(
        url, json={"name": "x", "authorizationId": "0" * 36, "store": "builtin"}, headers=server.auth()
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "authorizationNotFound"
    r = c.post(url, content=b'{"name": ', headers={**server.auth(), "Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    huge = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = c.post(url, content=huge, headers={**server.auth(), "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["message"]  # the body limit, before parsing
    assert server.client.get(url, headers=server.auth()).json()["count"] == 1  # nothing else added
    r = c.get(f"{url}/ci/rotations?top=0", headers=server.auth())
    assert r.status_code == 400 and "top" in r.json()["error"]["message"]


def test_an_authorization_id_in_another_spelling_is_the_same_token(server: Server) -> None:
    cred, old = put_under_management(server, "ci")
    auth_id = cred["authorizationId"]
    body = {"name": "ci2", "authorizationId": f"  {auth_id.upper()} ", "store": "builtin"}
    r = server.client.post(creds(server), json=body, headers=server.auth())
    assert r.status_code == 409 and r.json()["error"]["code"] == "alreadyManaged", r.text
    r = server.client.delete(f"{creds(server)}/ci", headers=server.auth())
    assert r.status_code == 204
    r = server.client.post(creds(server), json={**body, "name": "ci"}, headers=server.auth())
    assert r.status_code == 201 and r.json()["authorizationId"] == auth_id
    assert rotate(server).json()["result"] == "rotated"
    assert server.client.get("/api/v1/validate", headers=server.auth(old)).status_code == 401


# ---------------------------------------------------------------------- rotation and consumers
def test_rotate_now_revokes_the_predecessor_and_serves_the_successor(server: Server) -> None:
    cred, old = put_under_management(server)
    c = server.client
    assert c.get("/api/v1/validate", headers=server.auth(old)).status_code == 200
    r = c.get(secret_url(server), headers=server.auth())
    assert r.status_code == 404 and r.json()["error"]["code"] == "secretNotFound"  # before its first rotation

    r = rotate(server)  # compromised by default
    assert r.status_code == 200, r.text
    outcome = r.json()
    assert outcome["result"] == "rotated" and outcome["credential"] == "ci" and outcome["version"] == 1
    assert outcome["step"] == "done" and outcome["rotationId"]

    assert c.get("/api/v1/validate", headers=server.auth(old)).status_code == 401
    assert c.get("/api/v1/me", headers=server.auth(old)).status_code == 401
    r = c.get(secret_url(server), headers=server.auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"name", "value", "version", "expiresAt", "contentType"}
    assert body["name"] == "ci" and body["version"] == "1" and body["value"] != old
    assert body["contentType"] == "application/x-pat-token" and body["expiresAt"]
    assert r.headers["etag"] == '"1"' and r.headers["cache-control"] == "no-store"
    new = body["value"]
    me = c.get("/api/v1/me", headers=server.auth(new))
    assert me.status_code == 200 and me.json()["upn"] == SERVICE
    assert c.get("/api/v1/validate", headers=server.auth(new)).status_code == 200

    shown = c.get(f"{creds(server)}/ci", headers=server.auth()).json()
    assert shown["version"] == 1 and shown["authorizationId"] != cred["authorizationId"]
    assert shown["lastRotation"]["reason"] == "compromised" and shown["lastRotation"]["step"] == "done"
    history = c.get(f"{creds(server)}/ci/rotations?top=5", headers=server.auth()).json()
    assert history["count"] == 1 and history["value"][0]["predecessorId"] == cred["authorizationId"]

    r = rotate(server, compromised=False)  # forced, not compromised: the overlap is 0 minutes
    assert r.status_code == 200 and r.json()["result"] == "rotated" and r.json()["version"] == 2
    assert c.get("/api/v1/validate", headers=server.auth(new)).status_code == 401
    r = c.post(f"{creds(server)}/ci/rotate", json={"compromised": "yes"}, headers=server.auth())
    assert r.status_code == 400
    assert rotate(server, "nope").status_code == 404


def test_etag_and_if_none_match(server: Server) -> None:
    put_under_management(server)
    rotate(server)
    c = server.client
    first = c.get(secret_url(server), headers=server.auth())
    etag = first.headers["etag"]
    r = c.get(secret_url(server), headers={**server.auth(), "If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert r.headers["cache-control"] == "no-store"
    r = c.get(secret_url(server), headers={**server.auth(), "If-None-Match": '"0", ' + etag})
    assert r.status_code == 304
    r = c.get(secret_url(server), headers={**server.auth(), "If-None-Match": '"0"'})
    assert r.status_code == 200 and r.json()["value"] == first.json()["value"]
    assert c.get(secret_url(server) + "?version=1", headers=server.auth()).status_code == 304
    assert c.get(secret_url(server) + "?version=7", headers=server.auth()).status_code == 200


def test_secret_reads_are_audited_but_not_polls(server: Server) -> None:
    put_under_management(server)
    rotate(server)
    c = server.client

    def reads() -> int:
        r = c.get(
            f"/api/v1/orgs/{server.org}/audit",
            params={"eventType": "Rotation.SecretReadEvent"},
            headers=server.auth(),
        )
        assert r.status_code == 200, r.text
        return int(r.json()["count"])

    before = reads()
    c.get(secret_url(server), headers=server.auth())
    assert reads() == before + 1
    c.get(secret_url(server) + "?version=1&wait=0.5", headers=server.auth())  # 304: no value, no audit
    assert reads() == before + 1


def test_long_poll_times_out_with_304_and_wakes_on_rotation(server: Server) -> None:
    put_under_management(server)
    rotate(server)
    c = server.client
    started = time.monotonic()
    r = c.get(secret_url(server) + "?version=1&wait=2", headers=server.auth())
    took = time.monotonic() - started
    assert r.status_code == 304 and r.content == b"", r.text
    assert 1.8 <= took < 5, took

    result: dict[str, Any] = {}

    def poll() -> None:
        t0 = time.monotonic()
        resp = c.get(secret_url(server) + "?version=1&wait=20", headers=server.auth())
        result["response"], result["at"], result["took"] = resp, time.monotonic(), time.monotonic() - t0

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.6)
    assert "response" not in result  # still waiting
    r = rotate(server)
    rotated_at = time.monotonic()
    assert r.json()["result"] == "rotated"
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    resp = result["response"]
    assert resp.status_code == 200 and resp.json()["version"] == "2" and resp.headers["etag"] == '"2"'
    assert result["at"] - rotated_at < 2 and result["took"] < 10
    assert c.get("/api/v1/validate", headers=server.auth(resp.json()["value"])).status_code == 200


def test_a_token_revoked_during_a_long_poll_gets_no_value(server: Server) -> None:
    put_under_management(server)
    rotate(server)
    auth_id, reader = server.pat_for(server.admin_upn, scope="vso.tokenadministration", name="reader")
    result: dict[str, Any] = {}

    def poll() -> None:
        result["r"] = server.client.get(
            secret_url(server) + "?version=1&wait=20", headers=server.auth(reader)
        )

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.6)
    r = server.client.delete(f"/api/v1/orgs/{server.org}/pats/{auth_id}", headers=server.auth())
    assert r.status_code == 204, r.text
    assert rotate(server).json()["result"] == "rotated"
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert result["r"].status_code == 401 and "value" not in result["r"].text


def test_long_poll_is_capped_by_the_setting(server: Server) -> None:
    put_under_management(server)
    rotate(server)
    server.container.settings.secret_wait_max_seconds = 0.5
    started = time.monotonic()
    r = server.client.get(secret_url(server) + "?version=1&wait=30", headers=server.auth())
    assert r.status_code == 304 and time.monotonic() - started < 3


def test_bad_version_and_wait_are_precise_400s(server: Server) -> None:
    put_under_management(server)
    rotate(server)
    for query, needle in (
        ("version=abc", "version must be a version number"),
        ("version=-1", "version must be a version number"),
        ("version=1&wait=601", "wait must be a number of seconds from 0 to 600"),
        ("version=1&wait=-1", "wait must be a number of seconds"),
        ("version=1&wait=nan", "wait must be a number of seconds"),
        ("version=1&wait=1e3", "wait must be a number of seconds"),
    ):
        r = server.client.get(f"{secret_url(server)}?{query}", headers=server.auth())
        assert r.status_code == 400, (query, r.text)
        assert needle in r.json()["error"]["message"], (query, r.text)


# ---------------------------------------------------------------------- runs, status, health
def test_run_dry_run_status_and_health(server: Server) -> None:
    c = server.client
    assert c.get("/health").json()["rotation"] is None  # never run
    put_under_management(server)  # 30 days left, threshold 7: not due
    put_under_management(server, "later", thresholdDays=29, validDays=30)  # 30 days left > 29: not due
    auth_id, _ = server.pat_for(SERVICE, scope="vso.code", name="due token", days=3)
    r = c.post(
        creds(server),
        json={"name": "due", "authorizationId": auth_id, "store": "builtin"},
        headers=server.auth(),
    )
    assert r.status_code == 201

    dry = c.post("/api/v1/rotation/run", json={"dryRun": True}, headers=server.auth())
    assert dry.status_code == 200, dry.text
    d = dry.json()
    assert d["dryRun"] is True and d["wouldRotate"] == 1 and d["rotated"] == 0
    assert {o["credential"]: o["result"] for o in d["credentials"]}["due"] == "would_rotate"
    assert c.get(f"{creds(server)}/due", headers=server.auth()).json()["version"] == 0  # nothing done
    assert c.get("/health").json()["rotation"] is None  # a dry run is not a recorded run

    run = c.post("/api/v1/rotation/run", headers=server.auth())  # no body: the caller's only org
    assert run.status_code == 200, run.text
    report = run.json()
    assert report["dryRun"] is False and report["status"] == "completed" and report["org"] == server.org_id
    assert report["rotated"] == 1 and report["failed"] == 0 and report["skipped"] == 2
    assert [x["credential"] for x in report["rotations"]] == ["due"]
    if "credentials" in report:  # the job's counts list what was done (skipped ones only counted)
        assert [x["credential"] for x in report["credentials"]] == ["due"]
        assert report["credentials"][0]["result"] == "rotated"
    assert c.get(f"{creds(server)}/due", headers=server.auth()).json()["version"] == 1

    status = c.get(f"/api/v1/orgs/{server.org}/rotation/status", headers=server.auth())
    assert status.status_code == 200, status.text
    s = status.json()
    assert len(s["credentials"]) == 3 and s["failing"] == 0
    assert s["lastRun"]["id"] == report["runId"] and s["lastRun"]["status"] == "completed"
    assert s["lastRun"]["counts"]["rotated"] == 1

    health = c.get("/health").json()
    assert health["status"] == "ok" and "jobs" in health
    rot = health["rotation"]
    assert rot["lastRun"]["status"] == "completed" and rot["lastRun"]["finishedAt"]
    # that run was one organization's: the unauthenticated probe shows no figures of it
    assert (rot["rotated"], rot["failed"], rot["skipped"], rot["pending"], rot["errors"]) == (None,) * 5
    job = next(j for j in health["jobs"] if j["name"] == "rotation")
    assert job["lastRun"]["counts"] is None
    # the scheduler's installation-wide run: figures
    run = server.container.jobs.run("rotation", trigger="schedule")
    assert run is not None and run.status == "completed"
    rot = c.get("/health").json()["rotation"]
    assert (rot["rotated"], rot["failed"], rot["skipped"], rot["pending"], rot["errors"]) == (0, 0, 3, 0, 0)
    assert "later" not in str(c.get("/health").json())  # no credential names on the open probe

    r = c.post("/api/v1/rotation/run", json={"org": server.org, "dryRun": "no"}, headers=server.auth())
    assert r.status_code == 400
    r = c.post("/api/v1/rotation/run", json={"org": server.org, "everything": True}, headers=server.auth())
    assert r.status_code == 400


class RefusingStore:
    """The real built-in store, except that it refuses every write (a permanent failure)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.kind, self.staged = real.kind, real.staged

    def write(self, name: str, value: str, meta: Any) -> str:
        raise SecretStoreError("the store refused the write (test)")

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._real, attr)


def test_a_failed_rotate_now_is_200_failed_and_counted_as_failing(server: Server) -> None:
    _, old = put_under_management(server)
    c = server.client
    stores = server.container.stores
    real = stores(StoreKind.BUILTIN)
    stores._built[StoreKind.BUILTIN] = RefusingStore(real)  # type: ignore[assignment]
    try:
        r = rotate(server)
    finally:
        stores._built[StoreKind.BUILTIN] = real
    assert r.status_code == 200, r.text
    outcome = r.json()
    assert outcome["result"] == "failed" and "refused the write" in outcome["detail"]
    assert outcome["step"] == "rolled_back" and outcome["version"] == 0
    assert c.get("/api/v1/validate", headers=server.auth(old)).status_code == 200  # predecessor kept
    s = c.get(f"/api/v1/orgs/{server.org}/rotation/status", headers=server.auth()).json()
    assert s["failing"] == 1 and s["credentials"][0]["status"] == "failing"
    assert "refused the write" in s["credentials"][0]["lastError"]
    r = c.get(secret_url(server), headers=server.auth())
    assert r.status_code == 404  # nothing was ever served
    assert rotate(server).json()["result"] == "rotated"  # the store is back: it recovers
    s = c.get(f"/api/v1/orgs/{server.org}/rotation/status", headers=server.auth()).json()
    assert s["failing"] == 0


# ---------------------------------------------------------------------- who may
def routes(server: Server) -> list[tuple[str, str, dict[str, Any] | None]]:
    org = server.org
    return [
        ("POST", creds(server), {"name": "x", "authorizationId": "0" * 36, "store": "builtin"}),
        ("GET", creds(server), None),
        ("GET", f"{creds(server)}/ci", None),
        ("GET", f"{creds(server)}/ci/rotations", None),
        ("PATCH", f"{creds(server)}/ci", {"contacts": []}),
        ("DELETE", f"{creds(server)}/ci", None),
        ("POST", f"{creds(server)}/ci/rotate", {"compromised": True}),
        ("GET", f"/api/v1/orgs/{org}/rotation/status", None),
        ("GET", f"/api/v1/orgs/{org}/secrets/ci", None),
        ("GET", f"/api/v1/orgs/{org}/secrets/ci?version=1&wait=1", None),
        ("POST", "/api/v1/rotation/run", {"org": org}),
        ("POST", "/api/v1/rotation/run", {"org": org, "dryRun": True}),
    ]


def test_members_are_refused_everywhere(server: Server) -> None:
    put_under_management(server)
    rotate(server)
    server.add_member("mia@acme.test")
    _, member = server.pat_for("mia@acme.test", scope="vso.tokenadministration")
    for method, path, body in routes(server):
        r = server.client.request(method, path, json=body, headers=server.auth(member))
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert "value" not in r.text
    r = server.client.post("/api/v1/rotation/run", headers=server.auth(member))  # no org: none administered
    assert r.status_code == 400 and r.json()["error"]["code"] == "orgRequired"
    # an administrator whose token lacks vso.tokenadministration
    server.add_member("ann@acme.test", role="admin")
    _, narrow = server.pat_for("ann@acme.test", scope="vso.pats_manage")
    for method, path, body in routes(server):
        r = server.client.request(method, path, json=body, headers=server.auth(narrow))
        assert r.status_code == 403, (method, path, r.status_code, r.text)
    for method, path, body in routes(server):
        assert server.client.request(method, path, json=body).status_code == 401, (method, path)
    assert server.client.get(f"{creds(server)}/ci", headers=server.auth()).json()["version"] == 1


def test_another_orgs_admin_reaches_nothing_here(server: Server) -> None:
    put_under_management(server)
    rotate(server)
    boss = server.container.directory.add_org("Globex", "boss@globex.test").token.secret
    for method, path, body in routes(server):
        r = server.client.request(method, path, json=body, headers=server.auth(boss))
        assert r.status_code in (403, 404), (method, path, r.status_code, r.text)
        assert r.status_code != 200 and "value" not in r.text
    # their own org: empty, and their runs do not touch ours
    r = server.client.get("/api/v1/orgs/Globex/managed-credentials", headers=server.auth(boss))
    assert r.status_code == 200 and r.json() == {"value": [], "count": 0}
    r = server.client.get("/api/v1/orgs/Globex/secrets/ci", headers=server.auth(boss))
    assert r.status_code == 404 and r.json()["error"]["code"] == "credentialNotFound"
    r = server.client.post("/api/v1/rotation/run", headers=server.auth(boss))
    assert r.status_code == 200 and r.json()["org"] != server.org_id and r.json()["rotations"] == []
    s = server.client.get("/api/v1/orgs/Globex/rotation/status", headers=server.auth(boss)).json()
    assert s["credentials"] == [] and s["failing"] == 0
    # ... and Acme's admin does not see Globex's manual run at all (not even that it happened)
    mine = server.client.get(f"/api/v1/orgs/{server.org}/rotation/status", headers=server.auth()).json()
    assert mine["lastRun"] is None
    assert server.client.get(f"{creds(server)}/ci", headers=server.auth()).json()["version"] == 1


def test_two_orgs_may_both_name_a_builtin_secret_ci(server: Server) -> None:
    mine, _ = put_under_management(server)
    boss = server.container.directory.add_org("Globex", "boss@globex.test")
    issued = server.container.pats.create(
        OPERATOR,
        org="Globex",
        user="boss@globex.test",
        display_name="ci token",
        scope="vso.code",
    )
    body = {"name": "ci", "authorizationId": issued.record.authorization_id, "store": "builtin"}
    r = server.client.post(
        "/api/v1/orgs/Globex/managed-credentials", json=body, headers=server.auth(boss.token.secret)
    )
    assert r.status_code == 201, r.text
    assert r.json()["secretName"] != mine["secretName"] and r.json()["logicalSecretName"] == "ci"


def test_the_org_less_secret_route_reads_the_callers_org(server: Server) -> None:
    put_under_management(server)
    assert rotate(server).json()["result"] == "rotated"
    r = server.client.get("/api/v1/secrets/ci", headers=server.auth())
    assert r.status_code == 200, r.text
    assert server.client.get("/api/v1/validate", headers=server.auth(r.json()["value"])).status_code == 200
    etag = r.headers["ETag"]
    r2 = server.client.get("/api/v1/secrets/ci", headers={**server.auth(), "If-None-Match": etag})
    assert r2.status_code == 304
    assert server.client.get("/api/v1/secrets/ci").status_code == 401
    boss = server.container.directory.add_org("Globex", "boss@globex.test").token.secret
    r3 = server.client.get("/api/v1/secrets/ci", headers=server.auth(boss))
    assert r3.status_code == 404 and "value" not in r3.text


def test_a_narrow_admin_token_can_neither_mint_nor_read_a_wider_credential(server: Server) -> None:
    put_under_management(server)  # a vso.code PAT
    narrow = admin_pat(server, "second-admin@acme.test")  # vso.tokenadministration only
    r = rotate(server, token=narrow)
    assert r.status_code == 403 and r.json()["error"]["code"] == "scopeEscalation", r.text
    assert rotate(server).json()["result"] == "rotated"  # the full-scope admin may
    r = server.client.get(secret_url(server), headers=server.auth(narrow))
    assert r.status_code == 403 and r.json()["error"]["code"] == "scopeEscalation", r.text
    assert "value" not in r.text


def test_hostile_ado_fields_are_400s_not_500s(server: Server) -> None:
    base = {"name": "x", "authorizationId": "00000000-0000-0000-0000-000000000001", "store": "builtin"}
    for extra in (
        {"adoUrl": "http://[::1", "adoOrg": "o", "adoCredential": "abc"},
        {"adoUrl": "http://a..b", "adoOrg": "o", "adoCredential": "abc"},
        {"adoUrl": "http://" + "a" * 300 + ".example", "adoOrg": "o", "adoCredential": "abc"},
        {"adoUrl": "http://bücher.example", "adoOrg": "o", "adoCredential": "abc"},
        {"adoUrl": "https://ado.example", "adoOrg": "o", "adoCredential": "ab\u00a0cd"},
        {"adoUrl": "https://ado.example", "adoOrg": "o", "adoCredential": "té"},
    ):
        r = server.client.post(creds(server), json={**base, "source": "ado", **extra}, headers=server.auth())
        assert r.status_code == 400, (extra, r.status_code, r.text)
        assert r.json()["error"]["code"] in ("invalidUrl", "invalidCredential"), r.text


def test_an_ado_url_on_loopback_is_refused_unless_allowed(server: Server) -> None:
    body = {
        "name": "x",
        "authorizationId": "00000000-0000-0000-0000-000000000001",
        "store": "builtin",
        "source": "ado",
        "adoUrl": "http://127.0.0.1:1",
        "adoOrg": "o",
        "adoCredential": "abc",
    }
    r = server.client.post(creds(server), json=body, headers=server.auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == "targetRefused", r.text
    assert "TOKENWARDEN_ADO_ALLOW" in r.json()["error"]["message"]
