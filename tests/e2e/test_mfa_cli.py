"""`tokenwarden policy set --admins-require-mfa` (the operator turns the MFA policy on and off)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.e2e.conftest import run_cli


def test_the_operator_sets_the_mfa_policy(tmp_path: Path) -> None:
    env = {**os.environ, "TOKENWARDEN_DATA_DIR": str(tmp_path / "data")}
    env.pop("TOKENWARDEN_DATABASE_URL", None)
    assert (
        run_cli(["init", "--org", "acme", "--admin", "a@acme.test", "--json"], env, tmp_path).returncode == 0
    )
    on = run_cli(["policy", "set", "--admins-require-mfa", "--json"], env, tmp_path)
    assert on.returncode == 0, on.stderr
    assert json.loads(on.stdout)["adminsRequireMfa"] is True
    off = run_cli(["policy", "set", "--admins-mfa-optional", "--json"], env, tmp_path)
    assert json.loads(off.stdout)["adminsRequireMfa"] is False
    shown = run_cli(["policy", "show", "--json"], env, tmp_path)
    assert json.loads(shown.stdout)["adminsRequireMfa"] is False


def test_the_operator_resets_a_lost_factor(tmp_path: Path) -> None:
    env = {**os.environ, "TOKENWARDEN_DATA_DIR": str(tmp_path / "data")}
    env.pop("TOKENWARDEN_DATABASE_URL", None)
    assert run_cli(["init", "--org", "acme", "--admin", "a@acme.test"], env, tmp_path).returncode == 0
    none = run_cli(["user", "mfa-reset", "a@acme.test", "--json"], env, tmp_path)
    assert none.returncode == 0, none.stderr
    assert json.loads(none.stdout) == {"upn": "a@acme.test", "reset": False}
    unknown = run_cli(["user", "mfa-reset", "nobody@acme.test"], env, tmp_path)
    assert unknown.returncode != 0 and "nobody@acme.test" in unknown.stderr + unknown.stdout
