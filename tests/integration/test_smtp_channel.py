"""The SMTP channel against a real SMTP server (aiosmtpd in a thread on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage as Parsed
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tokenwarden.adapters.notify.smtp import SmtpEmailSender
from tokenwarden.ports.notify import EmailMessage

SENDER = "tokenwarden <tokenwarden@example.com>"
PASSWORD = "s3cret-Pa55word-never-shown"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Recorder:
    """aiosmtpd handler: records what arrives; some addresses are refused or drop the line."""

    refuse: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply
    drop_once: set[str] = field(default_factory=set)
    drop_always: set[str] = field(default_factory=set)
    received: list[tuple[list[str], Parsed]] = field(default_factory=list)
    sessions: list[Any] = field(default_factory=list)  # one per connection that sent MAIL
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        with self.lock:
            if not any(s is session for s in self.sessions):
                self.sessions.append(session)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.drop_always or address in self.drop_once:
            self.drop_once.discard(address)
            server.transport.close()
            return "421 4.3.2 closing"
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(parsed, Parsed)
        with self.lock:
            self.received.append((list(envelope.rcpt_tos), parsed))
        return "250 OK queued"

    def delivered_to(self) -> list[str]:
        return [rcpt[0] for rcpt, _ in self.received]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def start(recorder: Recorder, **kwargs: Any) -> tuple[Controller, int]:
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, ready_timeout=10, **kwargs)
    controller.start()
    return controller, port


@pytest.fixture
def server(recorder: Recorder) -> Iterator[int]:
    controller, port = start(recorder)
    yield port
    controller.stop()


def message(n: int, to: str | None = None, **changes: Any) -> EmailMessage:
    fields: dict[str, Any] = {
        "to": to or f"user{n}@example.com",
        "subject": f"Your token 'ci-{n}' expires in 7 days",
        "text": f"Plain text {n}\n",
        "html": f"<p>HTML <b>{n}</b></p>",
        "message_id": f"msg-{n}@tokenwarden.test",
        "headers": {"Auto-Submitted": "auto-generated"},
    }
    fields.update(changes)
    return EmailMessage(**fields)


def sender(port: int, **kwargs: Any) -> SmtpEmailSender:
    kwargs.setdefault("timeout", 5.0)
    return SmtpEmailSender("127.0.0.1", port, sender=SENDER, **kwargs)


def test_multipart_message_id_and_inline_images(server: int, recorder: Recorder) -> None:
    images = {"chart": PNG}
    results = sender(server).send_batch(
        [
            message(1),
            message(2, html='<p><img src="cid:chart"></p>', inline_images=images),
            message(3, html=None),
        ]
    )
    assert [r.ok for r in results] == [True, True, True]
    assert len(recorder.received) == 3
    (rcpt, first), (_, second), (_, third) = recorder.received
    assert rcpt == ["user1@example.com"]
    assert first["Message-ID"] == "<msg-1@tokenwarden.test>"
    assert first["From"] == SENDER
    assert first["Subject"] == "Your token 'ci-1' expires in 7 days"
    assert first["Auto-Submitted"] == "auto-generated"
    assert first.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in first.iter_parts()] == ["text/plain", "text/html"]
    plain = first.get_body(preferencelist=("plain",))
    html = first.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert plain.get_content().splitlines() == ["Plain text 1"]
    assert "<b>1</b>" in html.get_content()
    # inline images: multipart/related around the HTML part, referenced by Content-ID
    assert [p.get_content_type() for p in second.iter_parts()] == ["text/plain", "multipart/related"]
    related = list(second.iter_parts())[1]
    html_part, image = list(related.iter_parts())
    assert html_part.get_content_type() == "text/html"
    assert image.get_content_type() == "image/png"
    assert image["Content-ID"] == "<chart>"
    assert image.get_content() == PNG
    assert third.get_content_type() == "text/plain"


def test_non_ascii_subject_and_body_are_encoded(server: int, recorder: Recorder) -> None:
    subject = "Your token “Zoë’s deploy key” expires in 7 days"  # noqa: RUF001 - typographic quotes on purpose
    evil = "x\r\nBcc: victim@example.com"  # a header value never breaks the header block
    msg = message(1, subject=subject, text="Grüße — 7 days left", headers={"X-Tokenwarden-Event": evil})
    [result] = sender(server).send_batch([msg])
    assert result.ok, result.error
    [(rcpt, got)] = recorder.received
    assert rcpt == ["user1@example.com"] and got["Subject"] == subject
    assert got["Bcc"] is None and got["X-Tokenwarden-Event"] == "x Bcc: victim@example.com"
    plain = got.get_body(preferencelist=("plain",))
    assert plain is not None and plain.get_content().strip() == "Grüße — 7 days left"


def test_message_id_gets_brackets_and_a_domain(server: int, recorder: Recorder) -> None:
    results = sender(server).send_batch([message(1, message_id="0f5c2a"), message(2, message_id="<a@b>")])
    assert all(r.ok for r in results)
    assert [m["Message-ID"] for _, m in recorder.received] == ["<0f5c2a@example.com>", "<a@b>"]


def test_one_hundred_messages_over_one_connection(server: int, recorder: Recorder) -> None:
    # a generous timeout: on a starved machine a reply slower than 5 s made the sender reconnect and
    # resend (at-least-once, as designed), and this test counts deliveries, not speed
    results = sender(server, timeout=60.0).send_batch([message(n) for n in range(100)])
    assert all(r.ok for r in results)
    assert len(recorder.received) == 100
    assert len(recorder.sessions) == 1
    assert recorder.delivered_to() == [f"user{n}@example.com" for n in range(100)]


def test_server_down_every_message_retryable(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there
    results = sender(port).send_batch([message(1), message(2)])
    assert len(results) == 2
    for r in results:
        assert not r.ok
        assert r.retryable
        assert r.error is not None and len(r.error) <= 300
        assert f"127.0.0.1:{port}" in r.error
        assert "user1@example.com" not in r.error


def test_server_that_never_answers_times_out_retryable() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        port = silent.getsockname()[1]
        results = sender(port, timeout=0.5).send_batch([message(1)])
    assert not results[0].ok
    assert results[0].retryable
    assert results[0].error is not None and "timed out" in results[0].error


def test_refused_recipient_is_permanent_and_the_rest_go(server: int, recorder: Recorder) -> None:
    recorder.refuse["gone@example.com"] = "550 5.1.1 <gone@example.com>: mailbox unavailable"
    recorder.refuse["busy@example.com"] = "452 4.2.2 mailbox full"
    batch = [message(1), message(2, to="gone@example.com"), message(3, to="busy@example.com"), message(4)]
    results = sender(server).send_batch(batch)
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[1].retryable is False
    assert results[1].error is not None
    assert results[1].error.startswith("recipient refused: 550")
    assert "gone@example.com" not in results[1].error  # the address stays in the outbox row
    assert results[2].retryable is True
    assert results[2].error is not None and "452" in results[2].error
    assert recorder.delivered_to() == ["user1@example.com", "user4@example.com"]
    assert len(recorder.sessions) == 1


def test_dropped_connection_reconnects_once_and_continues(server: int, recorder: Recorder) -> None:
    recorder.drop_once.add("user2@example.com")
    results = sender(server).send_batch([message(n) for n in range(5)])
    assert all(r.ok for r in results), results
    assert recorder.delivered_to() == [f"user{n}@example.com" for n in range(5)]
    assert len(recorder.sessions) == 2


def test_second_drop_leaves_the_rest_retryable(server: int, recorder: Recorder) -> None:
    recorder.drop_always.add("user1@example.com")
    results = sender(server).send_batch([message(n) for n in range(4)])
    assert [r.ok for r in results] == [True, False, False, False]
    assert all(r.retryable for r in results[1:])
    assert recorder.delivered_to() == ["user0@example.com"]


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"mailer", PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_succeeds_and_a_bad_password_never_shows(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    controller, port = start(
        recorder, authenticator=authenticator, auth_require_tls=False, auth_required=True
    )
    try:
        good = sender(port, username="mailer", password=PASSWORD)
        assert [r.ok for r in good.send_batch([message(1)])] == [True]
        wrong = "Wr0ng-" + PASSWORD
        bad = sender(port, username="mailer", password=wrong)
        with caplog.at_level(logging.DEBUG):
            results = bad.send_batch([message(2), message(3)])
    finally:
        controller.stop()
    assert [r.ok for r in results] == [False, False]
    assert all(r.retryable for r in results)
    assert results[0].error is not None and "authentication" in results[0].error
    shown = " ".join(
        [repr(bad), str(bad), repr(good), *(repr(r) for r in results), *(str(r.error) for r in results)]
    )
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("tokenwarden", "aiosmtplib"))]
    everything = caplog.text + " ".join(ours)
    for secret in (PASSWORD, wrong):
        assert secret not in shown
        assert secret not in everything
    assert "password=set" in repr(bad)
    assert recorder.delivered_to() == ["user1@example.com"]


# ------------------------------------------------------------------ TLS


def self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = self_signed()
    directory = tmp_path_factory.mktemp("tls")
    (directory / "cert.pem").write_bytes(cert)
    (directory / "key.pem").write_bytes(key)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client_ctx = ssl.create_default_context(cadata=cert.decode())
    return server_ctx, client_ctx


def test_starttls_with_auth(recorder: Recorder, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_contexts
    controller, port = start(
        recorder,
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    try:
        channel = sender(
            port, security="starttls", tls_context=client_ctx, username="mailer", password=PASSWORD
        )
        results = channel.send_batch([message(1), message(2)])
        untrusted = sender(port, security="starttls", username="mailer", password=PASSWORD)  # default CAs
        refused = untrusted.send_batch([message(3)])
    finally:
        controller.stop()
    assert all(r.ok for r in results), results
    assert recorder.delivered_to() == ["user1@example.com", "user2@example.com"]
    assert not refused[0].ok
    assert refused[0].retryable


def test_implicit_tls(recorder: Recorder, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls_contexts
    controller, port = start(recorder, ssl_context=server_ctx)
    try:
        results = sender(port, security="tls", tls_context=client_ctx).send_batch([message(1)])
    finally:
        controller.stop()
    assert results[0].ok, results
    assert recorder.delivered_to() == ["user1@example.com"]


def test_empty_batch_and_bad_security() -> None:
    assert sender(1).send_batch([]) == []
    with pytest.raises(ValueError, match="security"):
        SmtpEmailSender("127.0.0.1", 25, sender=SENDER, security="ssl")  # type: ignore[arg-type]
