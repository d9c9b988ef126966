"""The AWS Secrets Manager store passes the secret store contract against a local moto_server."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest

from tests.contract.secret_store_contract import SecretStoreContract, meta, unique
from tests.support.ports import free_port
from tokenwarden.adapters.secrets.aws import AwsSecretStore

MOTO_SERVER = Path(sys.executable).parent / "moto_server"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    if not MOTO_SERVER.exists():
        pytest.skip("moto_server is not installed")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(MOTO_SERVER), "-p", str(port), "-H", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answered
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("moto_server did not start")
                time.sleep(0.1)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_ACCESS_KEY_ID", "testing")
            mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            mp.delenv("AWS_SESSION_TOKEN", raising=False)
            mp.delenv("AWS_PROFILE", raising=False)
            yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


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
