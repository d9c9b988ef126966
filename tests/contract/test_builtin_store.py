"""The built-in store passes the secret store contract on SQLite and PostgreSQL; sealed values
are bound to their row and key; rotation of the key re-seals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, update

from tests.contract.secret_store_contract import SecretStoreContract, meta, unique
from tokenwarden.adapters.secrets.builtin import BuiltinSecretStore
from tokenwarden.adapters.secrets.keyring import Keyring, load_keyring
from tokenwarden.adapters.sql.tables import secret_versions
from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.ports.secrets import SecretStoreError

KEYS = Keyring.parse(Keyring.new_line("k1"))


class TestBuiltinStore(SecretStoreContract):
    @pytest.fixture
    def store(self, sql_db: SqlDatabase) -> BuiltinSecretStore:
        return BuiltinSecretStore(sql_db.engine, KEYS)

    @pytest.fixture
    def broken_store(self, tmp_path: Path) -> Iterator[BuiltinSecretStore]:
        engine = create_engine(f"sqlite:///{(tmp_path / 'nothing-here.db').as_posix()}")  # no tables
        yield BuiltinSecretStore(engine, KEYS)
        engine.dispose()


def test_values_are_sealed_at_rest_and_bound_to_their_row(sql_db: SqlDatabase) -> None:
    store = BuiltinSecretStore(sql_db.engine, KEYS)
    a, b = unique(), unique()
    va = store.write(a, "twp_plaintext_marker", meta())
    vb = store.write(b, "twp_other", meta())
    with sql_db.engine.begin() as conn:
        sealed = conn.execute(select(secret_versions.c.sealed)).scalars().all()
        assert all(b"plaintext_marker" not in blob for blob in sealed)
        blob_a = conn.execute(
            select(secret_versions.c.sealed).where(secret_versions.c.name == store.secret_name(a))
        ).scalar_one()
        conn.execute(
            update(secret_versions)
            .where(secret_versions.c.name == store.secret_name(b))
            .values(sealed=blob_a)
        )
    assert store.read(a, va).value == "twp_plaintext_marker"  # type: ignore[union-attr]
    with pytest.raises(SecretStoreError) as caught:
        store.read(b, vb)
    assert caught.value.code == "secretTampered"


def test_key_rotation_keeps_old_versions_readable_and_rekey_reseals(sql_db: SqlDatabase) -> None:
    old = BuiltinSecretStore(sql_db.engine, KEYS)
    name = unique()
    old.promote(name, old.write(name, "twp_before", meta()))
    rotated = Keyring(((*Keyring.parse(Keyring.new_line("k2")).current,), KEYS.current))
    store = BuiltinSecretStore(sql_db.engine, rotated)
    assert store.read(name).value == "twp_before"  # type: ignore[union-attr]
    assert store.rekey() >= 1
    only_new = BuiltinSecretStore(sql_db.engine, Keyring(rotated.keys[:1]))
    assert only_new.read(name).value == "twp_before"  # type: ignore[union-attr]
    with pytest.raises(SecretStoreError) as caught:
        old.read(name)
    assert caught.value.code == "secretStoreKeyMissing"


def test_key_file_is_created_0600_and_bad_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "d" / "secret-store.key"
    ring = load_keyring(None, path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_keyring(None, path) == ring
    for bad in ("k1:short", "nocolon", "k1:" + "A" * 44 + ",k1:" + "A" * 44, ""):
        with pytest.raises(InvalidInput):
            Keyring.parse(bad)
