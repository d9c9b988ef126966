"""Secret store backends (ports/secrets.py): built-in, file, Vault/OpenBao."""
