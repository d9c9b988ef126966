"""Store-side secret names: sanitised to a store's rules, suffixed so two names never collide.

The seed's ``name.replace(/[^a-zA-Z0-9-]/g, "-")`` maps ``ci token`` and ``ci_token`` to the same
Key Vault name, so one rotation overwrites the other's secret. Here every store-side name ends in
``-`` + the first 8 hex digits of the SHA-256 of the *original* name.
"""

from __future__ import annotations

import hashlib
import re

from tokenwarden.domain.errors import InvalidInput

MAX_LOGICAL_NAME = 256
SUFFIX_LEN = 8


def name_suffix(name: str) -> str:
    """The 8-hex-digit SHA-256 suffix of ``name``."""
    return hashlib.sha256(name.encode()).hexdigest()[:SUFFIX_LEN]


def check_logical_name(name: str) -> str:
    """A secret's logical name: 1 to 256 printable characters."""
    if not name or not name.strip():
        raise InvalidInput("a secret name is required", code="invalidSecretName")
    if len(name) > MAX_LOGICAL_NAME:
        raise InvalidInput(
            f"a secret name is at most {MAX_LOGICAL_NAME} characters", code="invalidSecretName"
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InvalidInput("a secret name contains control characters", code="invalidSecretName")
    return name


def store_name(name: str, *, allowed: str, max_len: int, sep: str = "-") -> str:
    """Map ``name`` to a store's alphabet: characters outside the regex character class
    ``allowed`` (e.g. ``A-Za-z0-9-``) become ``sep``, runs of ``sep`` collapse, the result is cut
    so that ``sep`` + the suffix fits in ``max_len``."""
    check_logical_name(name)
    body = re.sub(f"[^{allowed}]", sep, name)
    body = re.sub(f"{re.escape(sep)}+", sep, body).strip(sep + "/.")
    room = max_len - SUFFIX_LEN - len(sep)
    body = body[:room].rstrip(sep + "/.")
    return f"{body}{sep}{name_suffix(name)}" if body else name_suffix(name)
