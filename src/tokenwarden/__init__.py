"""tokenwarden: a self-hosted token authority."""

__version__ = "0.1.0"
