"""A real third-party OAuth client (authlib's requests OAuth2Session) against a real
``tokenwarden serve`` process, and a small resource server that validates by introspection
and sees a revocation at once."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from authlib.integrations.requests_client import OAuth2Session

from tests.e2e.conftest import LiveServer
from tokenwarden.bootstrap import build
from tokenwarden.domain.oauth import GrantType, OAuthClient
from tokenwarden.services.common import OPERATOR
from tokenwarden.settings import Settings

pytestmark = pytest.mark.slow


def register_service_client(data_dir: Path) -> tuple[str, str]:
    """A confidential client allowed client_credentials, written to the server's database."""
    c = build(Settings(data_dir=data_dir))
    try:
        secret = secrets.token_urlsafe(32)
        client_id = "svc-" + secrets.token_hex(4)
        principal = c.directory.add_user(OPERATOR, "Acme", f"{client_id}@clients.acme").user
        org = c.directory.find_org("Acme")
        with c.uow() as uow:
            uow.oauth.add_client(
                OAuthClient(
                    client_id=client_id,
                    org_id=org.id,
                    name="resource server",
                    public=False,
                    redirect_uris=(),
                    grant_types=(GrantType.CLIENT_CREDENTIALS,),
                    scopes=("vso.code", "vso.build"),
                    created_at=c.clock.now(),
                    secret_hash=c.hasher.hash(secret),
                    pepper_id=c.hasher.current_id,
                    service_user_id=principal.id,
                )
            )
            uow.commit()
        return client_id, secret
    finally:
        c.close()


class ResourceServer:
    """GET / answers 200 for a Bearer token the authorization server says is active."""

    def __init__(self, introspect_url: str, client_id: str, secret: str) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                header = self.headers.get("Authorization", "")
                token = header.removeprefix("Bearer ").strip()
                answer = httpx.post(introspect_url, data={"token": token}, auth=(client_id, secret)).json()
                outer.answers.append(answer)
                self.send_response(200 if answer.get("active") else 401)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.answers: list[dict[str, object]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def resource(live_server: LiveServer, tmp_path: Path) -> Iterator[tuple[ResourceServer, str, str]]:
    client_id, secret = register_service_client(tmp_path / "data")
    rs = ResourceServer(f"{live_server.base_url}/oauth2/introspect", client_id, secret)
    yield rs, client_id, secret
    rs.close()


def test_oauth2session_client_credentials_then_revoke_is_seen_by_the_resource_server_at_once(
    live_server: LiveServer, resource: tuple[ResourceServer, str, str]
) -> None:
    rs, client_id, secret = resource
    meta = httpx.get(f"{live_server.base_url}/.well-known/oauth-authorization-server").json()
    session = OAuth2Session(client_id, secret, scope="vso.build")
    token = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    assert token["token_type"] == "Bearer" and "refresh_token" not in token
    assert session.get(rs.url).status_code == 200
    assert rs.answers[-1]["client_id"] == client_id and rs.answers[-1]["scope"] == "vso.build"
    revoked = session.revoke_token(meta["revocation_endpoint"], token["access_token"])
    assert revoked.status_code == 200
    assert session.get(rs.url).status_code == 401
    assert rs.answers[-1] == {"active": False}
