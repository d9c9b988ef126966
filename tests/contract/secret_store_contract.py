"""The one contract every secret store meets (ports/secrets.py).

A backend's test module subclasses :class:`SecretStoreContract` and provides a ``store``
fixture returning a fresh, empty-enough store (tests use unique names, so a shared server is
fine). Not collected by itself: the class name does not start with ``Test``.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tokenwarden.ports.secrets import PAT_CONTENT_TYPE, SecretMeta, SecretStore, SecretStoreError


def unique(prefix: str = "ci/token") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def meta(**tags: str) -> SecretMeta:
    return SecretMeta(
        expires_at=datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC),
        content_type=PAT_CONTENT_TYPE,
        tags={"managed-by": "tokenwarden", "source": "local", **tags},
    )


class SecretStoreContract:
    """Run over every backend."""

    # ------------------------------------------------------------- names
    def test_secret_name_is_deterministic_and_suffixed(self, store: SecretStore) -> None:
        name = store.secret_name("CI token / main")
        assert name == store.secret_name("CI token / main")
        assert re.search(r"[0-9a-f]{8}$", name), name

    def test_names_that_sanitise_alike_do_not_collide(self, store: SecretStore) -> None:
        a, b = store.secret_name("ci token"), store.secret_name("ci_token")
        assert a != b
        name_a = unique("ci token")
        name_b = name_a.replace(" ", "_")
        store.promote(name_a, store.write(name_a, "value-a", meta()))
        store.promote(name_b, store.write(name_b, "value-b", meta()))
        assert store.read(name_a).value == "value-a"  # type: ignore[union-attr]
        assert store.read(name_b).value == "value-b"  # type: ignore[union-attr]

    # ------------------------------------------------------------- write, read, promote
    def test_missing_secret_reads_as_none(self, store: SecretStore) -> None:
        name = unique()
        assert store.read(name) is None
        assert store.current_version(name) is None

    def test_write_promote_read(self, store: SecretStore) -> None:
        name = unique()
        version = store.write(name, "twp_first", meta())
        staged = store.read(name, version)
        assert staged is not None and staged.value == "twp_first"
        store.promote(name, version)
        current = store.read(name)
        assert current is not None
        assert current.value == "twp_first"
        assert current.version == version
        assert store.current_version(name) == version
        assert current.name == store.secret_name(name)

    def test_metadata_round_trips(self, store: SecretStore) -> None:
        name = unique()
        version = store.write(name, "twp_meta", meta(created="2026-12-02T00:00:00Z"))
        store.promote(name, version)
        got = store.read(name)
        assert got is not None
        assert got.content_type == PAT_CONTENT_TYPE
        assert got.tags.get("managed-by") == "tokenwarden"
        assert got.tags.get("created") == "2026-12-02T00:00:00Z"
        assert got.expires_at is not None
        assert abs(got.expires_at - datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)) < timedelta(seconds=1)

    def test_staged_version_is_not_served_until_promoted(self, store: SecretStore) -> None:
        name = unique()
        first = store.write(name, "twp_one", meta())
        store.promote(name, first)
        second = store.write(name, "twp_two", meta())
        expected = "twp_one" if store.staged else "twp_two"
        assert store.read(name).value == expected  # type: ignore[union-attr]
        store.promote(name, second)
        assert store.read(name).value == "twp_two"  # type: ignore[union-attr]
        assert store.current_version(name) == second
        old = store.read(name, first)
        assert old is not None and old.value == "twp_one" and not old.current

    def test_promote_is_idempotent(self, store: SecretStore) -> None:
        name = unique()
        version = store.write(name, "twp_x", meta())
        store.promote(name, version)
        store.promote(name, version)
        assert store.read(name).value == "twp_x"  # type: ignore[union-attr]

    # ------------------------------------------------------------- discard (rollback)
    def test_discard_restores_the_previous_current(self, store: SecretStore) -> None:
        name = unique()
        first = store.write(name, "twp_good", meta())
        store.promote(name, first)
        bad = store.write(name, "twp_bad", meta())
        store.discard(name, bad)
        current = store.read(name)
        assert current is not None and current.value == "twp_good"
        assert store.read(name, bad) is None
        store.discard(name, bad)  # idempotent
        assert store.read(name).value == "twp_good"  # type: ignore[union-attr]

    def test_discard_of_the_first_version_leaves_nothing_served(self, store: SecretStore) -> None:
        name = unique()
        only = store.write(name, "twp_only", meta())
        store.discard(name, only)
        assert store.read(name) is None

    def test_discard_unknown_version_is_a_no_op(self, store: SecretStore) -> None:
        name = unique()
        version = store.write(name, "twp_keep", meta())
        store.promote(name, version)
        store.discard(name, "no-such-version-0000")
        assert store.read(name).value == "twp_keep"  # type: ignore[union-attr]

    # ------------------------------------------------------------- delete, check, errors
    def test_delete_removes_every_version(self, store: SecretStore) -> None:
        name = unique()
        v1 = store.write(name, "twp_a", meta())
        store.promote(name, v1)
        store.delete(name)
        assert store.read(name) is None
        assert store.read(name, v1) is None
        store.delete(name)  # idempotent

    def test_check_passes_on_a_working_store(self, store: SecretStore) -> None:
        store.check()

    def test_value_with_unicode_and_length(self, store: SecretStore) -> None:
        name = unique()
        value = "twp_" + "é" * 10 + "x" * 400
        version = store.write(name, value, meta())
        store.promote(name, version)
        assert store.read(name).value == value  # type: ignore[union-attr]

    def test_error_type_is_the_ports(self, broken_store: SecretStore) -> None:
        """A store that cannot be reached fails with SecretStoreError, nothing else."""
        with pytest.raises(SecretStoreError):
            broken_store.write(unique(), "twp_v", meta())
        with pytest.raises(SecretStoreError):
            broken_store.check()
