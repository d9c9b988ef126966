"""The AWS Secrets Manager store passes the secret store contract against a local moto_server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import pytest

from tests.contract.secret_store_contract import SecretStoreContract, meta, unique
from tests.support.ports import free_port
from tests.support.servers import moto_server
from tokenwarden.adapters.secrets.aws import AwsSecretStore


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        yield url


def _client(url: str, **config: Any) -> Any:
    return boto3.client(
        "secretsmanager",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=botocore.config.Config(**config),
    )


class TestAwsStore(SecretStoreContract):
    @pytest.fixture
    def store(self, moto_url: str) -> AwsSecretStore:
        return AwsSecretStore(endpoint_url=moto_url)

    @pytest.fixture
    def broken_store(self) -> AwsSecretStore:
        client = _client(
            f"http://127.0.0.1:{free_port()}",
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=1,
            read_timeout=1,
        )
        return AwsSecretStore(client=client)


def test_staging_labels_follow_promotion(moto_url: str) -> None:
    client = _client(moto_url)
    store = AwsSecretStore(client=client)
    name = unique()
    sname = store.secret_name(name)
    v1 = store.write(name, "twp_one", meta())
    store.promote(name, v1)
    v2 = store.write(name, "twp_two", meta())
    assert "AWSPENDING" in client.describe_secret(SecretId=sname)["VersionIdsToStages"][v2]
    store.promote(name, v2)
    stages = client.describe_secret(SecretId=sname)["VersionIdsToStages"]
    assert stages[v2] == ["AWSCURRENT"]
    assert stages[v1] == ["AWSPREVIOUS"]
