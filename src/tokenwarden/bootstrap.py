"""Composition root: settings -> adapters -> services. The only module that wires adapters."""
