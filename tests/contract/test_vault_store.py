"""The Vault / OpenBao KV v2 store passes the secret store contract against a real OpenBao dev server."""

from __future__ import annotations

from collections.abc import Iterator

import hvac
import pytest

from tests.contract.secret_store_contract import SecretStoreContract, meta, unique
from tests.support.ports import free_port
from tests.support.servers import BAO_ROOT_TOKEN, bao_server
from tokenwarden.adapters.secrets.vault import VaultSecretStore

ROOT_TOKEN = BAO_ROOT_TOKEN


@pytest.fixture(scope="module")
def bao_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with bao_server(tmp_path_factory.mktemp("bao")) as url:
        yield url


class TestVaultStore(SecretStoreContract):
    @pytest.fixture
    def store(self, bao_url: str) -> VaultSecretStore:
        return VaultSecretStore(bao_url, token=ROOT_TOKEN, mount="secret")

    @pytest.fixture
    def broken_store(self) -> VaultSecretStore:
        return VaultSecretStore(f"http://127.0.0.1:{free_port()}", token=ROOT_TOKEN, timeout=1.0)


def test_approle_login(bao_url: str) -> None:
    admin = hvac.Client(url=bao_url, token=ROOT_TOKEN)
    if "approle/" not in admin.sys.list_auth_methods()["data"]:
        admin.sys.enable_auth_method("approle")
    admin.sys.create_or_update_policy(
        "tokenwarden",
        'path "secret/*" { capabilities = ["create", "read", "update", "delete", "list"] }',
    )
    admin.auth.approle.create_or_update_approle("tokenwarden", token_policies=["tokenwarden"])
    role_id = admin.auth.approle.read_role_id("tokenwarden")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("tokenwarden")["data"]["secret_id"]

    store = VaultSecretStore(bao_url, role_id=role_id, secret_id=secret_id, mount="secret")
    store.check()
    name = unique()
    version = store.write(name, "twp_approle", meta())
    got = store.read(name)
    assert got is not None and got.value == "twp_approle" and got.version == version
    assert store.current_version(name) == version
    raw = admin.secrets.kv.v2.read_secret_metadata(store.secret_name(name), mount_point="secret")
    assert raw["data"]["custom_metadata"]["tag.managed-by"] == "tokenwarden"
    store.delete(name)
    assert store.read(name) is None
