"""Findings of an attacker's review of issue 10's changes, each pinned by a test."""

from __future__ import annotations

from datetime import timedelta

from tokenwarden.services.common import OPERATOR

from .conftest import Server


def pat(server: Server, upn: str, scope: str) -> str:
    return server.container.pats.create(
        OPERATOR,
        org=server.org,
        user=upn,
        display_name=scope,
        scope=scope,
        valid_to=server.container.clock.now() + timedelta(days=5),
    ).secret


def test_a_member_cannot_drain_the_orgs_security_event_stream(server: Server) -> None:
    c = server.client
    r = c.post("/ssf/stream", json={}, headers=server.auth())  # a poll stream, by the admin
    assert r.status_code == 201, r.text
    sid = r.json()["stream_id"]
    server.add_member("mallory@acme.test")
    mallory = pat(server, "mallory@acme.test", "ssf.read")
    body = {"returnImmediately": True, "ack": ["x"], "maxEvents": 0}
    r = c.post(f"/ssf/poll?stream_id={sid}", json=body, headers=server.auth(mallory))
    assert r.status_code == 403, r.text
    r = c.post(f"/ssf/poll?stream_id={sid}", json={"returnImmediately": True}, headers=server.auth(mallory))
    assert r.status_code == 403
    r = c.post(f"/ssf/poll?stream_id={sid}", json={"returnImmediately": True}, headers=server.auth())
    assert r.status_code == 200


def test_a_deeply_nested_complex_subject_is_a_400(server: Server) -> None:
    c = server.client
    sid = c.post("/ssf/stream", json={}, headers=server.auth()).json()["stream_id"]
    subject: dict[str, object] = {"format": "opaque", "id": "x"}
    for _ in range(700):
        subject = {"format": "complex", "user": subject}
    r = c.post("/ssf/subjects/add", json={"stream_id": sid, "subject": subject}, headers=server.auth())
    assert r.status_code == 400, r.text


def test_one_admin_cannot_lift_the_two_person_rule(server: Server) -> None:
    c, h = server.client, server.auth()
    r = c.patch(f"/api/v1/orgs/{server.org}/policy", json={"breakGlassTwoPerson": True}, headers=h)
    assert r.status_code == 200
    r = c.patch(f"/api/v1/orgs/{server.org}/policy", json={"breakGlassTwoPerson": False}, headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "twoPersonRuleLocked"
    server.container.policies.update(OPERATOR, server.org, break_glass_two_person=False)  # the operator can


def test_dates_out_of_range_after_the_zone_shift_are_400_everywhere(server: Server) -> None:
    c, h = server.client, server.auth()
    for value in ("9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59-23:59"):
        r = c.post(f"/api/v1/orgs/{server.org}/pats", json={"displayName": "x", "validTo": value}, headers=h)
        assert r.status_code == 400, (value, r.text)
        r = c.post(
            f"/{server.org}/_apis/tokens/pats?api-version=7.1-preview.1",
            json={"displayName": "x", "scope": "vso.code", "validTo": value},
            headers=h,
        )
        assert r.status_code in (200, 400) and r.status_code != 500, r.text
    for value in ("0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00+23:59"):
        r = c.post(
            f"/api/v1/orgs/{server.org}/revocation-rules",
            json={"createdBefore": value, "kinds": ["pat"]},
            headers=h,
        )
        assert r.status_code == 400, (value, r.text)
        r = c.get(f"/api/v1/orgs/{server.org}/audit", params={"since": value}, headers=h)
        assert r.status_code == 400, (value, r.text)
