"""Domain errors. Each carries a stable ``code`` (Azure DevOps names where one exists).

Only ``tokenwarden.http.errors`` maps these classes to HTTP status codes.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class: ``code`` is stable and machine-readable, ``message`` is for humans."""

    default_code = "error"
    # The keyed hash of the token a refusal was about, when one was presented and found: the
    # HTTP layer counts refused requests against the token too (usage records, issue 14).
    token_key: bytes | None = None

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code


class InvalidInput(DomainError):
    """The request is malformed or names something that cannot exist."""

    default_code = "invalidInput"


class Unauthenticated(DomainError):
    """No usable credential was presented."""

    default_code = "unauthenticated"


class InvalidToken(Unauthenticated):
    """The presented token is malformed, unknown, expired, revoked or its owner is inactive."""

    default_code = "invalidToken"


class Forbidden(DomainError):
    """The caller is known but may not do this."""

    default_code = "accessDenied"


class InsufficientScope(Forbidden):
    """The token lacks the scope the operation needs."""

    default_code = "insufficientScope"


class PolicyViolation(Forbidden):
    """An organization or global policy forbids the request."""

    default_code = "policyViolation"


class NotFound(DomainError):
    """The target does not exist or is not visible to the caller."""

    default_code = "notFound"


class Conflict(DomainError):
    """The request conflicts with the current state (duplicate, already initialized...)."""

    default_code = "conflict"


class Unavailable(DomainError):
    """A dependency is down and the answer cannot be given safely (fail closed)."""

    default_code = "unavailable"


class PayloadTooLarge(InvalidInput):
    """The request body is larger than the server accepts."""

    default_code = "payloadTooLarge"


class HeadersTooLarge(InvalidInput):
    """The request's headers are larger than the server accepts."""

    default_code = "headersTooLarge"


class TooManyRequests(DomainError):
    """Refused for now (throttling): ``retry_after`` seconds until the caller may try again."""

    default_code = "tooManyRequests"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, int(retry_after))


class ExternalServiceError(DomainError):
    """A system tokenwarden calls (a secret store, a token source) refused or failed.
    ``transient`` failures (timeouts, 5xx, 429) may be retried, after ``retry_after`` seconds
    when the service said so."""

    default_code = "externalServiceError"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.transient = transient
        self.retry_after = retry_after
