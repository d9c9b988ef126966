"""The ONE table that maps domain errors to HTTP status codes and error bodies."""

from __future__ import annotations

from typing import Any, Final

from fastapi.responses import JSONResponse

from tokenwarden.domain.errors import (
    Conflict,
    DomainError,
    ExternalServiceError,
    Forbidden,
    HeadersTooLarge,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)

STATUS: Final[tuple[tuple[type[DomainError], int], ...]] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (HeadersTooLarge, 431),
    (TooManyRequests, 429),
    (InvalidInput, 400),
    (Unavailable, 503),
    (ExternalServiceError, 502),  # a secret store or token source failed: a bad gateway, not bad input
)
WWW_AUTHENTICATE: Final = 'Basic realm="tokenwarden", Bearer realm="tokenwarden"'
ADO_JSON: Final = "application/json; charset=utf-8"
_ASSEMBLY: Final = "Microsoft.VisualStudio.Services.WebApi"


def status_of(error: DomainError) -> int:
    for cls, status in STATUS:
        if isinstance(error, cls):
            return status
    return 400


def headers_of(error: DomainError) -> dict[str, str]:
    if isinstance(error, Unauthenticated):
        return {"WWW-Authenticate": WWW_AUTHENTICATE}
    if isinstance(error, Unavailable):
        return {"Retry-After": "1"}
    if isinstance(error, TooManyRequests):
        return {"Retry-After": str(error.retry_after)}
    return {}


class AdoJSONResponse(JSONResponse):
    """Azure DevOps clients refuse anything but ``application/json; charset=utf-8``."""

    media_type = ADO_JSON


def native_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def native_response(error: DomainError) -> JSONResponse:
    return native_error(status_of(error), error.code, error.message, headers_of(error))


def wrapped_exception(
    status: int, message: str, type_key: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Azure DevOps WrappedException body."""
    body: dict[str, Any] = {
        "$id": "1",
        "innerException": None,
        "message": message,
        "typeName": f"Microsoft.VisualStudio.Services.WebApi.{type_key}, {_ASSEMBLY}",
        "typeKey": type_key,
        "errorCode": 0,
        "eventId": 3000,
    }
    return AdoJSONResponse(body, status_code=status, headers=headers)


ADO_TYPE_KEYS: Final[dict[int, str]] = {
    400: "InvalidArgumentValueException",
    401: "UnauthorizedRequestException",
    403: "AccessCheckException",
    404: "NotFoundException",
    409: "ConflictException",
    413: "RequestContentTooLargeException",
    429: "RequestBlockedException",
    431: "InvalidArgumentValueException",
    503: "ServiceUnavailableException",
}


def ado_response(error: DomainError) -> JSONResponse:
    status = status_of(error)
    return wrapped_exception(
        status, error.message, ADO_TYPE_KEYS.get(status, "VssServiceException"), headers_of(error)
    )
