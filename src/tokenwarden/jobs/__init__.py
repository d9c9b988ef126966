"""Background jobs (usage flushing, event polling, scheduled work)."""
