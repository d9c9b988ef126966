"""Validated requests per second over HTTP: `tokenwarden serve --workers 2` on SQLite, loaded by wrk."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

WRK_SCRIPT = """
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer {token}"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_wrk() -> str | None:
    """wrk from Debian's package; installed on demand when running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, check=False)
    return shutil.which("wrk")


def run(duration: int = 10, connections: int = 64, repeats: int = 3, workers: int = 2) -> dict[str, Any]:
    wrk = ensure_wrk()
    if wrk is None:
        return {"skipped": "wrk is not installed and could not be installed"}
    exe = str(Path(sys.executable).parent / "tokenwarden")
    with tempfile.TemporaryDirectory(prefix="tw-bench-") as tmp:
        env = {**os.environ, "TOKENWARDEN_DATA_DIR": f"{tmp}/data"}
        env.pop("TOKENWARDEN_DATABASE_URL", None)
        init = subprocess.run(
            [exe, "init", "--org", "bench", "--admin", "bench@example.com", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp,
        )
        token = json.loads(init.stdout)["token"]
        port = _free_port()
        server = subprocess.Popen(
            [exe, "serve", "--port", str(port), "--workers", str(workers)],
            env={**env, "TOKENWARDEN_LOG_LEVEL": "warning"},
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            script = Path(tmp) / "auth.lua"
            script.write_text(WRK_SCRIPT.format(token=token))
            results = {}
            for path in ("/api/v1/validate?scope=vso.code&org=bench", "/api/v1/orgs/bench/pats?top=1"):
                rates = []
                for _ in range(repeats):
                    out = subprocess.run(
                        [wrk, "-t2", f"-c{connections}", f"-d{duration}s", "-s", str(script), base + path],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
                    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                    if bad:
                        raise RuntimeError(f"{path}: {bad.group(1)} failed responses")
                    rates.append(float(m.group(1)) if m else 0.0)
                results[path] = {"median_per_s": round(statistics.median(rates)), "runs_per_s": rates}
            return {"workers": workers, "connections": connections, "duration_s": duration, **results}
        finally:
            server.terminate()
            server.wait(timeout=10)
