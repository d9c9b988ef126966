"""`tokenwarden keys rotate|list`: a rotated key stops signing, stays in the JWKS, and the
access tokens it signed keep verifying."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli
from tokenwarden.bootstrap import build
from tokenwarden.services.signing import ES256
from tokenwarden.settings import Settings

pytestmark = pytest.mark.slow


def test_rotate_keeps_the_old_key_published_and_list_shows_both(tmp_path: Path) -> None:
    env = {**os.environ, "TOKENWARDEN_DATA_DIR": str(tmp_path / "data")}
    env.pop("TOKENWARDEN_DATABASE_URL", None)
    assert (
        run_cli(["init", "--org", "Acme", "--admin", "a@acme.test", "--json"], env, tmp_path).returncode == 0
    )
    c = build(Settings(data_dir=tmp_path / "data"))
    old_kid, _ = c.keys.active(ES256)
    signed_by_old = c.keys.sign({"jti": "x"}, typ="at+jwt", alg=ES256)
    rotated = run_cli(["keys", "rotate", "--json"], env, tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    result = json.loads(rotated.stdout)
    assert result["retired"] == [old_kid] and result["kid"] != old_kid
    listed = json.loads(run_cli(["keys", "list", "--json"], env, tmp_path).stdout)
    by_kid = {k["kid"]: k for k in listed}
    assert by_kid[old_kid]["status"] == "retiring" and by_kid[old_kid]["publishedUntil"]
    assert by_kid[result["kid"]]["status"] == "active"
    fresh = build(Settings(data_dir=tmp_path / "data"))
    assert fresh.keys.active(ES256)[0] == result["kid"]  # a node that reads the keys signs with the new one
    from tokenwarden.services.access_tokens import JwtVerifier

    assert JwtVerifier(fresh.keys)(signed_by_old)["jti"] == "x"  # the old key still verifies
    assert run_cli(["keys", "rotate", "--alg", "HS256"], env, tmp_path).returncode != 0
