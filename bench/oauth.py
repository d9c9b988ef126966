"""Issue 11: the OAuth endpoints over HTTP and JWT validation in process.

HTTP (:func:`http`): ``tokenwarden serve --workers 2`` on SQLite (and on PostgreSQL when one is
reachable) and, beside it, the raw ASGI hello of ``bench/hello_asgi.py`` served by the same
uvicorn with the same worker count — the ceiling. wrk (as ``bench/http_load.py``) loads each
target in turn, round after round, so every figure has a ceiling measured minutes from it:

* ``POST /oauth2/introspect`` of a JWT access token, the caller authenticated (a) with HTTP
  Basic client credentials of a confidential client, (b) with a Bearer PAT carrying
  ``tokenwarden.introspect``;
* ``POST /oauth2/token`` with ``client_credentials`` (each one writes an access-token record
  and an audit entry) and with ``refresh_token`` (each one rotates: marks the old token,
  writes two records and an invalidation event). The refresh load is one chain per connection:
  a Lua pool per wrk thread hands each answer's new refresh token to the next request.

Every token comes from the real ``/oauth2/token``; the codes the refresh chains start from are
consented through the authorization server's service (the browser pages are not the point).

In process (:func:`validations`): one validator holding N JWT access tokens (issued by the
token endpoint's service) and N PATs, validated at random, alternating JWT and PAT runs. The
strings are fresh copies on every run — like tokens parsed from requests — so nothing rides on
Python's cached ``str`` hash.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import os
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from bench.http_load import _free_port, ensure_wrk

ROOT = Path(__file__).resolve().parent.parent
EXE = str(Path(sys.executable).parent / "tokenwarden")
ADMIN_DSN = os.environ.get("TW_BENCH_POSTGRES_DSN", "host=127.0.0.1 user=postgres dbname=postgres")
REDIRECT = "https://app.example/cb"
FORM = "application/x-www-form-urlencoded"

STATIC_LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "{form}"
wrk.headers["Authorization"] = {auth}
"""

