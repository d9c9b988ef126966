"""Pure domain model: no framework, database or I/O imports."""
