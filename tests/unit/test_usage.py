"""Usage records: the reduction of a request, the buffer, the flush and the client address."""

from __future__ import annotations

import ipaddress

import pytest

from tests.unit.conftest import actor_of
from tokenwarden.bootstrap import Container
from tokenwarden.domain.errors import Forbidden, InsufficientScope, InvalidInput, InvalidToken, NotFound
from tokenwarden.domain.usage import area_of, network_of, status_class
from tokenwarden.http.usage import forwarded_client, parse_networks
from tokenwarden.services.common import OPERATOR, Actor
from tokenwarden.services.directory import InitResult
from tokenwarden.services.usage import UsageRecorder


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (200, "2xx"),
        (204, "2xx"),
        (302, "3xx"),
        (400, "4xx"),
        (401, "401"),
        (403, "403"),
        (404, "4xx"),
        (429, "429"),
        (500, "5xx"),
        (503, "5xx"),
    ],
)
def test_status_classes_keep_the_refusals_detection_needs(status: int, cls: str) -> None:
    assert status_class(status) == cls


def test_networks_are_the_24_or_the_64_of_an_address() -> None:
    assert network_of("203.0.113.77") == "203.0.113.0/24"
    assert network_of("::ffff:203.0.113.77") == "203.0.113.0/24"
    assert network_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert network_of(None) == "" and network_of("testclient") == ""


@pytest.mark.parametrize(
    ("path", "area"),
    [
        ("/api/v1/orgs/acme/pats/1234", "pats"),
        ("/api/v1/orgs/acme", "org"),
        ("/api/v1/validate", "validate"),
        ("/Acme/_apis/Tokens/Pats", "ado.tokens"),
        ("/acme/_apis", "ado.discovery"),
        ("/graph/v1.0/users/x", "graph.users"),
        ("/oauth2/token", "oauth2"),
        ("/api/v1/orgs/acme/<script>", "other"),
        ("/", "root"),
    ],
)
def test_route_areas(path: str, area: str) -> None:
    assert area_of(path) == area


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    trusted = parse_networks("10.0.0.0/8, 127.0.0.1/32")
    # an untrusted peer: its header is ignored
    assert forwarded_client("198.51.100.1", ["6.6.6.6"], trusted) == "198.51.100.1"
    # a trusted proxy: the rightmost address that is not one of ours
    assert forwarded_client("127.0.0.1", ["6.6.6.6, 203.0.113.5, 10.1.2.3"], trusted) == "203.0.113.5"
    # the client cannot forge past its proxy: whatever it sent sits left of what the proxy appended
    assert forwarded_client("10.0.0.1", ["1.1.1.1", "203.0.113.5"], trusted) == "203.0.113.5"
    # garbage stops the walk at the last address we could trust
    assert forwarded_client("127.0.0.1", ["203.0.113.5, nonsense"], trusted) == "127.0.0.1"
    with pytest.raises(InvalidInput, match="not a CIDR"):
        parse_networks("10.0.0.0/8, banana")
    assert parse_networks("") == ()
    assert ipaddress.ip_network("10.0.0.0/8") in trusted


def test_a_full_buffer_drops_and_counts_instead_of_slowing_requests() -> None:
    recorder = UsageRecorder(max_pending=3)
    for _ in range(5):
        recorder.record(b"k", "203.0.113.1", "x" * 1000, "pats", 200)
    assert recorder.pending == 3 and recorder.dropped == 2
    drained = recorder.drain()
    assert len(drained) == 3 and all(len(p[3] or "") == 256 for p in drained)
    assert recorder.pending == 0 and recorder.recorded == 3
    off = UsageRecorder(enabled=False)
    off.record(b"k", None, None, "pats", 200)
    assert off.pending == 0


def test_flush_folds_requests_into_minutes_and_refusals_are_counted(
    container: Container, init: InitResult
) -> None:
    v, usage = container.validator, container.usage
    secret = init.token.secret
    caller = v.validate(secret)
    for ip in ("203.0.113.1", "203.0.113.2", "198.51.100.7"):
        usage.recorder.record(caller.key, ip, "ci-agent/1", "pats", 200)
    with pytest.raises(InsufficientScope) as refused:
        v.validate(secret, "no.such.scope")
    assert refused.value.token_key == caller.key  # the refusal names the token it was about
    usage.recorder.record(refused.value.token_key, "198.51.100.7", "ci-agent/1", "pats", 403)
    usage.recorder.record(b"\0" * 32, "198.51.100.7", None, "pats", 401)  # no stored token
    result = usage.flush()
    assert (result.requests, result.unresolved) == (5, 1)
    assert usage.flush().requests == 0
    totals, about = usage.totals(OPERATOR, "acme", init.token.record.authorization_id)
    assert about["owner"] == "admin@acme.test"
    assert totals.requests == 4
    assert {n for n, *_ in totals.networks} == {"203.0.113.0/24", "198.51.100.0/24"}
    assert totals.statuses == {"2xx": 3, "403": 1}


def test_unknown_tokens_carry_no_key(container: Container, init: InitResult) -> None:
    with pytest.raises(InvalidToken) as exc:
        container.validator.validate("twp_" + "A" * 49)
    assert exc.value.token_key is None


def test_usage_is_readable_by_the_owner_and_admins_only(container: Container, init: InitResult) -> None:
    bob = container.directory.add_user(OPERATOR, "acme", "bob@acme.test").user
    carol = container.directory.add_user(OPERATOR, "acme", "carol@acme.test").user
    issued = container.pats.create(OPERATOR, org="acme", user=bob.upn, display_name="b", scope="vso.code")
    tid = issued.record.authorization_id
    container.usage.totals(actor_of(bob), "acme", tid)  # the owner
    container.usage.totals(actor_of(init.admin), "acme", tid)  # an administrator
    with pytest.raises(Forbidden):
        container.usage.totals(actor_of(carol), "acme", tid)
    other = container.directory.add_org("globex", "boss@globex.test")
    with pytest.raises(NotFound):
        container.usage.totals(actor_of(other.admin), "globex", tid)
    with pytest.raises(InvalidInput):
        container.usage.totals(Actor(user_id=None, upn=None), "acme", "not-a-uuid")
