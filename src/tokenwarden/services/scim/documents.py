"""Reading SCIM payloads into scim2-models resources and writing them back: validation errors
become SCIM errors (``scimType``), stored documents become resources with ``id`` and ``meta``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final, TypeVar

import scim2_models as scim
from pydantic import ValidationError

from tokenwarden.domain.clock import iso_z
from tokenwarden.services.scim.models import PROVIDER, known_schemas_only

M = TypeVar("M", bound=scim.BaseModel)
MAX_ERRORS: Final = 5


def validation_failure(exc: ValidationError) -> scim.SCIMException:
    """The SCIM error for a payload scim2-models refused: the first error's status and
    ``scimType``, every error's detail (up to five)."""
    errors = scim.Error.from_validation_errors(exc)
    first = errors[0]
    detail = "; ".join(e.detail or "invalid" for e in errors[:MAX_ERRORS])
    return scim.SCIMException.from_error(
        scim.Error(status=first.status or 400, scim_type=first.scim_type or "invalidValue", detail=detail)
    )


def read(model: type[M], body: Any, ctx: scim.Context) -> M:
    """Validate a request body as ``model`` in ``ctx`` under the provider's policy."""
    if not isinstance(body, dict):
        raise scim.InvalidSyntaxException(detail="the request body must be a JSON object")
    try:
        with PROVIDER:
            return model.model_validate(known_schemas_only(body), scim_ctx=ctx)
    except ValidationError as exc:
        raise validation_failure(exc) from None


def stored(resource: scim.Resource[Any]) -> str:
    """The document to keep: what a query would return, without ``id``, ``meta`` and the
    read-only ``groups`` (both are the server's), never a password."""
    with PROVIDER:
        doc = resource.model_dump(scim_ctx=scim.Context.RESOURCE_QUERY_RESPONSE)
    for key in ("id", "meta", "groups", "members"):
        doc.pop(key, None)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def etag(version: int) -> str:
    return f'W/"{version}"'


def meta(
    resource_type: str, created: datetime, modified: datetime, version: int, location: str
) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "created": iso_z(created),
        "lastModified": iso_z(modified),
        "version": etag(version),
        "location": location,
    }


def load(model: type[M], document: str, extra: dict[str, Any]) -> M:
    """A stored document (plus ``id``, ``meta`` and other server attributes) as a resource."""
    with PROVIDER:
        return model.model_validate({**json.loads(document), **extra}, scim_ctx=None)


def dump(
    resource: scim.Resource[Any],
    ctx: scim.Context,
    attributes: list[str] | None = None,
    excluded: list[str] | None = None,
) -> dict[str, Any]:
    """A resource as a response body, honouring ``attributes`` / ``excludedAttributes``."""
    params: scim.ResponseParameters[Any] | None = None
    if attributes or excluded:
        try:
            params = scim.ResponseParameters(
                attributes=attributes or None, excluded_attributes=excluded or None
            )
        except ValidationError as exc:
            raise validation_failure(exc) from None
    with PROVIDER:
        return resource.model_dump(scim_ctx=ctx, response_parameters=params)
