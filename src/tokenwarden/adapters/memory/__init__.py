"""In-memory storage: fast fakes for unit tests and benchmarks (same contract as SQL)."""
