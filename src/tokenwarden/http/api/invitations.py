"""Invitations: an organization asks an identity that already exists to join; the identity
answers with its own credential (its consent), and nobody else can."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tokenwarden.http.api.admin import invitation_json
from tokenwarden.http.auth import authenticate
from tokenwarden.http.deps import container

router = APIRouter(prefix="/api/v1/invitations", tags=["invitations"])
READ, ANSWER = "vso.profile", "vso.profile_write"


@router.get("")
def my_invitations(request: Request) -> dict[str, Any]:
    """The pending invitations addressed to the caller."""
    c = container(request)
    caller, actor = authenticate(request, c.validator, READ)
    found = c.directory.invitations_for(actor)
    return {"value": [invitation_json(inv, caller.user.upn, org.name) for inv, org in found]}


@router.post("/{invitation_id}/accept")
def accept(request: Request, invitation_id: str) -> dict[str, Any]:
    """Join the inviting organization with the role it offered."""
    c = container(request)
    caller, actor = authenticate(request, c.validator, ANSWER)
    answered = c.directory.answer_invitation(actor, invitation_id, accept=True)
    return invitation_json(answered, caller.user.upn, c.directory.find_org(answered.org_id).name)


@router.post("/{invitation_id}/decline")
def decline(request: Request, invitation_id: str) -> dict[str, Any]:
    c = container(request)
    caller, actor = authenticate(request, c.validator, ANSWER)
    answered = c.directory.answer_invitation(actor, invitation_id, accept=False)
    return invitation_json(answered, caller.user.upn, c.directory.find_org(answered.org_id).name)
