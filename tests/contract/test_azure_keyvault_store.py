"""The Azure Key Vault store passes the secret store contract through the real azure-keyvault-secrets
SDK, against a loopback TLS server following the Key Vault secrets REST API 7.4 (no emulator exists).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.keyvault.secrets import SecretClient

from tests.contract.secret_store_contract import SecretStoreContract, meta, unique
from tests.support.keyvault_server import TENANT_ID, TEST_TOKEN, KeyVaultServer
from tests.support.ports import free_port
from tokenwarden.adapters.secrets.azure_keyvault import PREVIOUS_TAG, AzureKeyVaultSecretStore
from tokenwarden.ports.secrets import SecretStoreError

KV_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")


class StaticCredential:
    """A TokenCredential that always issues ``token`` and records what it was asked for."""

    def __init__(self, token: str = TEST_TOKEN) -> None:
        self.token = token
        self.requests: list[tuple[tuple[str, ...], str | None]] = []

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.requests.append((scopes, tenant_id))
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture(scope="module")
def kv_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyVaultServer]:
    server = KeyVaultServer(tmp_path_factory.mktemp("keyvault")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kv(kv_module: KeyVaultServer) -> Iterator[KeyVaultServer]:
    kv_module.reset_faults()
    yield kv_module
    kv_module.reset_faults()


def make_store(kv: KeyVaultServer, **kwargs: Any) -> AzureKeyVaultSecretStore:
    kwargs.setdefault("credential", StaticCredential())
    return AzureKeyVaultSecretStore(kv.url, ca_bundle=str(kv.ca_path), timeout=5.0, **kwargs)


def raw_client(kv: KeyVaultServer) -> SecretClient:
    """What a consumer uses: the plain SDK client."""
    return SecretClient(
        kv.url,
        StaticCredential(),
        api_version="7.4",
        verify_challenge_resource=False,
        connection_verify=str(kv.ca_path),
    )


class TestAzureKeyVaultStore(SecretStoreContract):
    @pytest.fixture
    def store(self, kv: KeyVaultServer) -> AzureKeyVaultSecretStore:
        return make_store(kv)

    @pytest.fixture
    def broken_store(self, kv: KeyVaultServer) -> AzureKeyVaultSecretStore:
        return AzureKeyVaultSecretStore(
            f"https://127.0.0.1:{free_port()}",
            credential=StaticCredential(),
            ca_bundle=str(kv.ca_path),
            timeout=1.0,
            retries=0,
        )


# ----------------------------------------------------------------- names
def test_names_are_legal_key_vault_names(kv: KeyVaultServer) -> None:
    store = make_store(kv)
    name = unique("team/ci_deploy token")
    sname = store.secret_name(name)
    assert KV_NAME.fullmatch(sname), sname
    assert re.fullmatch(r"team-ci-deploy-token-[0-9a-f]{8}-[0-9a-f]{8}", sname), sname
    long_name = "x/" * 120
    assert KV_NAME.fullmatch(store.secret_name(long_name))
    # The server rejects illegal names, so a round trip proves the mapping is accepted.
    store.write(name, "twp_named", meta())
    assert sname in kv.secrets
    assert store.read(name).value == "twp_named"  # type: ignore[union-attr]


# ----------------------------------------------------------------- what Key Vault holds
def test_value_content_type_expiry_and_tags_are_native_fields(kv: KeyVaultServer) -> None:
    store = make_store(kv)
    name = unique()
    first = store.write(name, "twp_one", meta())
    second = store.write(name, "twp_two", meta(created="2026-12-02T00:00:00Z"))
    held = kv.secrets[store.secret_name(name)][-1]
    assert held.id == second
    assert held.value == "twp_two"
    assert held.content_type == "application/x-pat-token"
    assert held.exp == int(datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp())  # unix seconds
    assert held.tags["managed-by"] == "tokenwarden"
    assert held.tags["created"] == "2026-12-02T00:00:00Z"
    assert held.tags[PREVIOUS_TAG] == first  # bookkeeping for discard ...
    assert PREVIOUS_TAG not in store.read(name).tags  # type: ignore[union-attr]  # ... not a meta tag


def test_challenge_asks_for_the_vault_scope_and_tenant(kv: KeyVaultServer) -> None:
    credential = StaticCredential()
    store = make_store(kv, credential=credential)
    store.check()
    assert credential.requests
    scopes, tenant = credential.requests[0]
    assert scopes == ("https://vault.azure.net/.default",)
    assert tenant == TENANT_ID


def test_discard_rolls_back_for_a_plain_sdk_consumer(kv: KeyVaultServer) -> None:
    store = make_store(kv)
    name = unique()
    sname = store.secret_name(name)
    good = store.write(name, "twp_good", meta())
    bad = store.write(name, "twp_bad", meta())
    consumer = raw_client(kv)
    assert consumer.get_secret(sname).value == "twp_bad"  # not staged: current at once
    store.discard(name, bad)
    served = consumer.get_secret(sname)
    assert served.value == "twp_good"
    assert served.properties.version not in (good, bad)  # the good value, written again
    assert served.properties.content_type == "application/x-pat-token"
    assert [(v.id, v.enabled) for v in kv.secrets[sname]][:2] == [(good, True), (bad, False)]
    assert store.current_version(name) == served.properties.version


def test_discard_follows_the_chain_past_discarded_versions(kv: KeyVaultServer) -> None:
    store = make_store(kv)
    name = unique()
    good = store.write(name, "twp_good", meta())
    bad1 = store.write(name, "twp_bad1", meta())
    store.discard(name, bad1)
    bad2 = store.write(name, "twp_bad2", meta())
    store.discard(name, bad2)
    assert store.read(name).value == "twp_good"  # type: ignore[union-attr]
    assert store.read(name, good) is not None
    assert store.read(name, bad1) is None and store.read(name, bad2) is None


def test_discard_of_the_only_version_disables_it(kv: KeyVaultServer) -> None:
    store = make_store(kv)
    name = unique()
    only = store.write(name, "twp_only", meta())
    store.discard(name, only)
    assert [v.enabled for v in kv.secrets[store.secret_name(name)]] == [False]
    again = store.write(name, "twp_again", meta())  # the name is still usable
    assert store.current_version(name) == again


def test_delete_purges_unless_told_not_to(kv: KeyVaultServer) -> None:
    store = make_store(kv)
    name = unique()
    store.write(name, "twp_del", meta())
    store.delete(name)
    sname = store.secret_name(name)
    assert sname not in kv.secrets and sname not in kv.deleted

    keep = make_store(kv, purge_on_delete=False)
    other = unique()
    keep.write(other, "twp_del", meta())
    keep.delete(other)
    assert keep.secret_name(other) in kv.deleted  # soft-deleted, recoverable
    assert keep.read(other) is None


# ----------------------------------------------------------------- errors
def test_429_is_transient_with_retry_after(kv: KeyVaultServer) -> None:
    store = make_store(kv, retries=0)
    store.check()  # challenge done, so the fault hits the real request
    kv.fail_next(429, retry_after=7)
    with pytest.raises(SecretStoreError) as caught:
        store.write(unique(), "twp_throttled", meta())
    assert caught.value.transient
    assert caught.value.retry_after == 7.0
    assert "429" in str(caught.value)


def test_5xx_is_transient_and_retried_by_the_sdk(kv: KeyVaultServer) -> None:
    store = make_store(kv, retries=0)
    store.check()
    kv.fail_next(503)
    with pytest.raises(SecretStoreError) as caught:
        store.current_version(unique())
    assert caught.value.transient and caught.value.retry_after is None

    patient = make_store(kv, retries=2)
    kv.fail_next(500, retry_after=0)
    name = unique()
    version = patient.write(name, "twp_retried", meta())
    assert patient.current_version(name) == version


def test_wrong_bearer_token_is_a_clear_permanent_failure(kv: KeyVaultServer) -> None:
    store = make_store(kv, credential=StaticCredential("not-the-token"))
    for call in (store.check, lambda: store.write(unique(), "twp_denied", meta())):
        with pytest.raises(SecretStoreError) as caught:
            call()
        assert not caught.value.transient
        assert caught.value.code == "storeForbidden"
        message = str(caught.value)
        assert "authentication failed" in message and "HTTP 401" in message, message


def test_secret_value_never_appears_in_an_error(kv: KeyVaultServer) -> None:
    store = make_store(kv, retries=0)
    store.check()
    value = "twp_SENSITIVE_" + "s3cr3t" * 10
    kv.fail_next(500)
    with pytest.raises(SecretStoreError) as server_error:
        store.write(unique(), value, meta())
    with pytest.raises(SecretStoreError) as too_big:
        store.write(unique(), value * 500, meta())  # over the 25 KiB limit: 400 from the service
    assert not too_big.value.transient
    unreachable = AzureKeyVaultSecretStore(
        f"https://127.0.0.1:{free_port()}", credential=StaticCredential(), timeout=1.0, retries=0
    )
    with pytest.raises(SecretStoreError) as no_connection:
        unreachable.write(unique(), value, meta())
    assert no_connection.value.transient
    for caught in (server_error, too_big, no_connection):
        for text in (str(caught.value), repr(caught.value), str(caught.value.__cause__)):
            assert "SENSITIVE" not in text, text
