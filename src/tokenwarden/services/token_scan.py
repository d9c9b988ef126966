"""``tokenwarden scan``: tokenwarden tokens in files or a git repository's whole history."""

from __future__ import annotations

import os
import subprocess  # nosec B404 - git with a fixed argument list, never a shell
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.token_scan import Found, find_tokens

MAX_FILE_BYTES: Final = 20 * 1024 * 1024
SKIP_DIRS: Final = frozenset({".git", "node_modules", ".venv", "__pycache__"})


@dataclass(frozen=True, slots=True)
class Hit:
    found: Found
    path: str
    commit: str | None = None

    def json(self) -> dict[str, object]:
        return {**self.found.json(), "path": self.path, "commit": self.commit}


def _text(data: bytes) -> str | None:
    if b"\0" in data[:8192]:
        return None  # binary
    return data.decode("utf-8", errors="replace")


def scan_files(root: Path) -> Iterator[Hit]:
    """Every file under ``root`` (or ``root`` itself), skipping binaries, symlinks and VCS dirs."""
    if not root.exists():
        raise InvalidInput(f"{root}: no such file or directory", code="pathNotFound")
    paths = [root] if root.is_file() else _walk(root)
    for path in paths:
        try:
            if path.is_symlink() or path.stat().st_size > MAX_FILE_BYTES:
                continue
            text = _text(path.read_bytes())
        except OSError:
            continue
        if text is None:
            continue
        for found in find_tokens(text):
            yield Hit(found, str(path))


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            yield Path(dirpath) / name


def scan_git(repo: Path) -> Iterator[Hit]:
    """Every version of every file in every commit reachable from any ref (deleted tokens too),
    each token reported once, at the oldest commit that added it."""
    git = ["git", "-C", str(repo)]
    try:
        check = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
            [*git, "rev-parse", "--git-dir"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InvalidInput(f"git is not available: {exc}", code="gitUnavailable") from exc
    if check.returncode != 0:
        raise InvalidInput(f"{repo} is not a git repository", code="notAGitRepository")
    log = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
        [*git, "log", "--all", "--reverse", "-p", "--no-color", "--no-ext-diff", "--format=commit %H", "-U0"],
        capture_output=True,
        timeout=600,
        check=False,
    )
    seen: set[str] = set()
    commit: str | None = None
    path = "?"
    for raw in log.stdout.decode("utf-8", errors="replace").splitlines():
        if raw.startswith("commit ") and len(raw) == 47:
            commit = raw[7:]
            continue
        if raw.startswith("+++ "):
            path = raw[6:] if raw.startswith("+++ b/") else raw[4:]
            continue
        if not raw.startswith("+") or raw.startswith("+++"):
            continue
        for found in find_tokens(raw[1:]):
            if found.sha256 in seen:
                continue
            seen.add(found.sha256)
            yield Hit(found, path, commit)
