"""The SCIM resources tokenwarden serves, built on scim2-models, with the tolerances real
identity providers need (docs/compat.md): Okta's ``@okta.local`` addresses (not deliverable, so
refused by an e-mail validator), Entra's bare-string ``manager``, Entra's value-carrying member
removal and its PATCH paths whose filter matches nothing yet."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, ClassVar, Final

import scim2_models as scim
from pydantic import Field, field_validator

CORE_USER: Final = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE: Final = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE_GROUP: Final = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_RESPONSE: Final = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP: Final = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST: Final = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
KNOWN_SCHEMAS: Final = frozenset({CORE_USER.lower(), ENTERPRISE.lower(), CORE_GROUP.lower()})


class Email(scim.Email):
    """An e-mail address of the user: any string, as identity providers send placeholders."""

    value: str | None = None


class User(scim.User[Any]):
    """User Account"""

    emails: list[Email] | None = None  # type: ignore[assignment]
    Emails: ClassVar[type[scim.ComplexAttribute]] = Email


class Manager(scim.Manager):
    """The user's manager; ``$ref`` optional (Entra sends the id alone)."""

    ref: Annotated[scim.Reference[User] | None, scim.Required.false] = Field(  # type: ignore[assignment]
        None, serialization_alias="$ref", validation_alias="$ref"
    )


class EnterpriseUser(scim.EnterpriseUser):
    """Enterprise User"""

    manager: Manager | None = None

    @field_validator("manager", mode="before")
    @classmethod
    def _bare_manager(cls, value: Any) -> Any:
        """Entra ID writes ``"manager": "<id>"`` rather than ``{"value": "<id>"}``."""
        if isinstance(value, str):
            return {"value": value} if value else None
        return value


Group = scim.Group
FullUser = User.__class_getitem__(
    EnterpriseUser
)  # the library's own spelling: mypy reads User[...] as a type

POLICY: Final = scim.ScimPolicy(
    remove_value_as_filter=scim.ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=scim.ScimPolicy.UnmatchedPathFilter.create,
)

SERVICE_CONFIG: Final = scim.ServiceProviderConfig(
    patch=scim.Patch(supported=True),
    bulk=scim.Bulk(supported=False, max_operations=0, max_payload_size=0),
    filter=scim.Filter(supported=True, max_results=1000),
    change_password=scim.ChangePassword(supported=False),
    sort=scim.Sort(supported=False),
    etag=scim.ETag(supported=True),
    authentication_schemes=[
        scim.AuthenticationScheme(
            type="oauthbearertoken",
            name="OAuth Bearer Token",
            description="A provisioning token from `tokenwarden scim token create` (scope scim.provision)",
            primary=True,
        )
    ],
)

PROVIDER: Final = scim.ScimProvider(
    models=[User, EnterpriseUser, Group],
    resource_types=[scim.ResourceType.from_resource(FullUser), scim.ResourceType.from_resource(Group)],
    config=SERVICE_CONFIG,
    policy=POLICY,
)


def comparison_key(value: str) -> str:
    """The form userName and displayName are compared in (case-insensitive, NFC)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).casefold())


def known_schemas_only(body: dict[str, Any]) -> dict[str, Any]:
    """Drop vendor schema URNs no attribute uses (Entra's ADSCIM group URN) from ``schemas``."""
    schemas = body.get("schemas")
    if not isinstance(schemas, list):
        return body
    keys = {k.lower() for k in body if isinstance(k, str)}
    kept = [s for s in schemas if not isinstance(s, str) or s.lower() in KNOWN_SCHEMAS or s.lower() in keys]
    return {**body, "schemas": kept} if len(kept) != len(schemas) else body
