"""Rendering of lifecycle notifications: every template, escaping, the facts a warning must
carry, and the webhook body."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tokenwarden.services.messages import (
    EVENT_TYPES,
    TEMPLATES,
    email_for,
    render_email,
    webhook_body,
)

TOKEN_ID = "3f0c9a52-6b1e-4d7a-9a51-0e2b7c1d4f60"
XSS = "<img src=x onerror=alert(1)>"


def token(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": TOKEN_ID,
        "displayName": "ci-deploy",
        "kind": "pat",
        "scopes": ["vso.code_write", "vso.build_execute"],
        "validTo": "2026-12-31T08:00:00Z",
        "daysLeft": 7,
        "threshold": 7,
        "managedByRotation": False,
        "renewalBlocked": None,
        "owner": "alice@example.com",
        "lastUsedAt": "2026-11-02T10:30:00Z",
        "revokeAt": "2027-01-15T08:00:00Z",
        "reason": "dormant",
        "violations": ["lifetime of 365 days exceeds the maximum of 90"],
        "graceUntil": "2026-12-20T00:00:00Z",
        "action": "revoke",
    }
    base.update(changes)
    return base


def payload(*tokens: dict[str, Any], role: str = "owner", digest: bool = False) -> dict[str, Any]:
    owner = (
        {"upn": "alice@example.com", "displayName": "Alice Example"} if role != "securityContact" else None
    )
    return {
        "org": {"id": "org-1", "name": "acme"},
        "recipient": {"address": "alice@example.com", "role": role},
        "owner": owner,
        "digest": digest,
        "baseUrl": "https://tw.example.com/",
        "tokens": list(tokens) or [token()],
    }


def report_payload() -> dict[str, Any]:
    weeks = [{"weekStart": f"2026-12-{day:02d}", "count": n} for day, n in [(7, 4), (14, 0), (21, 8)]]
    return {
        "org": {"id": "org-1", "name": "acme"},
        "recipient": {"address": "sec@example.com", "role": "securityContact"},
        "baseUrl": None,
        "report": {
            "period": {"start": "2026-11-30T00:00:00Z", "end": "2026-12-07T00:00:00Z"},
            "counts": {"activeTokens": 120, "fullScope": 3},
            "expiringPerWeek": weeks,
            "expiringSoon": [
                {
                    "displayName": XSS,
                    "owner": "bob@example.com",
                    "validTo": "2026-12-09T00:00:00Z",
                    "id": "t1",
                }
            ],
            "dormant": [{"displayName": "old", "owner": "bob@example.com", "lastUsedAt": None, "id": "t2"}],
            "topUsers": [{"upn": "alice@example.com", "tokens": 12}],
        },
    }


TOKEN_TEMPLATES = sorted(
    TEMPLATES - {"weekly-report", "rotation-completed", "rotation-failed", "security-alert"}
)


@pytest.mark.parametrize("template", TOKEN_TEMPLATES)
@pytest.mark.parametrize("role", ["owner", "watcher", "securityContact"])
@pytest.mark.parametrize("digest", [False, True])
def test_every_token_template_renders(template: str, role: str, digest: bool) -> None:
    tokens = [token(), token(id="t-2", displayName="nightly", managedByRotation=True, lastUsedAt=None)]
    data = payload(*(tokens if digest else tokens[:1]), role=role, digest=digest)
    rendered = render_email(template, data, message_id="m-1")
    assert rendered.subject
    assert "\n" not in rendered.subject
    assert len(rendered.subject) <= 200
    for body in (rendered.text, rendered.html):
        assert "ci-deploy" in body
        assert TOKEN_ID in body
        assert "acme" in body
    assert rendered.html.startswith("<!DOCTYPE html>")
    assert "<script" not in rendered.html
    assert "src=" not in rendered.html  # no external images
    if digest:
        assert "nightly" in rendered.text
        assert "2 " in rendered.subject


def test_warning_text_carries_every_fact() -> None:
    rendered = render_email("expiry-warning", payload(token()), message_id="m-1")
    assert rendered.subject == "Your token 'ci-deploy' expires in 7 days"
    text = rendered.text
    for fact in (
        TOKEN_ID,
        "vso.code_write, vso.build_execute",
        "2026-12-31 08:00 UTC",
        "in 7 days",
        "not managed by rotation",
        f"tokenwarden pat extend {TOKEN_ID} --days N",
        f'POST https://tw.example.com/api/v1/orgs/acme/pats/{TOKEN_ID}/extend with {{"days": N}}',
        f"tokenwarden pat regenerate {TOKEN_ID}",
        f"POST https://tw.example.com/api/v1/orgs/acme/pats/{TOKEN_ID}/regenerate",
    ):
        assert fact in text, fact
    assert f"tokenwarden pat extend {TOKEN_ID} --days N" in rendered.html


def test_warning_digest_subject_and_rotation() -> None:
    tokens = [token(), token(id="b", displayName="b", managedByRotation=True), token(id="c", displayName="c")]
    rendered = render_email("expiry-warning", payload(*tokens, digest=True), message_id="m-1")
    assert rendered.subject == "3 of your tokens expire soon"
    assert "managed by rotation. A new secret is issued" in rendered.text
    security = render_email(
        "expiry-warning", payload(*tokens, role="securityContact", digest=True), message_id="m"
    )
    assert security.subject == "3 tokens in acme expire soon"
    assert "Owner:       alice@example.com" in security.text
    assert "security contact of acme" in security.text


def test_renewal_blocked_is_said_plainly() -> None:
    blocked = token(renewalBlocked="tokens may live at most 90 days and this one is full scope")
    rendered = render_email("expiry-warning", payload(blocked), message_id="m-1")
    squashed = " ".join(rendered.text.split())
    assert (
        "the policy of acme will block extending or regenerating this token: "
        "tokens may live at most 90 days and this one is full scope"
    ) in squashed
    assert "tokens may live at most 90 days and this one is full scope" in rendered.html
    assert "pat extend" not in rendered.text  # it would be refused: no instructions that fail


def test_days_left_wording() -> None:
    assert render_email("expiry-warning", payload(token(daysLeft=1)), message_id="m").subject.endswith(
        "expires in 1 day"
    )
    assert render_email("expiry-warning", payload(token(daysLeft=0)), message_id="m").subject.endswith(
        "expires today"
    )


def test_dormant_and_policy_texts() -> None:
    never = render_email("dormant-warning", payload(token(lastUsedAt=None)), message_id="m")
    assert "since it was created (never)" in never.text
    assert "revoked at 2027-01-15 08:00 UTC unless it is used" in never.text
    revoked = render_email("dormant-revoked", payload(token()), message_id="m")
    assert "revoked because it was not used since 2026-11-02 10:30 UTC (reason: dormant)" in revoked.text
    violation = render_email("policy-violation", payload(token()), message_id="m")
    assert "lifetime of 365 days exceeds the maximum of 90" in violation.text
    assert "revoke, at 2026-12-20 00:00 UTC unless the token complies" in violation.text
    enforced = render_email("policy-enforced", payload(token()), message_id="m")
    assert enforced.subject == "Policy enforced on your token 'ci-deploy': revoke"
    expired = render_email("token-expired", payload(token()), message_id="m")
    assert "expired at 2026-12-31 08:00 UTC" in expired.text
    assert "create a new one" in expired.text


def test_html_escapes_display_names_and_text_keeps_them() -> None:
    data = payload(token(displayName=XSS, violations=[XSS], renewalBlocked=XSS))
    for template in TOKEN_TEMPLATES:
        rendered = render_email(template, data, message_id="m")
        assert XSS not in rendered.html, template
        assert "&lt;img src=x onerror=alert(1)&gt;" in rendered.html, template
        assert XSS in rendered.text, template
    org = payload(token())
    org["org"]["name"] = "a/b <c>"
    rendered = render_email("expiry-warning", org, message_id="m")
    assert "/api/v1/orgs/a%2Fb%20%3Cc%3E/pats/" in rendered.text
    assert "<c>" not in rendered.html


def test_subject_is_one_line() -> None:
    rendered = render_email("expiry-warning", payload(token(displayName="two\r\nlines")), message_id="m")
    assert rendered.subject == "Your token 'two lines' expires in 7 days"


def test_weekly_report() -> None:
    rendered = render_email("weekly-report", report_payload(), message_id="m")
    assert rendered.subject == "Weekly token report for acme: 2026-11-30 to 2026-12-07"
    lines = rendered.text.splitlines()
    assert any(line.strip().startswith("2026-12-07  ####") and line.strip().endswith(" 4") for line in lines)
    assert any(line.strip().startswith("2026-12-21  " + "#" * 40) for line in lines)
    assert any(line.split() == ["2026-12-14", "0"] for line in lines)
    assert "Active tokens" in rendered.text
    assert "alice@example.com: 12 tokens" in rendered.text
    html = rendered.html
    assert 'width="50%" bgcolor="#0969da"' in html  # 4 of a peak of 8
    assert 'width="100%" bgcolor="#0969da"' in html
    assert XSS not in html
    assert "&lt;img" in html


@pytest.mark.parametrize(
    "report",
    [{}, {"counts": {}}, {"expiringPerWeek": []}, {"expiringPerWeek": [{"weekStart": "2026-12-07"}]}],
)
def test_weekly_report_tolerates_missing_keys(report: dict[str, Any]) -> None:
    data = report_payload()
    data["report"] = report
    rendered = render_email("weekly-report", data, message_id="m")
    assert "Weekly token report for acme" in rendered.text
    missing = copy.deepcopy(data)
    del missing["report"]
    del missing["baseUrl"]
    assert render_email("weekly-report", missing, message_id="m").subject == "Weekly token report for acme"


def test_unknown_template() -> None:
    with pytest.raises(ValueError, match="unknown message template 'nope'"):
        render_email("nope", payload(), message_id="m")
    with pytest.raises(ValueError, match="unknown message template"):
        webhook_body("../etc/passwd", {}, message_id="m", created_at=datetime.now(UTC))


def test_email_for() -> None:
    message = email_for("alice@example.com", "expiry-warning", payload(), "msg-1@tokenwarden")
    assert message.to == "alice@example.com"
    assert message.message_id == "msg-1@tokenwarden"
    assert message.subject == "Your token 'ci-deploy' expires in 7 days"
    assert message.html is not None
    assert message.headers["Auto-Submitted"] == "auto-generated"


def test_webhook_body_shape() -> None:
    data = payload()
    body = webhook_body(
        "expiry-warning", data, message_id="msg-1", created_at=datetime(2026, 12, 24, 8, tzinfo=UTC)
    )
    assert b" " not in body.split(b'"data"')[0]  # compact
    decoded = json.loads(body)
    assert list(decoded) == ["type", "id", "timestamp", "data"]
    assert decoded == {
        "type": "token.expiring",
        "id": "msg-1",
        "timestamp": "2026-12-24T08:00:00Z",
        "data": data,
    }
    assert set(EVENT_TYPES) == TEMPLATES
    assert len(set(EVENT_TYPES.values())) == len(EVENT_TYPES)
    naive = webhook_body("weekly-report", {}, message_id="m", created_at=datetime(2026, 1, 2, 3, 4, 5))
    assert json.loads(naive)["timestamp"] == "2026-01-02T03:04:05Z"


def rotation_payload(step: str, reason: str = "expiring", error: str | None = None) -> dict[str, object]:
    return {
        "org": {"id": "o-1", "name": "acme"},
        "baseUrl": "https://tw.example.com",
        "credential": {
            "name": "ci-deploy",
            "store": "vault",
            "secretName": "ci-deploy-1a2b3c4d",
            "source": "local",
            "version": 4,
            "validTo": "2027-01-01T00:00:00+00:00",
            "authorizationId": TOKEN_ID,
        },
        "rotation": {
            "id": "r-1",
            "step": step,
            "reason": reason,
            "trigger": "schedule",
            "predecessorId": "old-id",
            "successorId": "new-id",
            "error": error,
            "predecessorLive": step != "done",
        },
    }


@pytest.mark.parametrize(
    ("template", "step", "reason", "subject"),
    [
        ("rotation-completed", "done", "expiring", "'ci-deploy' was rotated (version 4)"),
        (
            "rotation-completed",
            "done",
            "compromised",
            "Emergency rotation of 'ci-deploy' done: the compromised token is revoked",
        ),
        (
            "rotation-failed",
            "rolled_back",
            "expiring",
            "Rotation of 'ci-deploy' failed: rolled back, the current token is kept",
        ),
        ("rotation-failed", "promoted", "expiring", "Rotation of 'ci-deploy' failed: stuck at step promoted"),
        (
            "rotation-failed",
            "failed",
            "compromised",
            "Rotation of 'ci-deploy' failed: the source refused a new token",
        ),
    ],
)
def test_rotation_templates(template: str, step: str, reason: str, subject: str) -> None:
    rendered = render_email(template, rotation_payload(step, reason, error=XSS), message_id="m")
    assert rendered.subject == subject
    for body in (rendered.text, rendered.html):
        assert "ci-deploy-1a2b3c4d" in body and "acme" in body
    if template == "rotation-failed":
        assert XSS in rendered.text and XSS not in rendered.html
        assert "tokenwarden rotate now ci-deploy --org acme" in rendered.text
        if step == "promoted":
            assert "old-id could not be revoked and is still live" in rendered.text
        if reason == "compromised":
            assert f"tokenwarden pat revoke {TOKEN_ID} --reason compromised" in rendered.text
