"""Invalidation bus adapters: in-process, PostgreSQL LISTEN/NOTIFY and Redis pub/sub.

Each implements :class:`tokenwarden.ports.bus.InvalidationBus`. A bus message carries only the
newest committed event sequence number; the events table stays the source of truth.
"""
