"""The `rotate` response: an alert on a managed credential's token rotates the credential at
once (the leaked token dies, the store serves a new one) — SQLite, the built-in store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tokenwarden.bootstrap import build
from tokenwarden.domain.errors import Unauthenticated
from tokenwarden.domain.managed import StoreKind
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.managed import NewCredential
from tokenwarden.settings import Settings


def test_an_alert_on_a_managed_token_rotates_its_credential(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'data' / 'tw.db'}",
        scheduler_enabled=False,
        rotation_batch_pause_seconds=0.0,
    )
    c = build(settings, create_pepper=True)
    c.database.upgrade()
    try:
        c.directory.initialize("Acme", "admin@acme.test")
        c.directory.add_user(OPERATOR, "Acme", "ci-bot@acme.test")
        issued = c.pats.create(
            OPERATOR,
            org="Acme",
            user="ci-bot@acme.test",
            display_name="deploy token",
            scope="vso.code",
            valid_to=datetime.now(UTC) + timedelta(days=20),
        )
        cred = c.managed.add(
            OPERATOR,
            "Acme",
            NewCredential(name="ci-deploy", authorization_id=issued.record.authorization_id, store="builtin"),
        )
        c.detection.set_policy(
            OPERATOR,
            "Acme",
            {
                "learningDays": 0,
                "allowedNetworks": ["10.0.0.0/8"],
                "responses": {"high": ["notify", "rotate"]},
            },
        )
        key = c.validator.validate(issued.secret).key
        c.usage.recorder.record(key, "203.0.113.66", "exfil/1", "pats", 200)
        c.usage.flush()
        [alert] = c.detection.find(OPERATOR, "Acme")
        assert alert.rule == "unknownNetwork" and alert.responses == ("rotate",)
        with c.uow() as uow:
            now = uow.managed.get(cred.id)
            old = uow.tokens.get(issued.record.authorization_id)
        assert now is not None and now.authorization_id != issued.record.authorization_id
        assert old is not None and old.revoked_at is not None  # compromised: no overlap
        stored = c.stores(StoreKind.BUILTIN).read(now.secret_name)
        assert stored is not None
        c.validator.sync()
        c.validator.validate(stored.value)  # the successor works
        try:
            c.validator.validate(issued.secret)
        except Unauthenticated:
            pass
        else:
            raise AssertionError("the leaked token still works")
    finally:
        c.database.dispose()
