"""The webhook channel against a real HTTP receiver (http.server in a thread on 127.0.0.1);
signatures are checked with the ``standardwebhooks`` reference verifier."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook

from tokenwarden.adapters.notify.webhook import HttpWebhookSender, retry_after, sign
from tokenwarden.domain.netpolicy import PushAllowList
from tokenwarden.domain.webhook_urls import new_webhook_secret
from tokenwarden.ports.notify import WebhookRequest

LOOPBACK = PushAllowList.parse("127.0.0.1")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.received: list[Received] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.received]


RESPONSES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/ok": (204, {}, b""),
    "/accepted": (202, {}, b"{}"),
    "/fail": (500, {}, b"boom\nsecond line"),
    "/gone": (410, {}, b"endpoint deleted"),
    "/bad": (400, {}, b"x" * 5000),
    "/conflict": (409, {}, b""),
    "/slow": (429, {"Retry-After": "7"}, b""),
    "/redirect": (302, {"Location": "/ok"}, b""),
}


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        with self.server.lock:
            self.server.received.append(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
        if self.path == "/unavailable":
            status, headers, payload = 503, {"Retry-After": formatdate(time.time() + 120, usegmt=True)}, b""
        else:
            status, headers, payload = RESPONSES.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def channel() -> Iterator[HttpWebhookSender]:
    sender = HttpWebhookSender(5.0, LOOPBACK)
    yield sender
    sender.close()


SECRET = new_webhook_secret()


def request(url: str, *, secret: str = SECRET, message_id: str = "msg_2Kx1") -> WebhookRequest:
    body = json.dumps({"type": "token.expiring", "id": message_id, "data": {"n": "ü"}}).encode()
    return WebhookRequest(
        url=url, secret=secret, message_id=message_id, timestamp=int(time.time()), body=body
    )


def test_signed_post_verifies_with_standardwebhooks(receiver: Receiver, channel: HttpWebhookSender) -> None:
    sent = request(receiver.url("/ok"))
    result = channel.send(sent)
    assert result.ok
    assert result.error is None
    (got,) = receiver.received
    assert got.body == sent.body
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == "tokenwarden-webhooks"
    assert got.headers["webhook-id"] == "msg_2Kx1"
    assert got.headers["webhook-timestamp"] == str(sent.timestamp)
    assert got.headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(got.body, got.headers) == json.loads(sent.body)
    assert sign(SECRET, sent.message_id, sent.timestamp, sent.body) == got.headers["webhook-signature"]
    # a wrong secret does not verify
    with pytest.raises(Exception, match="signature"):
        Webhook(new_webhook_secret()).verify(got.body, got.headers)
    assert channel.send(request(receiver.url("/accepted"))).ok


@pytest.mark.parametrize(
    ("path", "retryable", "wait", "error"),
    [
        ("/fail", True, None, "HTTP 500: boom second line"),
        ("/gone", False, None, "HTTP 410: endpoint deleted"),
        ("/nowhere", False, None, "HTTP 404"),
        ("/conflict", True, None, "HTTP 409"),
        ("/slow", True, 7.0, "HTTP 429"),
    ],
)
def test_status_classification(
    receiver: Receiver,
    channel: HttpWebhookSender,
    path: str,
    retryable: bool,
    wait: float | None,
    error: str,
) -> None:
    result = channel.send(request(receiver.url(path)))
    assert not result.ok
    assert result.retryable is retryable
    assert result.retry_after == wait
    assert result.error == error


def test_long_error_bodies_are_cut(receiver: Receiver, channel: HttpWebhookSender) -> None:
    result = channel.send(request(receiver.url("/bad")))
    assert not result.ok and not result.retryable
    assert result.error is not None and len(result.error) <= 300


def test_retry_after_as_http_date(receiver: Receiver, channel: HttpWebhookSender) -> None:
    result = channel.send(request(receiver.url("/unavailable")))
    assert result.retryable
    assert result.retry_after is not None
    assert 100 <= result.retry_after <= 121


def test_redirect_is_not_followed(receiver: Receiver, channel: HttpWebhookSender) -> None:
    result = channel.send(request(receiver.url("/redirect")))
    assert not result.ok
    assert not result.retryable
    assert result.error is not None and "redirect not followed" in result.error
    assert receiver.paths() == ["/redirect"]


def test_loopback_refused_unless_allow_listed(receiver: Receiver) -> None:
    strict = HttpWebhookSender(5.0, PushAllowList())
    try:
        result = strict.send(request(receiver.url("/ok")))
    finally:
        strict.close()
    assert not result.ok
    assert not result.retryable
    assert result.error is not None and result.error.startswith("target not allowed")
    assert "loopback" in result.error
    assert receiver.received == []


def test_name_is_resolved_checked_and_pinned(receiver: Receiver) -> None:
    allow = PushAllowList.parse("hooks.test")
    pinned = HttpWebhookSender(5.0, allow, resolve=lambda host, port: ["127.0.0.1"])
    inward = HttpWebhookSender(5.0, allow, resolve=lambda host, port: ["169.254.169.254"])
    unlisted = HttpWebhookSender(5.0, PushAllowList(), resolve=lambda host, port: ["127.0.0.1"])
    try:
        url = f"http://hooks.test:{receiver.port}/ok"
        assert pinned.send(request(url)).ok
        metadata = inward.send(request(url))
        private = unlisted.send(request(url))
    finally:
        for s in (pinned, inward, unlisted):
            s.close()
    (got,) = receiver.received
    assert got.headers["host"] == f"hooks.test:{receiver.port}"
    assert Webhook(SECRET).verify(got.body, got.headers)
    assert not metadata.ok and not metadata.retryable
    assert metadata.error is not None and "cloud metadata" in metadata.error
    assert not private.ok and not private.retryable


def test_network_errors_are_retryable() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as closed:
        port = closed.server_address[1]
    sender = HttpWebhookSender(2.0, LOOPBACK)
    try:
        result = sender.send(request(f"http://127.0.0.1:{port}/ok"))
    finally:
        sender.close()
    assert not result.ok
    assert result.retryable
    assert result.error is not None and result.error.startswith("ConnectError")


def test_bad_secret_is_permanent(receiver: Receiver, channel: HttpWebhookSender) -> None:
    result = channel.send(request(receiver.url("/ok"), secret="whsec_***"))
    assert not result.ok and not result.retryable
    assert receiver.received == []


def test_retry_after_parsing() -> None:
    assert retry_after("7") == 7.0
    assert retry_after(None) is None
    assert retry_after("soon") is None
    assert retry_after("999999999") == 86400.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
