"""HTTP doors against their ceiling, per HTTP server: uvicorn and granian, same run.

For each server, ``tokenwarden serve --workers 2 --server S`` (SQLite) and the raw ASGI hello
of ``bench/hello_asgi.py`` served by the same server with the same workers. wrk (2 threads,
64 connections) loads, round after round, the hello as a ``GET`` with a Bearer header (the
ceiling of ``GET /api/v1/validate``) and as a ``POST`` of the introspection form (the ceiling
of ``POST /oauth2/introspect``), then both doors; medians of the rounds. Then the latency at
70 % of each door's peak: wrk with a fixed delay per connection (an open-ish loop at that
rate), its percentiles.

``python -m bench --only http-servers`` (part of ``make bench``).
"""

from __future__ import annotations

import re
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.http_load import ensure_wrk
from bench.oauth import STATIC_LUA, Deployment, _basic, _check, _lua_str, _wrk, hello_server

SERVERS = ("uvicorn", "granian")
GET_LUA = """
wrk.method = "GET"
wrk.headers["Authorization"] = {auth}
"""
DELAY_LUA = """
function delay()
  return {delay_ms}
end
"""
_PERCENTILE = re.compile(r"^\s+(50|75|90|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_SCALE = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency(wrk: str, url: str, script: Path, rate: float, duration: float) -> dict[str, Any]:
    """wrk at about ``rate`` requests/s: connections that each wait 10 ms between requests."""
    import subprocess

    delay_ms = 10
    connections = max(2, round(rate * delay_ms / 1000))
    paced = script.with_suffix(".paced.lua")
    paced.write_text(script.read_text() + DELAY_LUA.format(delay_ms=delay_ms))
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{round(duration)}s", "--latency", "-s", str(paced), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if total is None:
        raise RuntimeError(f"wrk said: {out}")
    seconds = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    ms = {f"p{p}_ms": round(float(v) * _SCALE[u], 2) for p, v, u in _PERCENTILE.findall(out)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "target_per_s": round(rate),
        "achieved_per_s": round(int(total.group(1)) / seconds),
        "connections": connections,
        "failed": int(bad.group(1)) if bad else 0,
        **ms,
    }


def _one(
    wrk: str, server: str, duration: float, rounds: int, connections: int, workers: int
) -> dict[str, Any]:
    dep = Deployment("sqlite", workers, server)
    try:
        with hello_server(workers, server) as hello, tempfile.TemporaryDirectory(prefix="tw-srv-") as tmp:
            cc_id, cc_secret = dep.client(["client_credentials"], "vso.code")
            cc_auth = _basic(cc_id, cc_secret)
            jwt = str(dep.token(cc_auth, grant_type="client_credentials", scope="vso.code")["access_token"])
            pat = dep.pat("vso.code")
            _check(
                dep.http.post("/oauth2/introspect", data={"token": jwt}, headers={"Authorization": cc_auth}),
                "introspect",
            )
            validate_path = "/api/v1/validate?scope=vso.code&org=bench"
            r = dep.http.get(validate_path, headers={"Authorization": f"Bearer {pat}"})
            if r.status_code != 200:
                raise RuntimeError(f"validate: {r.status_code} {r.text}")
            bearer = _lua_str(f"Bearer {pat}")
            form = "token=" + jwt
            scripts: dict[str, tuple[str, Path]] = {}

            def script(name: str, url: str, text: str) -> None:
                path = Path(tmp) / f"{name}.lua"
                path.write_text(text)
                scripts[name] = (url, path)

            script("hello_get", hello + "/", GET_LUA.format(auth=bearer))
            script("validate", dep.base + validate_path, GET_LUA.format(auth=bearer))
            post = STATIC_LUA.format(
                body=_lua_str(form), form="application/x-www-form-urlencoded", auth=_lua_str(cc_auth)
            )
            script("hello_post", hello + "/", post)
            script("introspect", dep.base + "/oauth2/introspect", post)
            for url, path in scripts.values():  # warm-up: every worker caches the tokens
                _wrk(wrk, url, path, 1, connections, [])
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in scripts}
            for _ in range(rounds):
                for name, (url, path) in scripts.items():
                    runs[name].append(_wrk(wrk, url, path, duration, connections, []))
            out: dict[str, Any] = {}
            for name, rs in runs.items():
                rates = [round(x["ok_per_s"]) for x in rs]
                out[name] = {
                    "median_per_s": round(statistics.median(rates)),
                    "runs_per_s": rates,
                    "failed": sum(x["failed"] for x in rs),
                }
            for door, ceiling in (("validate", "hello_get"), ("introspect", "hello_post")):
                out[door]["of_ceiling"] = round(out[door]["median_per_s"] / out[ceiling]["median_per_s"], 3)
                url, path = scripts[door]
                out[door]["at_70_percent"] = _latency(
                    wrk, url, path, 0.7 * out[door]["median_per_s"], duration
                )
            return out
    finally:
        dep.close()


def run(quick: bool = False, servers: tuple[str, ...] = SERVERS) -> dict[str, Any]:
    wrk = ensure_wrk()
    if wrk is None:
        return {"skipped": "wrk is not installed and could not be installed"}
    duration, rounds = (2.0, 1) if quick else (5.0, 3)
    results: dict[str, Any] = {"workers": 2, "connections": 64, "duration_s": duration, "rounds": rounds}
    for server in servers:
        results[server] = _one(wrk, server, duration, rounds, 64, 2)
    return results


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
