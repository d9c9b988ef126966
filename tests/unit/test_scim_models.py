"""The SCIM resources read what Entra ID and Okta really send (issue 17, docs/compat.md), and
refuse what no identity provider may write."""

from __future__ import annotations

import json

import pytest
import scim2_models as scim

from tokenwarden.services.scim.documents import load, read, stored
from tokenwarden.services.scim.models import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE,
    PATCH_OP,
    EnterpriseUser,
    FullUser,
    Group,
)

CREATE = scim.Context.RESOURCE_CREATION_REQUEST
PATCH = scim.Context.RESOURCE_PATCH_REQUEST


def _okta_user() -> FullUser:
    body = {
        "schemas": [CORE_USER, ENTERPRISE],
        "userName": "ann@example.test",
        "id": "ignored-on-create",
        "active": True,
        "emails": [{"value": "ann@okta.local", "type": "work", "primary": True}],
        ENTERPRISE: {"manager": "123456", "department": "R&D"},
    }
    return read(FullUser, body, CREATE)


def test_okta_placeholder_email_and_entra_bare_manager_are_read() -> None:
    user = _okta_user()
    assert user.id is None  # read-only on creation
    assert user.emails is not None and user.emails[0].value == "ann@okta.local"
    assert user[EnterpriseUser].manager is not None and user[EnterpriseUser].manager.value == "123456"


def test_entra_patch_quirks_apply() -> None:
    user = _okta_user()
    patch = read(
        scim.PatchOp.__class_getitem__(FullUser),
        {
            "schemas": [PATCH_OP],
            "Operations": [
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "ann@contoso.test"},
                {"op": "Add", "value": {"displayName": "Ann", "name.givenName": "Ann"}},
            ],
        },
        PATCH,
    )
    assert patch.patch(user)
    assert user.active is False
    assert user.emails is not None and user.emails[0].value == "ann@contoso.test"
    assert user.display_name == "Ann" and user.name is not None and user.name.given_name == "Ann"


def test_patch_of_a_read_only_attribute_is_a_mutability_error() -> None:
    with pytest.raises(scim.SCIMException) as caught:
        read(
            scim.PatchOp.__class_getitem__(FullUser),
            {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "id", "value": "x"}]},
            PATCH,
        )
    assert caught.value.scim_type == "mutability" and caught.value.status == 400


def test_unknown_attribute_is_invalid_syntax() -> None:
    with pytest.raises(scim.SCIMException) as caught:
        read(FullUser, {"schemas": [CORE_USER], "userName": "a", "favouriteColour": "red"}, CREATE)
    assert caught.value.scim_type == "invalidSyntax" and "favouriteColour" in str(caught.value)


def test_entra_vendor_group_schema_is_tolerated() -> None:
    adscim = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
    group = read(Group, {"schemas": [CORE_GROUP, adscim], "displayName": "Admins"}, CREATE)
    assert group.display_name == "Admins"


def test_stored_document_round_trips_without_password_or_server_attributes() -> None:
    user = _okta_user()
    user.password = "s3cret-never-kept"
    doc = stored(user)
    assert "s3cret" not in doc and '"id"' not in doc
    back = load(FullUser, doc, {"id": "abc", "meta": {"resourceType": "User", "version": 'W/"3"'}})
    assert back.id == "abc" and back.user_name == "ann@example.test"
    assert json.loads(stored(back)) == json.loads(doc)
