"""``upgrade`` skips alembic when the schema is at SCHEMA_HEAD: that constant must name the
newest migration, or every start pays for loading alembic again."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory

from tokenwarden.adapters.sql.unit_of_work import SCHEMA_HEAD, SqlDatabase


def test_schema_head_is_the_newest_migration(tmp_path: Path) -> None:
    db = SqlDatabase(f"sqlite:///{tmp_path / 'tw.db'}")
    try:
        assert ScriptDirectory.from_config(db.alembic_config()).get_current_head() == SCHEMA_HEAD
        assert db.schema_version() is None  # a new database: nothing applied yet
        db.upgrade()
        assert db.schema_version() == SCHEMA_HEAD
        db.upgrade()  # at the head: one read, nothing to do
        assert db.schema_version() == SCHEMA_HEAD
    finally:
        db.dispose()
