"""Webhook URL registration checks and delivery-time target checks (domain, no I/O)."""

from __future__ import annotations

import base64

import pytest

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.netpolicy import PushAllowList
from tokenwarden.domain.webhook_urls import (
    check_webhook_url,
    delivery_refusal,
    new_webhook_secret,
    secret_key,
)

NONE = PushAllowList()
EVERYTHING = PushAllowList.parse(
    "0.0.0.0/0 ::/0 localhost metadata.google.internal metadata 169.254.169.254 fe80::/10"
)


@pytest.mark.parametrize(
    ("url", "allow", "message"),
    [
        ("ftp://example.com/hook", NONE, "webhook URL must use http or https, not 'ftp'"),
        ("example.com/hook", NONE, "webhook URL must use http or https, not no scheme"),
        ("https:///hook", NONE, "webhook URL has no host"),
        ("https://user:pw@example.com/hook", NONE, "webhook URL must not contain a user name or password"),
        ("https://user@example.com/hook", NONE, "webhook URL must not contain a user name or password"),
        (
            "http://169.254.169.254/latest/meta-data",
            EVERYTHING,
            "webhook URL host 169.254.169.254 is a cloud metadata address; it is never allowed",
        ),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            EVERYTHING,
            "webhook URL host 'metadata.google.internal' is a cloud metadata endpoint; it is never allowed",
        ),
        (
            "http://metadata/computeMetadata/v1/",
            EVERYTHING,
            "webhook URL host 'metadata' is a cloud metadata endpoint; it is never allowed",
        ),
        (
            "http://[fd00:ec2::254]/latest",
            EVERYTHING,
            "webhook URL host fd00:ec2::254 is a cloud metadata address; it is never allowed",
        ),
        (
            "http://[fe80::1]/hook",
            EVERYTHING,
            "webhook URL host fe80::1 is a link-local address; it is never allowed",
        ),
        (
            "http://169.254.10.1/hook",
            EVERYTHING,
            "webhook URL host 169.254.10.1 is a link-local address; it is never allowed",
        ),
        (
            "http://[::ffff:169.254.169.254]/hook",
            EVERYTHING,
            "webhook URL host ::ffff:a9fe:a9fe is a cloud metadata address; it is never allowed",
        ),
        (
            "http://10.0.0.1/hook",
            NONE,
            "webhook URL host 10.0.0.1 is a private address; an operator may allow it with "
            "TOKENWARDEN_WEBHOOK_ALLOW",
        ),
        (
            "http://127.0.0.1:8080/hook",
            NONE,
            "webhook URL host 127.0.0.1 is a loopback address; an operator may allow it with "
            "TOKENWARDEN_WEBHOOK_ALLOW",
        ),
        (
            "http://localhost/hook",
            NONE,
            "webhook URL host 'localhost' is a loopback name; an operator may allow it with "
            "TOKENWARDEN_WEBHOOK_ALLOW",
        ),
        (
            "http://2130706433/hook",
            EVERYTHING,
            "webhook URL host '2130706433' is a non-standard form of an IP address; write the address",
        ),
        (
            "http://127.1/hook",
            NONE,
            "webhook URL host '127.1' is a non-standard form of an IP address; write the address",
        ),
        ("https://exa mple.com/", NONE, "webhook URL must not contain spaces or control characters"),
        ("https://example.com:99999/", NONE, "webhook URL is not a valid URL (check the host and the port)"),
        ("https://bad_host!.com/", NONE, "webhook URL host 'bad_host!.com' is not a valid host name"),
        ("https://example.com/" + "a" * 2030, NONE, "webhook URL is longer than 2048 characters"),
        ("", NONE, "webhook URL is empty"),
    ],
)
def test_refused_with_a_precise_message(url: str, allow: PushAllowList, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_webhook_url(url, allow)
    assert caught.value.code == "invalidWebhookUrl"
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("https://hooks.example.com/tokenwarden?x=1", NONE),
        ("http://93.184.216.34:8080/hook", NONE),
        ("https://[2606:4700::1111]/hook", NONE),
        ("http://10.0.0.1/hook", PushAllowList.parse("10.0.0.0/8")),
        ("http://127.0.0.1:9000/hook", PushAllowList.parse("127.0.0.1")),
        ("http://localhost:9000/hook", PushAllowList.parse("localhost")),
        ("https://receiver.internal/hook", NONE),  # a name: checked again at delivery, resolved
        ("https://" + "a" * 60 + ".example.com/" + "p" * (2048 - 86), NONE),
    ],
)
def test_accepted(url: str, allow: PushAllowList) -> None:
    assert len(url) <= 2048
    assert check_webhook_url(url, allow) == url


def test_delivery_refusal_rechecks_resolved_addresses() -> None:
    allow = PushAllowList.parse("10.0.0.0/8 hooks.internal")
    assert delivery_refusal("hooks.example.com", ["93.184.216.34"], NONE) is None
    refused = delivery_refusal("hooks.example.com", ["93.184.216.34", "10.1.2.3"], NONE)
    assert refused is not None
    assert "private address (10.1.2.3)" in refused
    assert delivery_refusal("hooks.example.com", ["10.1.2.3"], allow) is None
    # an allow-listed name may resolve privately, never to link-local or metadata addresses
    assert delivery_refusal("hooks.internal", ["192.168.1.5"], allow) is None
    metadata = delivery_refusal("hooks.internal", ["169.254.169.254"], allow)
    assert metadata == "webhook target 'hooks.internal' is a cloud metadata address (169.254.169.254)"
    assert delivery_refusal("evil.example", [], NONE) == "webhook target 'evil.example' does not resolve"
    assert delivery_refusal("metadata.google.internal", ["8.8.8.8"], EVERYTHING) is not None


def test_new_secret_is_standard_webhooks_shaped() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret_key(secret) == base64.b64decode(secret[6:])
    assert new_webhook_secret() != secret
    with pytest.raises(InvalidInput):
        secret_key("whsec_")
    with pytest.raises(InvalidInput):
        secret_key("whsec_not*base64")
