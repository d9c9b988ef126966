"""Finding tokenwarden tokens in text, offline: prefix and checksum, so no false positives.

A scanner never prints what it finds: a finding carries the token's kind, where it is, a
redacted form (prefix and four characters) and the SHA-256 of the token — the hash GitHub's
secret-scanning partner program uses as ``token_hash``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tokenwarden.domain.token_format import PREFIX_LEN, find_in_text, parse


@dataclass(frozen=True, slots=True)
class Found:
    kind: str
    line: int
    sha256: str
    redacted: str
    token: str  # kept in memory to revoke it; never printed

    def json(self) -> dict[str, object]:
        return {"kind": self.kind, "line": self.line, "sha256": self.sha256, "redacted": self.redacted}


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def redact(token: str) -> str:
    return token[: PREFIX_LEN + 4] + "…"


def find_tokens(text: str) -> list[Found]:
    """Every tokenwarden token in ``text`` (also inside base64, e.g. a Basic header), with the
    line it is on; each token once per line."""
    out: list[Found] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if "tw" not in line and len(line) < 64:
            continue
        for token in find_in_text(line):
            out.append(Found(parse(token).value, number, token_sha256(token), redact(token), token))
    return out
