"""Issue 10 §3: schemathesis over the whole OpenAPI document — no input is ever a 5xx.

Every operation is fuzzed with an organization administrator's token and with a plain member's
token, the ``{org}`` path parameter pinned to the real organization (so requests get past the
lookup and into the handlers). Bounded: a few examples per operation, derandomized so a run is
reproducible, no deadline.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from tests.e2e.conftest import make_settings
from tokenwarden.bootstrap import build
from tokenwarden.http.app import create_app
from tokenwarden.services.common import OPERATOR

MAX_EXAMPLES = 8
ORG = "Acme"

# The schema is loaded when the module is collected, so the app is built then (no background
# jobs: the fuzzer needs none); the fixture below tears it down after the module.
_TMP = Path(tempfile.mkdtemp(prefix="tw-fuzz-"))
_CONTAINER = build(make_settings(_TMP), create_pepper=True)
_CONTAINER.database.upgrade()
_ADMIN_TOKEN = _CONTAINER.directory.initialize(ORG, "admin@acme.test").token.secret
_CONTAINER.directory.add_user(OPERATOR, ORG, "member@acme.test")
_MEMBER_TOKEN = _CONTAINER.pats.create(
    OPERATOR,
    org=ORG,
    user="member@acme.test",
    display_name="fuzz",
    scope="app_token",
    valid_to=_CONTAINER.clock.now() + timedelta(days=1),
).secret
_APP = create_app(_CONTAINER, start_background=False)

schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@pytest.fixture(scope="module", autouse=True)
def _teardown() -> Iterator[None]:
    yield
    _CONTAINER.close()
    shutil.rmtree(_TMP, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_input_is_a_server_error(case: schemathesis.Case) -> None:
    if case.path_parameters and "org" in case.path_parameters:
        case.path_parameters["org"] = ORG
    for token in (_ADMIN_TOKEN, _MEMBER_TOKEN):
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error])
