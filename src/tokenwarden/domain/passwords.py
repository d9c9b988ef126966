"""Password rules for local accounts (pure: no hashing here, see services.passwords).

Following NIST SP 800-63B: a minimum length instead of composition rules, Unicode normalized
(NFKC) so the same password typed on two keyboards verifies, and a refusal of passwords that are
trivially guessable (very few distinct characters, the account's own name, well-known ones).
"""

from __future__ import annotations

import unicodedata
from typing import Final

from tokenwarden.domain.errors import InvalidInput

MAX_PASSWORD_LENGTH: Final = 1024  # argon2 takes anything; this bounds the work per attempt
MIN_DISTINCT: Final = 5
_COMMON: Final = frozenset(
    {
        "password",
        "passw0rd",
        "password1",
        "password12",
        "password123",
        "password1234",
        "p@ssw0rd",
        "p@ssword",
        "123456789012",
        "1234567890",
        "12345678901234",
        "qwertyuiop",
        "qwertyuiop123",
        "qwerty123456",
        "iloveyou1234",
        "letmein12345",
        "welcome12345",
        "administrator",
        "changeme1234",
        "abcdefghijkl",
        "abc123456789",
        "aaaaaaaaaaaa",
        "trustno11234",
        "football1234",
        "baseball1234",
        "monkey123456",
        "dragon123456",
        "sunshine1234",
        "princess1234",
        "zaq12wsxcde3",
        "1q2w3e4r5t6y",
        "correcthorsebatterystaple",
    }
)


def normalize_password(password: str) -> str:
    """The form a password is hashed and verified in (NFKC)."""
    return unicodedata.normalize("NFKC", password)


def check_password(password: str, *, upn: str, min_length: int) -> str:
    """The normalized password if it is acceptable for ``upn``; InvalidInput naming the rule
    otherwise (the message never repeats the password)."""
    value = normalize_password(password)
    if len(value) < min_length:
        raise InvalidInput(
            f"the password must be at least {min_length} characters long (got {len(value)})",
            code="weakPassword",
        )
    if len(value) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"the password must be at most {MAX_PASSWORD_LENGTH} characters long", code="invalidPassword"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        raise InvalidInput(
            "the password must not contain control characters or line breaks", code="invalidPassword"
        )
    if value.strip() != value:
        raise InvalidInput("the password must not start or end with a space", code="invalidPassword")
    if len(set(value.casefold())) < MIN_DISTINCT:
        raise InvalidInput(
            f"the password must contain at least {MIN_DISTINCT} different characters", code="weakPassword"
        )
    folded = value.casefold()
    name = upn.strip().casefold()
    local = name.partition("@")[0]
    if folded == name or (len(local) >= 4 and local in folded):
        raise InvalidInput("the password must not contain the user name", code="weakPassword")
    if folded in _COMMON or folded.rstrip("0123456789!.?") in _COMMON:
        raise InvalidInput("this password is too common: choose another one", code="weakPassword")
    return value
