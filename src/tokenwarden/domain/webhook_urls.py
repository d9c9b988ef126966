"""Where a lifecycle webhook may point, and its signing secret (issue 12).

An organization's administrator registers a webhook URL and the server POSTs to it, so the URL
is a request-forgery risk into the operator's network. ``check_webhook_url`` runs when the URL is
registered (no DNS: the domain does no I/O); ``delivery_refusal`` runs again right before every
POST with the addresses the host resolves to then, so a name that later resolves inward is caught.

Link-local addresses and cloud metadata endpoints are refused always, even when the operator's
allow-list (``TOKENWARDEN_WEBHOOK_ALLOW``) names them; loopback and private addresses only when
not allow-listed. The allow-list rules (networks, host names) are ``netpolicy.PushAllowList``'s.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.netpolicy import IPAddress, PushAllowList, is_public, parse_ip

SETTING: Final = "TOKENWARDEN_WEBHOOK_ALLOW"
MAX_URL_LENGTH: Final = 2048
SECRET_PREFIX: Final = "whsec_"
CODE: Final = "invalidWebhookUrl"

# Link-local (which holds most metadata services) and the well-known metadata endpoints.
LINK_LOCAL: Final = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, Azure, GCP, OpenStack, DigitalOcean...
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
    )
)
METADATA_HOSTS: Final = frozenset(
    {"metadata.google.internal", "metadata", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_...`` secret (the base64-decoded part after the prefix)."""
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except ValueError:
        raise InvalidInput(
            "webhook secret is not base64 after 'whsec_'", code="invalidWebhookSecret"
        ) from None
    if not key:
        raise InvalidInput("webhook secret is empty", code="invalidWebhookSecret")
    return key


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def always_refused(address: IPAddress) -> str | None:
    """Returns "link-local" or "cloud metadata" when no allow-list may open ``address``, else None."""
    address = _unmapped(address)
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    if any(address in net for net in LINK_LOCAL if net.version == address.version):
        return "link-local"
    return None


def _kind(address: IPAddress) -> str:
    """Why a non-public address is not public, in words."""
    address = _unmapped(address)
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address in ipaddress.ip_network("100.64.0.0/10"):
        return "shared (carrier-grade NAT)"
    if address.is_private:
        return "private"
    return "reserved (not globally routable)"


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, code=CODE)


def _check_host_name(host: str, allow: PushAllowList) -> None:
    if host in METADATA_HOSTS:
        raise _invalid(f"webhook URL host {host!r} is a cloud metadata endpoint; it is never allowed")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise _invalid(f"webhook URL host {host!r} is not a valid host name") from None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise _invalid(f"webhook URL host {host!r} is not a valid host name")
    if _NUMERIC_LABEL.match(labels[-1]):
        # "2130706433", "0x7f.1", "127.1": resolvers read these as IPv4 addresses.
        raise _invalid(
            f"webhook URL host {host!r} is a non-standard form of an IP address; write the address"
        )
    if (host == "localhost" or host.endswith(".localhost")) and not allow.allows_host(host):
        raise _invalid(
            f"webhook URL host {host!r} is a loopback name; an operator may allow it with {SETTING}"
        )


def _check_address(address: IPAddress, allow: PushAllowList) -> None:
    never = always_refused(address)
    if never is not None:
        raise _invalid(f"webhook URL host {address} is a {never} address; it is never allowed")
    if not is_public(address) and not allow.allows_address(address):
        raise _invalid(
            f"webhook URL host {address} is a {_kind(address)} address; "
            f"an operator may allow it with {SETTING}"
        )


def check_webhook_url(url: str, allow: PushAllowList) -> str:
    """The URL unchanged when an administrator may register it, else ``InvalidInput``
    (code ``invalidWebhookUrl``) saying precisely why."""
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"webhook URL is longer than {MAX_URL_LENGTH} characters")
    if not url:
        raise _invalid("webhook URL is empty")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise _invalid("webhook URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _invalid("webhook URL is not a valid URL (check the host and the port)") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme!r}" if scheme else "no scheme"
        raise _invalid(f"webhook URL must use http or https, not {shown}")
    if "@" in parts.netloc:
        raise _invalid("webhook URL must not contain a user name or password")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise _invalid("webhook URL has no host")
    if port == 0:
        raise _invalid("webhook URL has an invalid port (0)")
    literal = parse_ip(host) if ":" in host or host[-1].isdigit() else None
    if literal is not None:
        if "%" in host:
            raise _invalid("webhook URL host must not carry an IPv6 zone (%...)")
        _check_address(literal, allow)
    else:
        _check_host_name(host, allow)
    return url


def delivery_refusal(host: str, addresses: Iterable[str], allow: PushAllowList) -> str | None:
    """Why a POST to ``host``, which now resolves to ``addresses``, may not go, or None.

    Link-local and metadata addresses are refused even for an allow-listed host name; other
    non-public addresses need the name or a network holding every one of them allow-listed."""
    name = host.lower().rstrip(".").strip("[]")
    if name in METADATA_HOSTS:
        return f"webhook target {host!r} is a cloud metadata endpoint"
    resolved = [a for a in (parse_ip(x) for x in addresses) if a is not None]
    if not resolved:
        return f"webhook target {host!r} does not resolve"
    for address in resolved:
        never = always_refused(address)
        if never is not None:
            return f"webhook target {host!r} is a {never} address ({address})"
    if allow.allows_host(name):
        return None
    for address in resolved:
        if not is_public(address) and not allow.allows_address(address):
            return (
                f"webhook target {host!r} is a {_kind(address)} address ({address}); "
                f"an operator may allow it with {SETTING}"
            )
    return None
