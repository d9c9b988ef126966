"""Detection over the in-memory store: one alert per token and rule, responses, ack/close."""

from __future__ import annotations

import pytest

from tests.unit.conftest import actor_of
from tokenwarden.bootstrap import Container
from tokenwarden.domain.errors import Conflict, Forbidden, InvalidToken, NotFound
from tokenwarden.domain.principals import RiskLevel
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.directory import InitResult
from tokenwarden.services.messages import render_email


def _use(container: Container, secret: str, ip: str, status: int = 200, times: int = 1) -> None:
    key = container.validator.validate(secret).key
    for _ in range(times):
        container.usage.recorder.record(key, ip, "attack/1", "pats", status)


def test_a_new_network_raises_one_alert_and_the_configured_response(
    container: Container, init: InitResult
) -> None:
    bob = container.directory.add_user(OPERATOR, "acme", "bob@acme.test").user
    issued = container.pats.create(OPERATOR, org="acme", user=bob.upn, display_name="ci", scope="vso.code")
    container.policies.update(OPERATOR, "acme", security_contact="soc@acme.test")
    container.detection.set_policy(
        OPERATOR,
        "acme",
        {
            "learningDays": 0,
            "allowedNetworks": ["198.51.100.0/24"],
            "responses": {"high": ["notify", "revoke", "raiseRisk"]},
        },
    )
    _use(container, issued.secret, "198.51.100.7")
    container.usage.flush()
    assert container.detection.find(OPERATOR, "acme") == []
    _use(container, issued.secret, "203.0.113.9", times=3)
    container.usage.flush()
    [alert] = container.detection.find(OPERATOR, "acme")
    assert (alert.rule, alert.level, alert.token_id) == (
        "unknownNetwork",
        "high",
        issued.record.authorization_id,
    )
    assert alert.responses == ("revoke", "raiseRisk") and alert.evidence["networks"] == ["203.0.113.0/24"]
    container.validator.sync()
    with pytest.raises(InvalidToken):
        container.validator.validate(issued.secret)
    with container.uow() as uow:
        assert uow.tokens.get(issued.record.authorization_id).revoke_reason == "compromised"  # type: ignore[union-attr]
        assert uow.users.membership(init.org.id, bob.id).risk_level is RiskLevel.HIGH  # type: ignore[union-attr]
        messages = uow.outbox.find(org_id=init.org.id)
        assert [m.destination for m in messages if m.template == "security-alert"] == ["soc@acme.test"]
        mail = render_email("security-alert", messages[0].payload, message_id="m-1")
        events = [e.event_type for e in uow.audit.query(AuditQuery(org_id=init.org.id))]
    assert "Security.AlertRaiseEvent" in events and "Token.PatSystemRevokeEvent" in events
    assert mail.subject == "[high] Unknown network: token 'ci' of bob@acme.test (revoked)"
    for body in (mail.text, mail.html):
        assert "203.0.113.0/24" in body and issued.secret not in body


def test_no_flood_one_open_alert_per_token_and_rule(container: Container, init: InitResult) -> None:
    container.detection.set_policy(OPERATOR, "acme", {"forbiddenBurst": 3})
    secret = init.token.secret
    for _ in range(3):
        _use(container, secret, "198.51.100.7", status=403, times=4)
        container.usage.flush()
    [alert] = container.detection.find(OPERATOR, "acme")
    assert alert.rule == "forbiddenBurst" and alert.occurrences == 3 and alert.responses == ()
    acked = container.detection.set_status(OPERATOR, "acme", alert.id, "acknowledged", "looking")
    assert acked.status == "acknowledged" and acked.note == "looking"
    _use(container, secret, "198.51.100.7", status=403, times=4)
    container.usage.flush()
    assert len(container.detection.find(OPERATOR, "acme")) == 1  # acknowledged still counts as open
    container.detection.set_status(OPERATOR, "acme", alert.id, "closed")
    with pytest.raises(Conflict):
        container.detection.set_status(OPERATOR, "acme", alert.id, "acknowledged")
    _use(container, secret, "198.51.100.7", status=403, times=4)
    container.usage.flush()
    assert len(container.detection.find(OPERATOR, "acme")) == 1  # a new one after the close
    assert len(container.detection.find(OPERATOR, "acme", statuses=("closed",))) == 1


def test_alerts_are_for_the_organizations_admins_only(container: Container, init: InitResult) -> None:
    bob = container.directory.add_user(OPERATOR, "acme", "bob@acme.test").user
    with pytest.raises(Forbidden):
        container.detection.find(actor_of(bob), "acme")
    with pytest.raises(Forbidden):
        container.detection.set_policy(actor_of(bob), "acme", {"enabled": False})
    other = container.directory.add_org("globex", "boss@globex.test")
    with pytest.raises(NotFound):
        container.detection.set_status(actor_of(other.admin), "globex", "no-such-alert", "closed")
