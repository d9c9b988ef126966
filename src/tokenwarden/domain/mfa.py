"""TOTP (RFC 6238) second factors and recovery codes: pure functions, no I/O.

Codes are 6 digits over 30-second steps, SHA-1 (what every authenticator app accepts); one step
either side is accepted for clock drift, and the caller records the matched step so a code is
never accepted twice. Recovery codes are ten random 12-character codes shown once; only their
keyed hashes are stored.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Final

from tokenwarden.domain.errors import InvalidInput

if TYPE_CHECKING:
    import pyotp

STEP_SECONDS: Final = 30
DIGITS: Final = 6
DRIFT_STEPS: Final = 1
STEP_UP_SECONDS: Final = 300  # a step-up is good for five minutes
RECOVERY_CODES: Final = 10
_RECOVERY_ALPHABET: Final = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RECOVERY_LEN: Final = 12


def _totp(secret: str) -> pyotp.TOTP:
    """pyotp, imported on first use: every CLI start would otherwise pay for it."""
    import pyotp

    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)


def new_secret() -> str:
    """A fresh TOTP seed: 160 random bits in base32 (RFC 4226's recommended length)."""
    import pyotp

    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI authenticator apps read from a QR code."""
    return _totp(secret).provisioning_uri(name=account, issuer_name=issuer)


def code_at(secret: str, step: int) -> str:
    """The code of time step ``step`` (tests and the enrolment check)."""
    return _totp(secret).generate_otp(step)


def step_of(at: datetime) -> int:
    return int(at.timestamp()) // STEP_SECONDS


def matching_step(secret: str, code: str, at: datetime) -> int | None:
    """The time step whose code ``code`` is, within the drift window around ``at``; None if it
    matches none. Every candidate is compared in constant time."""
    wanted = normalize_totp(code)
    if wanted is None:
        return None
    now = step_of(at)
    found = None
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(code_at(secret, step), wanted):
            found = step
    return found


def normalize_totp(code: str) -> str | None:
    """``code`` without spaces if it has the shape of a TOTP code (6 digits), else None."""
    value = code.replace(" ", "").strip()
    if len(value) != DIGITS or not value.isascii() or not value.isdigit():
        return None
    return value


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """``count`` recovery codes, ``xxxx-xxxx-xxxx`` (about 59 bits each)."""
    out = []
    for _ in range(count):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LEN))
        out.append(f"{raw[:4]}-{raw[4:8]}-{raw[8:]}")
    return out


def normalize_recovery_code(code: str) -> str | None:
    """The canonical form (lower case, no dashes or spaces) of a recovery code, or None."""
    value = code.strip().lower().replace("-", "").replace(" ", "")
    if len(value) != _RECOVERY_LEN or any(c not in _RECOVERY_ALPHABET for c in value):
        return None
    return value


def check_code_input(code: object) -> str:
    """A submitted code as text, bounded (a TOTP or a recovery code)."""
    if not isinstance(code, str) or not code.strip():
        raise InvalidInput("enter the 6-digit code from your authenticator app", code="mfaCodeRequired")
    if len(code) > 64:
        raise InvalidInput("that is not a code", code="mfaCodeInvalid")
    return code