# One refresh chain per connection: each thread starts with a pool of refresh tokens (its
# connections' and half as many spares); a request takes one, its answer puts the successor
# back. wrk now and then sends a request it never sees answered (about 1 in 700 here, no socket
# error counted): the spares keep that from leaving a connection without a chain.
REFRESH_LUA = """
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  pool = {}
  for line in io.lines(args[1] .. "-" .. id .. ".txt") do table.insert(pool, line) end
  auth = args[2]
end
function request()
  local t = table.remove(pool) or "twr_exhausted"
  return wrk.format("POST", nil, {["Content-Type"] = "FORM", ["Authorization"] = auth},
                    "grant_type=refresh_token&refresh_token=" .. t)
end
function response(status, headers, body)
  local t = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if t then table.insert(pool, t) end
end
""".replace("FORM", FORM)


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _lua_str(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII is a valid Lua string literal


def _wait_healthy(base: str, path: str = "/health", method: str = "GET") -> None:
    for _ in range(300):
        try:
            if httpx.request(method, base + path, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base} did not come up")


class Deployment:
    """A database, an in-process container on it (set-up only) and ``tokenwarden serve``."""

    def __init__(self, backend: str, workers: int, server: str = "uvicorn") -> None:
        from tokenwarden.bootstrap import build
        from tokenwarden.settings import Settings

        self.backend = backend
        self.tmp = tempfile.TemporaryDirectory(prefix="tw-oauth-")
        self.dbname: str | None = None
        if backend == "postgresql":
            import psycopg

            self.dbname = f"tw_bench_{secrets.token_hex(4)}"
            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.dbname}"
        else:
            url = f"sqlite:///{self.tmp.name}/tw.db"
        self.env = {
            **os.environ,
            "TOKENWARDEN_DATA_DIR": f"{self.tmp.name}/data",
            "TOKENWARDEN_DATABASE_URL": url,
            "TOKENWARDEN_PEPPERS": f"p1:{secrets.token_hex(32)}",
            "TOKENWARDEN_LOG_LEVEL": os.environ.get("TW_BENCH_LOG_LEVEL", "warning"),
        }
        settings = Settings(
            database_url=url, peppers=self.env["TOKENWARDEN_PEPPERS"], data_dir=Path(self.tmp.name) / "data"
        )
        self.c = build(settings)
        self.c.database.upgrade()
        init = self.c.directory.initialize("bench", "bench@example.com")
        self.admin_upn = init.admin.upn
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.server = subprocess.Popen(
            [EXE, "serve", "--port", str(port), "--workers", str(workers), "--server", server],
            env=self.env,
            cwd=self.tmp.name,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_healthy(self.base)
        self.http = httpx.Client(base_url=self.base, timeout=30)

    def close(self) -> None:
        self.http.close()
        _stop(self.server)
        self.c.database.dispose()
        if self.dbname is not None:
            import psycopg

            with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        self.tmp.cleanup()

    # ---------------------------------------------------------------- set-up through the services
    def client(self, grants: list[str], scope: str) -> tuple[str, str]:
        from tokenwarden.services.common import OPERATOR

        uris = [REDIRECT] if "authorization_code" in grants else []
        reg = self.c.clients.register(
            OPERATOR,
            "bench",
            name=f"bench-{secrets.token_hex(3)}",
            redirect_uris=uris,
            grants=grants,
            scope=scope,
        )
        assert reg.secret is not None
        return reg.client.client_id, reg.secret

    def pat(self, scope: str) -> str:
        from tokenwarden.services.common import OPERATOR

        issued = self.c.pats.create(
            OPERATOR, org="bench", user=self.admin_upn, display_name="bench", scope=scope
        )
        return issued.secret

    def token(self, auth: str, **form: str) -> dict[str, Any]:
        r = self.http.post("/oauth2/token", data=form, headers={"Authorization": auth})
        if r.status_code != 200:
            raise RuntimeError(f"/oauth2/token: {r.status_code} {r.text}")
        body: dict[str, Any] = r.json()
        return body

    def code(self, client_id: str) -> str:
        """A consented authorization code (the authorization server's service, as the consent
        page would call it)."""
        from tokenwarden.services.common import OPERATOR
        from tokenwarden.services.oauth.requests import HttpRequest
        from tokenwarden.services.oauth.server import ConsentRequest

        user = self.c.directory.get_member(OPERATOR, "bench", self.admin_upn)[0]
        query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "s"}
        url = self.base + "/oauth2/authorize?" + urlencode(query)
        q = {k: [v] for k, v in query.items()}
        consent = self.c.oauth.validate_authorization(HttpRequest("GET", url, {}, query=q), self.base, user)
        if not isinstance(consent, ConsentRequest):
            raise RuntimeError(f"authorize: {consent}")
        status, _, headers = self.c.oauth.decide(
            HttpRequest("POST", url, {}, query=q, form=q), self.base, user, True, None
        )
        if status != 302:
            raise RuntimeError(f"consent: {status}")
        return parse_qs(urlsplit(dict(headers)["Location"]).query)["code"][0]

    def refresh_chains(self, client_id: str, secret: str, n: int) -> list[str]:
        auth = _basic(client_id, secret)
        out = []
        for _ in range(n):
            body = self.token(
                auth, grant_type="authorization_code", code=self.code(client_id), redirect_uri=REDIRECT
            )
            out.append(str(body["refresh_token"]))
        return out


