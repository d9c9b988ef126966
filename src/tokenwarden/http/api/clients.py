"""Native OAuth client registry: an organization's administrators manage its applications."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import Field

from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.oauth import OAuthClient
from tokenwarden.http.api.models import Body
from tokenwarden.http.deps import container, org_caller

router = APIRouter(prefix="/api/v1/orgs/{org}/clients", tags=["oauth clients"])
ADMIN = "vso.tokenadministration"

# Generous bounds on the wire (the body limit still applies); the service answers the precise
# rule — 20 redirect URIs of at most 2000 characters, a 128-character name — with its own code.
RedirectUri = Annotated[str, Field(max_length=8192)]
GrantName = Annotated[str, Field(max_length=64)]


class ClientCreate(Body):
    name: str = Field(max_length=10_000)
    redirect_uris: list[RedirectUri] = Field(default_factory=list, alias="redirectUris", max_length=1000)
    grant_types: list[GrantName] | None = Field(default=None, alias="grantTypes", max_length=100)
    scope: str | None = Field(default=None, max_length=10_000)
    public: bool = False


class ClientPatch(Body):
    name: str | None = Field(default=None, max_length=10_000)
    redirect_uris: list[RedirectUri] | None = Field(default=None, alias="redirectUris", max_length=1000)
    grant_types: list[GrantName] | None = Field(default=None, alias="grantTypes", max_length=100)
    scope: str | None = Field(default=None, max_length=10_000)
    status: Literal["active", "disabled"] | None = None


def client_json(client: OAuthClient, secret: str | None = None) -> dict[str, Any]:
    """The native representation; ``clientSecret`` only in the response that creates it."""
    data: dict[str, Any] = {
        "clientId": client.client_id,
        "name": client.name,
        "orgId": client.org_id,
        "public": client.public,
        "redirectUris": list(client.redirect_uris),
        "grantTypes": [g.value for g in client.grant_types],
        "scope": " ".join(client.scopes),
        "status": "disabled" if client.disabled_at is not None else "active",
        "serviceUserId": client.service_user_id,
        "createdAt": iso_z(client.created_at),
        "createdBy": client.created_by,
        "disabledAt": iso_z(client.disabled_at),
    }
    if secret is not None:
        data["clientSecret"] = secret
    return data


@router.post("", status_code=201)
def register_client(request: Request, org: str, body: ClientCreate) -> dict[str, Any]:
    """Register a client. A confidential client's ``clientSecret`` is in this response only.

    ``grantTypes`` default to authorization_code + refresh_token (then at least one redirect
    URI is required), ``scope`` to ``vso.profile``; the caller's token must hold every scope."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    registered = container(request).clients.register(
        actor,
        the_org.id,
        name=body.name,
        redirect_uris=body.redirect_uris,
        grants=body.grant_types,
        scope=body.scope,
        public=body.public,
    )
    return client_json(registered.client, registered.secret)


@router.get("")
def list_clients(request: Request, org: str) -> dict[str, Any]:
    """The organization's clients, oldest first (never their secrets)."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    clients = container(request).clients.list_clients(actor, the_org.id)
    return {"value": [client_json(c) for c in clients], "count": len(clients)}


@router.get("/{client_id}")
def get_client(request: Request, org: str, client_id: str) -> dict[str, Any]:
    the_org, _, actor = org_caller(request, org, ADMIN)
    return client_json(container(request).clients.get(actor, the_org.id, client_id))


@router.patch("/{client_id}")
def patch_client(request: Request, org: str, client_id: str, body: ClientPatch) -> dict[str, Any]:
    """Change name, redirect URIs, grants or scopes; ``status`` disables the client (every
    token issued to it dies at once) or enables it again. Fields left out keep their value."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    service = container(request).clients
    edits = (body.name, body.redirect_uris, body.grant_types, body.scope)
    if body.status is None or any(e is not None for e in edits):  # nothing at all: "no field to change"
        client = service.update(
            actor,
            the_org.id,
            client_id,
            name=body.name,
            redirect_uris=body.redirect_uris,
            grants=body.grant_types,
            scope=body.scope,
        )
    if body.status == "disabled":
        client = service.disable(actor, the_org.id, client_id)
    elif body.status == "active":
        client = service.enable(actor, the_org.id, client_id)
    return client_json(client)


@router.post("/{client_id}/secret")
def rotate_secret(request: Request, org: str, client_id: str) -> dict[str, Any]:
    """A new secret, in this response only; the old one stops working at once."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    rotated = container(request).clients.rotate_secret(actor, the_org.id, client_id)
    return client_json(rotated.client, rotated.secret)


@router.delete("/{client_id}", status_code=204)
def remove_client(request: Request, org: str, client_id: str) -> Response:
    """Remove the client: every token ever issued to it stops working on every node at once."""
    the_org, _, actor = org_caller(request, org, ADMIN)
    container(request).clients.remove(actor, the_org.id, client_id)
    return Response(status_code=204)
