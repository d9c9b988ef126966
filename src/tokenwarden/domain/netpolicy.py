"""Where outbound push delivery may go: public addresses only, unless the operator allow-lists.

A stream's push ``endpoint_url`` is chosen by an organization's administrator, and the server
POSTs to it: left unchecked, that is a request forgery into the operator's own network (cloud
metadata at 169.254.169.254, databases on 127.0.0.1, the 10/8 office). So a push target is
refused when its host is, or resolves to, any address that is not globally routable (loopback,
link-local, private, shared, reserved, multicast, unspecified, IPv4-mapped forms of those),
unless ``TOKENWARDEN_SSF_PUSH_ALLOW`` names the host or a network holding every address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from tokenwarden.domain.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SETTING: Final = "TOKENWARDEN_SSF_PUSH_ALLOW"


def parse_ip(value: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def is_public(address: IPAddress) -> bool:
    """Globally routable and unicast (IPv4-mapped IPv6 judged by the IPv4 address inside)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True, slots=True)
class PushAllowList:
    """Operator exceptions: host names (exact, case-insensitive) and networks."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, value: str | Iterable[str] | None) -> PushAllowList:
        """``"10.0.0.0/8, 127.0.0.1, receiver.internal"`` (commas or whitespace between)."""
        if value is None:
            return cls()
        items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for item in items:
            entry = item.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if "/" in entry or not entry.replace("-", "").replace(".", "").isalnum():
                    raise InvalidInput(
                        f"{SETTING}: {entry!r} is neither a network (CIDR), an address nor a host name",
                        code="invalidSetting",
                    ) from None
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks if net.version == address.version)


def refusal(host: str, addresses: Iterable[str], allow: PushAllowList) -> str | None:
    """Why a push to ``host`` (resolved to ``addresses``) is refused, or None when it may go."""
    if allow.allows_host(host):
        return None
    resolved = [a for a in (parse_ip(x) for x in addresses) if a is not None]
    if not resolved:
        return f"push target {host!r} does not resolve"
    for address in resolved:
        if not is_public(address) and not allow.allows_address(address):
            return (
                f"push target {host!r} is a loopback, link-local or private address ({address}); "
                f"an operator may allow it with {SETTING}"
            )
    return None
