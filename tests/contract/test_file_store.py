"""The file target passes the secret store contract; files are 0600 and written atomically."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.contract.secret_store_contract import SecretStoreContract, meta, unique
from tokenwarden.adapters.secrets.file import FileSecretStore


class TestFileStore(SecretStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> FileSecretStore:
        return FileSecretStore(tmp_path / "secrets")

    @pytest.fixture
    def broken_store(self, tmp_path: Path) -> FileSecretStore:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("x")
        return FileSecretStore(blocker / "secrets")


def test_served_file_is_0600_and_holds_only_the_value(tmp_path: Path) -> None:
    store = FileSecretStore(tmp_path / "out")
    name = unique()
    version = store.write(name, "twp_value", meta())
    served = tmp_path / "out" / store.secret_name(name)
    assert not served.exists()  # staged: a CI runner never sees an unverified value
    store.promote(name, version)
    assert served.read_text() == "twp_value"
    assert stat.S_IMODE(served.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o700
    assert not list((tmp_path / "out").glob(".tmp-*"))