@contextmanager
def hello_server(workers: int, server: str = "uvicorn") -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.hello_asgi", str(port), str(workers), server],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, "/", "POST")
        yield base
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server we started: SIGTERM, then SIGKILL for it and its workers if it hangs."""
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=10)


def _wrk(
    wrk: str, url: str, script: Path, duration: float, connections: int, args: list[str]
) -> dict[str, Any]:
    out = subprocess.run(
        [
            wrk,
            "-t2",
            f"-c{connections}",
            f"-d{round(duration)}s",
            "--timeout",
            "30s",  # wrk's 2 s default drops slow writes' connections (and a refresh chain with each)
            "-s",
            str(script),
            url,
            *(["--", *args] if args else []),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if total is None:
        raise RuntimeError(f"wrk said: {out}")
    seconds = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    failed = int(bad.group(1)) if bad else 0
    return {
        "ok_per_s": (int(total.group(1)) - failed) / seconds,
        "failed": failed,
        "socket_errors": errors.group(1) if errors else None,
    }


def _check(r: httpx.Response, what: str) -> None:
    if r.status_code != 200 or r.json().get("active") is not True:
        raise RuntimeError(f"{what}: {r.status_code} {r.text}")


def http(
    backends: tuple[str, ...] = ("sqlite", "postgresql"),
    duration: float = 5,
    repeats: int = 3,
    connections: int = 64,
    workers: int = 2,
) -> dict[str, Any]:
    wrk = ensure_wrk()
    if wrk is None:
        return {"skipped": "wrk is not installed and could not be installed"}
    results: dict[str, Any] = {"workers": workers, "connections": connections, "duration_s": duration}
    for backend in backends:
        if backend == "postgresql" and not _postgres_up():
            results[backend] = {"skipped": "no PostgreSQL at " + ADMIN_DSN}
            continue
        results[backend] = _http_one(wrk, backend, duration, repeats, connections, workers)
    return results


def _postgres_up() -> bool:
    try:
        import psycopg

        with psycopg.connect(ADMIN_DSN, connect_timeout=3):
            return True
    except Exception:
        return False


def _http_one(
    wrk: str, backend: str, duration: float, repeats: int, connections: int, workers: int
) -> dict[str, Any]:
    dep = Deployment(backend, workers)
    try:
        with hello_server(workers) as hello, tempfile.TemporaryDirectory(prefix="tw-wrk-") as tmp:
            cc_id, cc_secret = dep.client(["client_credentials"], "vso.code vso.build")
            cc_auth = _basic(cc_id, cc_secret)
            jwt = str(dep.token(cc_auth, grant_type="client_credentials", scope="vso.code")["access_token"])
            introspector_pat = dep.pat("tokenwarden.introspect")
            ac_id, ac_secret = dep.client(["authorization_code", "refresh_token"], "vso.code vso.build")
            body = "token=" + jwt
            _check(
                dep.http.post("/oauth2/introspect", data={"token": jwt}, headers={"Authorization": cc_auth}),
                "basic",
            )
            _check(
                dep.http.post(
                    "/oauth2/introspect",
                    data={"token": jwt},
                    headers={"Authorization": f"Bearer {introspector_pat}"},
                ),
                "bearer",
            )
            scripts: dict[str, tuple[str, str]] = {}

            def static(name: str, base: str, path: str, form: str, auth: str) -> None:
                script = Path(tmp) / f"{name}.lua"
                script.write_text(STATIC_LUA.format(body=_lua_str(form), form=FORM, auth=_lua_str(auth)))
                scripts[name] = (base + path, str(script))

            static("hello", hello, "/", body, cc_auth)
            static("introspect_basic", dep.base, "/oauth2/introspect", body, cc_auth)
            static("introspect_bearer", dep.base, "/oauth2/introspect", body, f"Bearer {introspector_pat}")
            static(
                "token_client_credentials",
                dep.base,
                "/oauth2/token",
                "grant_type=client_credentials&scope=vso.code",
                cc_auth,
            )
            refresh_script = Path(tmp) / "refresh.lua"
            refresh_script.write_text(REFRESH_LUA)
            # warm-up: every worker caches the JWT, the PAT and the client
            for name in ("hello", "introspect_basic", "introspect_bearer"):
                url, script = scripts[name]
                _wrk(wrk, url, Path(script), 1, connections, [])
            runs: dict[str, list[dict[str, Any]]] = {n: [] for n in [*scripts, "token_refresh"]}
            for _ in range(repeats):
                for name, (url, script) in scripts.items():
                    runs[name].append(_wrk(wrk, url, Path(script), duration, connections, []))
                chains = dep.refresh_chains(ac_id, ac_secret, connections + connections // 2)
                half = len(chains) // 2
                for i, part in enumerate((chains[:half], chains[half:])):
                    (Path(tmp) / f"chains-{i}.txt").write_text("\n".join(part) + "\n")
                runs["token_refresh"].append(
                    _wrk(
                        wrk,
                        dep.base + "/oauth2/token",
                        refresh_script,
                        duration,
                        connections,
                        [str(Path(tmp) / "chains"), _basic(ac_id, ac_secret)],
                    )
                )
            out: dict[str, Any] = {}
            ceiling = statistics.median(r["ok_per_s"] for r in runs["hello"])
            for name, rs in runs.items():
                rates = [round(r["ok_per_s"]) for r in rs]
                med = statistics.median(rates)
                out[name] = {
                    "median_per_s": round(med),
                    "runs_per_s": rates,
                    "failed": sum(r["failed"] for r in rs),
                    "socket_errors": [r["socket_errors"] for r in rs if r["socket_errors"]],
                    "of_ceiling": round(med / ceiling, 3),
                }
            out["jwt_length"] = len(jwt)
            return out
    finally:
        dep.close()


# ---------------------------------------------------------------------------- in process


def validations(n_tokens: int = 10_000, calls: int = 200_000, repeats: int = 9) -> dict[str, Any]:
    """Validations/s of cached JWT access tokens against cached PATs, one validator, one core."""
    from tokenwarden.bootstrap import memory_container
    from tokenwarden.services.common import OPERATOR
    from tokenwarden.services.oauth.requests import HttpRequest
    from tokenwarden.settings import Settings

    c = memory_container(Settings(staleness_seconds=1.0))
    org_id = c.directory.initialize("bench", "bench@example.com").org.id
    reg = c.clients.register(
        OPERATOR, "bench", name="svc", grants=["client_credentials"], scope="vso.code vso.build"
    )
    assert reg.secret is not None
    headers = {"content-type": FORM, "authorization": _basic(reg.client.client_id, reg.secret)}
    issuer = "http://127.0.0.1:8080"
    form = {"grant_type": ["client_credentials"], "scope": ["vso.code"]}
    jwts, pats = [], []
    for i in range(n_tokens):
        status, body, _ = c.oauth.token(
            HttpRequest("POST", issuer + "/oauth2/token", headers, form=form), issuer
        )
        if status != 200:
            raise RuntimeError(f"token: {status} {body}")
        jwts.append(str((body if isinstance(body, dict) else json.loads(body))["access_token"]))
        pats.append(
            c.pats.create(
                OPERATOR, org="bench", user="bench@example.com", display_name=f"p{i}", scope="vso.code"
            ).secret
        )
    c.start_background()  # the real sync thread runs, as in a server
    validate = c.validator.validate
    for t in jwts + pats:  # the one cache miss each (a JWT's signature is verified here)
        validate(t, "vso.code", org_id, "10.0.0.1")
    rng = random.Random(42)
    picks = [rng.randrange(n_tokens) for _ in range(calls)]

    def one(tokens: list[str]) -> float:
        sample = [tokens[i].encode().decode() for i in picks]  # fresh strings, as parsed from requests
        gc.collect()
        t0 = time.perf_counter()
        for s in sample:
            validate(s, "vso.code", org_id, "10.0.0.1")
        rate = calls / (time.perf_counter() - t0)
        del sample
        return rate

    rates: dict[str, list[float]] = {"pat": [], "jwt": []}
    for _ in range(repeats):
        rates["pat"].append(one(pats))
        rates["jwt"].append(one(jwts))
    c.close()
    pat, jwt = statistics.median(rates["pat"]), statistics.median(rates["jwt"])
    return {
        "tokens_each": n_tokens,
        "calls": calls,
        "jwt_length": len(jwts[0]),
        "pat_median_per_s": round(pat),
        "pat_runs_per_s": [round(r) for r in rates["pat"]],
        "jwt_median_per_s": round(jwt),
        "jwt_runs_per_s": [round(r) for r in rates["jwt"]],
        "jwt_over_pat": round(jwt / pat, 3),
    }


def run(quick: bool = False, http_too: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "validations": validations(
            1_000 if quick else 10_000, 50_000 if quick else 200_000, 3 if quick else 9
        )
    }
    if http_too:
        out["http"] = http(duration=2 if quick else 5, repeats=1 if quick else 3)
    return out


if __name__ == "__main__":  # python -m bench.oauth [--quick] [validations|http|sqlite|postgresql]
    sys.path.insert(0, str(ROOT))
    quick = "--quick" in sys.argv
    what = [a for a in sys.argv[1:] if not a.startswith("--")]
    if what == ["validations"]:
        result: dict[str, Any] = run(quick, http_too=False)["validations"]
    elif what in (["http"], ["sqlite"], ["postgresql"]):
        backends = ("sqlite", "postgresql") if what == ["http"] else (what[0],)
        result = http(backends, duration=2 if quick else 5, repeats=1 if quick else 3)
    else:
        result = run(quick)
    print(json.dumps(result, indent=2))
