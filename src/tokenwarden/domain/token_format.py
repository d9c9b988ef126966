"""Opaque token format: ``<prefix><43 base62 chars of 32 random bytes><6 base62 chars of CRC32>``.

The prefix names the kind, the checksum lets scanners and the validator reject typos and
garbage offline, before any lookup.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import zlib
from typing import Final

from tokenwarden.domain.errors import InvalidToken
from tokenwarden.domain.tokens import TokenKind

ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LEN: Final = 43  # ceil(256 / log2(62))
CHECKSUM_LEN: Final = 6  # 62**6 > 2**32
PREFIX_LEN: Final = 4
TOKEN_LEN: Final = PREFIX_LEN + BODY_LEN + CHECKSUM_LEN

PREFIXES: Final[dict[TokenKind, str]] = {
    TokenKind.PAT: "twp_",
    TokenKind.REFRESH: "twr_",
    TokenKind.SESSION: "tws_",
    TokenKind.SERVICE: "twc_",
}
KIND_BY_PREFIX: Final[dict[str, TokenKind]] = {v: k for k, v in PREFIXES.items()}
_ALPHABET_SET: Final = frozenset(ALPHABET)


def b62encode(value: int, width: int) -> str:
    """Encode a non-negative integer as exactly ``width`` base62 digits (left-padded with 0)."""
    if value < 0:
        raise ValueError("value must be non-negative")
    digits = []
    for _ in range(width):
        value, rem = divmod(value, 62)
        digits.append(ALPHABET[rem])
    if value:
        raise ValueError("value does not fit in the given width")
    return "".join(reversed(digits))


def checksum(text: str) -> str:
    """Six base62 characters of the CRC32 of ``text``."""
    return b62encode(zlib.crc32(text.encode("ascii")), CHECKSUM_LEN)


def generate(kind: TokenKind) -> str:
    """Return a new random token of ``kind`` with its checksum."""
    body = b62encode(int.from_bytes(secrets.token_bytes(32), "big"), BODY_LEN)
    head = PREFIXES[kind] + body
    return head + checksum(head)


def parse(token: str) -> TokenKind:
    """Return the kind of a well-formed token; raise :class:`InvalidToken` otherwise.

    Checks length, prefix, alphabet and checksum; does no lookup.
    """
    if len(token) != TOKEN_LEN:
        raise InvalidToken("token has the wrong length")
    kind = KIND_BY_PREFIX.get(token[:PREFIX_LEN])
    if kind is None:
        raise InvalidToken("token has an unknown prefix")
    head = token[:-CHECKSUM_LEN]
    if not token.isascii() or not _ALPHABET_SET.issuperset(token[PREFIX_LEN:]):
        raise InvalidToken("token contains characters outside base62")
    if checksum(head) != token[-CHECKSUM_LEN:]:
        raise InvalidToken("token checksum does not match")
    return kind


def looks_like_token(text: str) -> bool:
    """True when ``text`` is a well-formed tokenwarden token (for leak scanners)."""
    try:
        parse(text)
    except InvalidToken:
        return False
    return True


_CANDIDATE: Final = re.compile(f"tw[prsc]_[0-9A-Za-z]{{{BODY_LEN + CHECKSUM_LEN}}}")
_BASE64_RUN: Final = re.compile(r"[A-Za-z0-9+/=_-]{64,}")


def find_in_text(text: str) -> list[str]:
    """Every well-formed token in ``text`` — a pasted log line, a header, a ``Basic`` credential
    (the token is found inside its base64) — in order of appearance, each once."""
    found: dict[str, None] = {}
    for candidate in _CANDIDATE.findall(text):
        if looks_like_token(candidate):
            found.setdefault(candidate)
    for run in _BASE64_RUN.findall(text):
        alt = b"-_" if "-" in run or "_" in run else None
        try:
            decoded = base64.b64decode(run.rstrip("=") + "=" * (-len(run.rstrip("=")) % 4), altchars=alt)
        except (binascii.Error, ValueError):
            continue
        for candidate in _CANDIDATE.findall(decoded.decode("latin-1")):
            if looks_like_token(candidate):
                found.setdefault(candidate)
    return list(found)
