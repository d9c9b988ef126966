"""A loopback HTTP proxy in front of a real server that injects faults by rule: answer with a
status instead of forwarding, rewrite a forwarded response, or run a hook (e.g. kill -9 the
client process) at the moment a request arrives. Everything not matched is forwarded as is."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.support.ports import free_port

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


@dataclass
class Rule:
    """Matches ``method`` and a regex on the path (query included); ``times`` uses (None: always).
    ``status``: answer that instead of forwarding; ``rewrite``: change a forwarded body;
    ``hook``: called first (it may kill the client, in which case nothing else matters)."""

    method: str
    path: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    rewrite: Callable[[bytes], bytes] | None = None
    hook: Callable[[], None] | None = None
    times: int | None = 1

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.times is None or self.times > 0)
            and method == self.method
            and re.search(self.path, path) is not None
        )


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.seen: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self.url = ""

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.seen.clear()

    def _take(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rule = proxy._take(self.command, self.path)
                if rule is not None and rule.hook is not None:
                    rule.hook()
                if rule is not None and rule.status is not None:
                    self._answer(rule.status, rule.headers, rule.body)
                    proxy.seen.append((self.command, self.path, rule.status))
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                try:
                    r = httpx.request(
                        self.command, proxy.upstream + self.path, headers=headers, content=body, timeout=30
                    )
                except httpx.HTTPError:
                    self._answer(502, {}, b"upstream unreachable")
                    return
                content = r.content
                if rule is not None and rule.rewrite is not None:
                    content = rule.rewrite(content)
                out = {k: v for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP}
                self._answer(r.status_code, out, content)
                proxy.seen.append((self.command, self.path, r.status_code))

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was killed

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream)
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), proxy.handler())
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{port}"
    thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
