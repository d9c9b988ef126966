"""How commands reach the wiring: one container per command, schema upgraded first."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from tokenwarden.bootstrap import Container, build
from tokenwarden.cli.output import emit_json, fail
from tokenwarden.domain.errors import DomainError
from tokenwarden.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def open_container(*, create_pepper: bool = False) -> Container:
    """Upgrade the schema, then wire services over the configured database."""
    container = build(Settings(), create_pepper=create_pepper)
    container.database.upgrade()
    return container


def domain_errors(fn: F) -> F:
    """Domain errors become one line on stderr and exit code 1; with ``--json`` the error is
    also the one JSON document on stdout: ``{"error": {"code", "message"}}``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DomainError as exc:
            if kwargs.get("json_out"):
                emit_json({"error": {"code": exc.code, "message": exc.message}})
            fail(f"{exc.message} ({exc.code})")
            return None

    return wrapper  # type: ignore[return-value]
