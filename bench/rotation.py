"""Issue 13: rotation of N managed credentials (local PATs as the source) into the built-in store
and into OpenBao — each figure beside a ceiling measured in the same run.

* unpaced: ``RotationService.run`` over N due credentials with ``rotation_batch_pause_seconds=0``;
  per-rotation times from the run's ``check`` hook (called before each rotation).
* paced: the same with the default settings (batches of 10, 2 s between them). The pauses are not
  slept: a recording ``sleep`` is injected, the work is timed, and the wall time is work + the sum
  of the recorded pauses (= ``(ceil(N / batch) - 1) * pause``).
* ceiling: the raw operations one rotation performs, in a loop over N without the rotation
  service (no journal, lease, rotation audit or alert): ``PatService.create`` of the successor,
  ``store.write`` + ``read`` + ``promote``, ``PatService.revoke`` of the predecessor. The journal
  overhead per rotation is (rotation time - raw time) / N.

Each part runs in its own organization of one SQLite database (WAL) in a temporary directory;
OpenBao is a real ``bao server -dev`` (KV v2 over hvac) on a free loopback port.
"""

from __future__ import annotations

import math
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

BAO = Path(sys.executable).parent / "bao"
ROOT_TOKEN = "root"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _bao(log_dir: Path) -> Iterator[str]:
    """A real OpenBao dev server (in-memory storage, KV v2 at ``secret/``), stopped afterwards."""
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (log_dir / "bao.log").open("wb")
    proc = subprocess.Popen(
        [
            str(BAO),
            "server",
            "-dev",
            f"-dev-root-token-id={ROOT_TOKEN}",
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
                raise RuntimeError("the OpenBao dev server did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass
class _World:
    container: Any
    settings: Any
    user_id: str
    commits: list[int]
    statements: list[int]

    def service(self, sleep: Callable[[float], None]) -> Any:
        from tokenwarden.bootstrap import wire_rotation

        c = self.container
        return wire_rotation(self.settings, c.uow, c.clock, c.pats, c.hasher, c.stores, sleep=sleep)


def _world(tmp: Path, **settings: Any) -> _World:
    from sqlalchemy import event

    from tokenwarden.bootstrap import build
    from tokenwarden.services.common import OPERATOR
    from tokenwarden.settings import Settings

    data = tmp / "data"
    s = Settings(
        data_dir=data, database_url=f"sqlite:///{data / 'tw.db'}", scheduler_enabled=False, **settings
    )
    c = build(s, create_pepper=True)
    c.database.upgrade()
    c.directory.initialize("Org0", "admin@acme.test")
    user = c.directory.add_user(OPERATOR, "Org0", "ci-bot@acme.test")
    commits, statements = [0], [0]

    def count_commit(_conn: Any) -> None:
        commits[0] += 1

    def count_statement(*_args: Any) -> None:
        statements[0] += 1

    event.listen(c.database.engine, "commit", count_commit)
    event.listen(c.database.engine, "before_cursor_execute", count_statement)
    return _World(c, s, user.user.id, commits, statements)


def _seed(w: _World, org: str, n: int, store: str) -> None:
    """``n`` managed credentials in ``org``, each a PAT of ci-bot expiring in 3 days (all due:
    the threshold is 7)."""
    from tokenwarden.services.common import OPERATOR
    from tokenwarden.services.managed import NewCredential

    c = w.container
    if org != "Org0":
        c.directory.add_org(org, "admin@acme.test")
        c.directory.add_user(OPERATOR, org, "ci-bot@acme.test")
    valid_to = c.clock.now() + timedelta(days=3)
    for i in range(n):
        issued = c.pats.create(
            OPERATOR,
            org=org,
            user="ci-bot@acme.test",
            display_name=f"{org}-cred-{i} token",
            scope="vso.code vso.build",
            valid_to=valid_to,
        )
        c.managed.add(
            OPERATOR,
            org,
            NewCredential(
                name=f"{org}-cred-{i}",
                authorization_id=issued.record.authorization_id,
                store=store,
                contacts=["ops@acme.test"],
            ),
        )


def _org_id(w: _World, org: str) -> str:
    with w.container.uow() as uow:
        return str(uow.orgs.by_name(org).id)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _rotate(w: _World, org: str, n: int, *, sleep: Callable[[float], None]) -> dict[str, Any]:
    """One ``RotationService.run`` over the organization; times each rotation by its check hook."""
    service = w.service(sleep)
    org_id = _org_id(w, org)
    marks: list[float] = []
    before, statements = w.commits[0], w.statements[0]
    t0 = time.perf_counter()
    report = service.run(org_id=org_id, check=lambda: marks.append(time.perf_counter()))
    elapsed = time.perf_counter() - t0
    commits, statements = w.commits[0] - before, w.statements[0] - statements
    counts = report.counts()
    assert counts["rotated"] == n, counts
    assert counts["failed"] == 0, counts
    ends = [*marks[1:], t0 + elapsed]
    each = [(e - s) * 1000 for s, e in zip(marks, ends, strict=True)]
    tenth = max(1, n // 10)
    return {
        "rotated": counts["rotated"],
        "seconds": round(elapsed, 2),
        "per_second": round(n / elapsed, 1),
        "ms_per_rotation": round(elapsed * 1000 / n, 2),
        "ms_p50": round(statistics.median(each), 2),
        "ms_p99": round(_pct(each, 0.99), 2),
        "ms_p50_first_tenth": round(statistics.median(each[:tenth]), 2),
        "ms_p50_last_tenth": round(statistics.median(each[-tenth:]), 2),
        "sqlite_commits_per_rotation": round(commits / n, 1),
        "sql_statements_per_rotation": round(statements / n, 1),
    }


class _Raw:
    """The ceiling: what a rotation does to the source and the store, nothing else. Run in two
    halves, one before and one after the rotation it is compared with, so both see the same load."""

    def __init__(self, w: _World, org: str, store_kind: str) -> None:
        from tokenwarden.domain.managed import StoreKind

        self._w = w
        self._store = w.container.stores(StoreKind(store_kind))
        self._org_id = _org_id(w, org)
        with w.container.uow() as uow:
            self._creds = uow.managed.all(self._org_id)
        self.n = len(self._creds)
        self._done = 0
        self._seconds = 0.0
        self._commits = self._statements = 0

    def part(self, count: int) -> None:
        from tokenwarden.ports.secrets import SecretMeta
        from tokenwarden.services.local_source import ROTATION

        c, w, store = self._w.container, self._w, self._store
        creds = self._creds[self._done : self._done + count]
        self._done += len(creds)
        before, statements = w.commits[0], w.statements[0]
        t0 = time.perf_counter()
        for cred in creds:
            issued = c.pats.create(
                ROTATION,
                org=self._org_id,
                user=w.user_id,
                display_name=f"{cred.display_base}-raw",
                scope=list(cred.scopes),
                valid_to=c.clock.now() + timedelta(days=30),
            )
            meta = SecretMeta(expires_at=issued.record.valid_to, tags={"managed-by": "tokenwarden"})
            version = store.write(cred.secret_name, issued.secret, meta)
            got = store.read(cred.secret_name, version)
            assert got is not None
            assert got.value == issued.secret
            store.promote(cred.secret_name, version)
            c.pats.revoke(ROTATION, cred.authorization_id, reason="rotated")
        self._seconds += time.perf_counter() - t0
        self._commits += w.commits[0] - before
        self._statements += w.statements[0] - statements

    def result(self) -> dict[str, Any]:
        n = self._done
        return {
            "operations": n,
            "seconds": round(self._seconds, 2),
            "per_second": round(n / self._seconds, 1),
            "ms_per_rotation": round(self._seconds * 1000 / n, 2),
            "sqlite_commits_per_rotation": round(self._commits / n, 1),
            "sql_statements_per_rotation": round(self._statements / n, 1),
        }


def _compare(w: _World, raw_org: str, rot_org: str, store_kind: str, n: int) -> dict[str, Any]:
    """Raw half, the rotation run, raw half; the rotation beside its ceiling."""
    raw = _Raw(w, raw_org, store_kind)
    raw.part(n // 2)
    rotation = _rotate(w, rot_org, n, sleep=lambda s: None)
    raw.part(n - n // 2)
    ceiling = raw.result()
    return {"ceiling_raw_ops": ceiling, "unpaced": rotation, "journal_overhead": _overhead(rotation, ceiling)}


def _overhead(rot: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "ms_per_rotation": round(rot["ms_per_rotation"] - raw["ms_per_rotation"], 2),
        "rotation_over_raw": round(rot["ms_per_rotation"] / raw["ms_per_rotation"], 2),
    }


def run(quick: bool = False, vault_too: bool = True) -> dict[str, Any]:
    n = 100 if quick else 1_000
    n_vault = 50 if quick else 1_000
    from tokenwarden.settings import Settings

    defaults = Settings()
    batch, pause = defaults.rotation_batch_size, defaults.rotation_batch_pause_seconds
    out: dict[str, Any] = {"credentials": n, "source": "local (tokenwarden PATs)", "database": "SQLite (WAL)"}
    with tempfile.TemporaryDirectory(prefix="tw-rot-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        url = stack.enter_context(_bao(tmp)) if vault_too and BAO.exists() else None
        extra = {"vault_addr": url, "vault_token": ROOT_TOKEN} if url else {}
        w = _world(tmp, **extra)
        stack.callback(w.container.close)
        t0 = time.perf_counter()
        _seed(w, "Org0", n, "builtin")  # raw ceiling
        _seed(w, "Org1", n, "builtin")  # unpaced
        _seed(w, "Org2", n, "builtin")  # paced
        if url:
            _seed(w, "Org3", n_vault, "vault")  # raw ceiling
            _seed(w, "Org4", n_vault, "vault")  # unpaced
        out["seconds_to_seed"] = round(time.perf_counter() - t0, 1)
        out["builtin"] = _compare(w, "Org0", "Org1", "builtin", n)
        sleeps: list[float] = []
        paced = _rotate(w, "Org2", n, sleep=sleeps.append)
        paused = sum(sleeps)
        expected = (math.ceil(n / batch) - 1) * pause
        assert math.isclose(paused, expected), (paused, expected)
        out["builtin"]["paced_default"] = {
            "batch_size": batch,
            "pause_seconds": pause,
            "pauses": len(sleeps),
            "work_seconds_measured": paced["seconds"],
            "pause_seconds_computed_not_slept": round(paused, 1),
            "wall_seconds": round(paced["seconds"] + paused, 1),
            "formula": "wall = measured work + (ceil(N / batch) - 1) * pause (pauses recorded, not slept)",
            "rotation": paced,
        }
        if url:
            out["vault"] = {
                "credentials": n_vault,
                "server": "OpenBao dev server (in-memory storage), KV v2 via hvac, loopback",
                **_compare(w, "Org3", "Org4", "vault", n_vault),
            }
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--quick" in sys.argv, vault_too="--no-vault" not in sys.argv), indent=2))
