"""External token sources (ports/token_sources.py): the Azure DevOps PAT Lifecycle API."""
