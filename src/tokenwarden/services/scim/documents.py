"""Reading SCIM payloads into scim2-models resources and writing them back: validation errors
become SCIM errors (``scimType``), stored documents become resources with ``id`` and ``meta``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

import scim2_models as scim
from pydantic import ValidationError

from tokenwarden.domain.clock import iso_z
from tokenwarden.services.scim.models import LIST_RESPONSE, PROVIDER, comparison_key, known_schemas_only

M = TypeVar("M", bound=scim.BaseModel)
MAX_ERRORS: Final = 5
DEFAULT_COUNT: Final = 100
MAX_COUNT: Final = 1000


@dataclass(frozen=True, slots=True)
class ScimAnswer:
    """A response body with its status, ETag and Location."""

    body: dict[str, Any] | None
    status: int = 200
    etag: str | None = None
    location: str | None = None


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
    core = str(getattr(model, "__schema__", "") or "")
    schemas = body.get("schemas")
    if core and not (
        isinstance(schemas, list) and any(isinstance(u, str) and u.lower() == core.lower() for u in schemas)
    ):  # RFC 7643 §3: every resource and message names its schema
        raise scim.InvalidSyntaxException(detail=f"the body's schemas must list {core}")
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


def _tags(header: str) -> set[str]:
    """The entity tags of an ``If-Match`` / ``If-None-Match`` header, compared weakly."""
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


def check_if_match(version: int, if_match: str | None) -> None:
    """A write with ``If-Match`` goes ahead only on the version the client read (``412``)."""
    if if_match is None or not if_match.strip():
        return
    tags = _tags(if_match)
    if "*" not in tags and f'"{version}"' not in tags:
        raise scim.PreconditionFailedException(
            detail=f"the resource has changed: its version is now {etag(version)}"
        )


def not_modified(version: int, if_none_match: str | None) -> bool:
    """A read with ``If-None-Match`` naming the current version is answered ``304``."""
    if if_none_match is None or not if_none_match.strip():
        return False
    tags = _tags(if_none_match)
    return "*" in tags or f'"{version}"' in tags


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


def where_of(
    model: type[scim.Resource[Any]], filter_text: str | None, columns: dict[str, tuple[str, bool]]
) -> dict[str, str]:
    """The ``filter`` of a list as column equalities the database runs: ``attr eq "value"`` terms
    over ``columns`` (attribute, lower-case -> column, case-insensitive?), joined by ``and``.
    Anything else is ``invalidFilter`` with what is supported."""
    if not filter_text or not filter_text.strip():
        return {}
    from scim2_models.path.expressions import CompareOperator, Comparison, LogicalExpr, LogicalOperator

    try:
        parsed = scim.ScimFilter.__class_getitem__(model)(filter_text)
    except (ValueError, scim.SCIMException) as exc:
        raise scim.InvalidFilterException(detail=f"malformed filter: {exc}"[:300]) from None
    terms = [parsed.ast]
    if isinstance(parsed.ast, LogicalExpr) and parsed.ast.op is LogicalOperator.and_:
        terms = list(parsed.ast.terms)
    where: dict[str, str] = {}
    for term in terms:
        if not (
            isinstance(term, Comparison)
            and term.op is CompareOperator.eq
            and term.attr_path.sub_attr is None
            and term.attr_path.attr.lower() in columns
            and isinstance(term.value, str)
        ):
            names = ", ".join(sorted(columns))
            raise scim.InvalidFilterException(
                detail=f'supported filters: attr eq "value" joined by and, attr one of {names}'
            )
        column, folded = columns[term.attr_path.attr.lower()]
        value = comparison_key(term.value) if folded else term.value
        if where.get(column, value) != value:  # a eq x and a eq y: matches nothing
            value = "\x00"
        where[column] = value
    return where


def split(value: str | None) -> list[str] | None:
    """A comma-separated ``attributes`` / ``excludedAttributes`` parameter."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def page(start_index: int | None, count: int | None) -> tuple[int, int]:
    """``startIndex`` (1-based, below 1 is 1) and ``count`` (none: 100; capped at 1000)."""
    return max(1, start_index or 1), DEFAULT_COUNT if count is None else max(0, min(count, MAX_COUNT))


def list_response(
    resources: list[Any], total: int, start: int, attributes: str | None, excluded: str | None
) -> dict[str, Any]:
    """A ``ListResponse`` of one page."""
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": [
            dump(r, scim.Context.SEARCH_RESPONSE, split(attributes), split(excluded)) for r in resources
        ],
    }
