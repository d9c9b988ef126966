"""One version everywhere: pyproject, the installed package, --version, /health, CHANGELOG."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import tokenwarden
from tests.e2e.conftest import Server, run_cli

ROOT = Path(__file__).resolve().parents[2]


def test_version_agrees_everywhere(server: Server, tmp_path: Path) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version("tokenwarden") == declared == tokenwarden.__version__
    cli = run_cli(["--version"], {}, tmp_path)
    assert cli.returncode == 0 and cli.stdout.strip() == declared
    assert server.client.get("/health").json()["version"] == declared
    assert server.client.get("/openapi.json").json()["info"]["version"] == declared
    numbered = re.findall(r"^## (\d+\.\d+\.\d+)", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert numbered[0] == declared  # the newest numbered release in the changelog is this one
