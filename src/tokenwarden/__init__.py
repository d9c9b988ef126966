"""tokenwarden: a self-hosted token authority."""

from importlib.metadata import PackageNotFoundError, version

try:  # one source of truth: the version in pyproject.toml, as installed
    __version__ = version("tokenwarden")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0.0.0+unknown"
