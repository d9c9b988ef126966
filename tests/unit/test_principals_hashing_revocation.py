"""Small domain pieces: subject descriptors, keyed hashing, revocation cut-offs, token state."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.hashing import DIGEST_SIZE, Pepper, SecretHasher
from tokenwarden.domain.principals import (
    IdentitySource,
    RiskLevel,
    User,
    UserStatus,
    normalize_upn,
    subject_descriptor,
    user_id_from_descriptor,
)
from tokenwarden.domain.revocation import RevocationRule, RuleIndex
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.tokens import TokenKind, TokenRecord, TokenState

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DESCRIPTOR_CHARS = re.compile(r"^[A-Za-z0-9._~-]+$")


# --------------------------------------------------------------------------- principals
@given(st.uuids())
def test_descriptor_round_trips_user_ids(value: uuid.UUID) -> None:
    user_id = str(value)
    descriptor = subject_descriptor(user_id)
    assert descriptor.startswith("aad.")
    assert DESCRIPTOR_CHARS.match(descriptor)
    assert user_id_from_descriptor(descriptor) == user_id


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=80))
def test_descriptor_of_any_ascii_id_is_url_safe_and_reversible(user_id: str) -> None:
    descriptor = subject_descriptor(user_id)
    assert DESCRIPTOR_CHARS.match(descriptor), descriptor
    assert "=" not in descriptor and "+" not in descriptor and "/" not in descriptor
    assert user_id_from_descriptor(descriptor) == user_id


def test_descriptor_of_a_user() -> None:
    user = User(
        "6079be63-c225-44b5-8571-84131d98bbbb",
        "a@b.c",
        "A",
        UserStatus.ACTIVE,
        RiskLevel.NONE,
        IdentitySource.LOCAL,
        T0,
    )
    assert user.descriptor == subject_descriptor(user.id)
    assert user_id_from_descriptor(user.descriptor) == user.id


@pytest.mark.parametrize(
    "descriptor", ["", "msa.YWJj", "aadYWJj", "AAD.YWJj", "aad.\u00e9\u00e9\u00e9\u00e9", "aad./w"]
)
def test_foreign_or_undecodable_descriptors_give_none(descriptor: str) -> None:
    assert user_id_from_descriptor(descriptor) is None


def test_descriptor_with_characters_outside_base64url_gives_none() -> None:
    # Regression: non-base64url garbage used to decode to '' instead of None.
    for descriptor in ("aad.!!!!", "aad.YW+j", "aad.YW/j", "aad.YWJj==", "aad."):
        assert user_id_from_descriptor(descriptor) is None, descriptor


def test_upn_normalisation() -> None:
    assert normalize_upn("  Alice@Acme.TEST ") == "alice@acme.test"


def test_user_activity_follows_status() -> None:
    user = User("u", "a@b.c", "A", UserStatus.ACTIVE, RiskLevel.NONE, IdentitySource.LOCAL, T0)
    assert user.is_active
    assert not user.with_changes(status=UserStatus.DISABLED).is_active
    assert not user.with_changes(status=UserStatus.DELETED).is_active


# --------------------------------------------------------------------------- hashing
P1 = Pepper("p1", b"\x01" * 32)
P2 = Pepper("p2", b"\x02" * 32)
P3 = Pepper("p3", b"\x03" * 16)


def test_hash_depends_on_the_pepper_and_is_deterministic() -> None:
    secret = "twp_example-secret"
    h1, h2 = SecretHasher([P1]).hash(secret), SecretHasher([P2]).hash(secret)
    assert h1 != h2
    assert len(h1) == len(h2) == DIGEST_SIZE
    assert SecretHasher([P1]).hash(secret) == h1
    assert SecretHasher([P1]).hash(secret + "x") != h1
    assert secret.encode() not in h1


def test_rotation_keeps_old_peppers_for_verification() -> None:
    rotated = SecretHasher([P3, P2, P1])
    assert rotated.current_id == "p3"
    assert rotated.older() == (P2, P1)  # newest first
    assert SecretHasher([P1]).older() == ()
    secret = "twp_other"
    assert rotated.hash(secret) == rotated.hash_with(P3, secret)
    assert rotated.hash_with(P1, secret) == SecretHasher([P1]).hash(secret)
    assert rotated.hash_with(P2, secret) == SecretHasher([P2]).hash(secret)
    assert rotated.hash(secret) != SecretHasher([P2, P1]).hash(secret)


def test_a_hasher_needs_a_pepper() -> None:
    with pytest.raises(InvalidInput):
        SecretHasher([])


@pytest.mark.parametrize(
    ("pid", "key"),
    [("p", b"\x00" * 15), ("p", b"\x00" * 65), ("", b"\x00" * 32), ("x" * 33, b"\x00" * 32)],
)
def test_pepper_shape_is_checked(pid: str, key: bytes) -> None:
    with pytest.raises(InvalidInput):
        Pepper(pid, key)


def test_pepper_bounds_are_inclusive() -> None:
    shortest = Pepper("p", b"\x01" * 16)
    longest = Pepper("x" * 32, b"\x02" * 64)
    assert (shortest.id, len(shortest.key)) == ("p", 16)
    assert (longest.id, len(longest.key)) == ("x" * 32, 64)
    # both keys work, and as different keys
    hasher = SecretHasher([shortest, longest])
    assert hasher.hash("s") == hasher.hash_with(shortest, "s") != hasher.hash_with(longest, "s")


# --------------------------------------------------------------------------- revocation cut-offs
def compile_cutoffs(rules: list[RevocationRule]) -> dict[tuple[str, str], float]:
    return RuleIndex.build(rules, ScopeCatalog.default()).plain


def rule(org: str, scopes: tuple[str, ...], before: datetime) -> RevocationRule:
    return RevocationRule(
        id=str(uuid.uuid4()), org_id=org, scopes=scopes, created_before=before, created_at=before
    )


def test_later_cutoff_supersedes_an_earlier_one_in_any_order() -> None:
    early, late = T0, T0 + timedelta(days=1)
    forward = compile_cutoffs([rule("o1", ("vso.code",), early), rule("o1", ("vso.code",), late)])
    backward = compile_cutoffs([rule("o1", ("vso.code",), late), rule("o1", ("vso.code",), early)])
    assert forward == backward == {("o1", "vso.code"): late.timestamp()}


def test_cutoffs_are_kept_per_org_and_scope() -> None:
    cut = compile_cutoffs(
        [
            rule("o1", ("vso.code", "vso.packaging"), T0),
            rule("o2", ("vso.code",), T0 + timedelta(hours=1)),
            rule("o1", ("vso.packaging",), T0 + timedelta(hours=2)),
        ]
    )
    assert cut == {
        ("o1", "vso.code"): T0.timestamp(),
        ("o1", "vso.packaging"): (T0 + timedelta(hours=2)).timestamp(),
        ("o2", "vso.code"): (T0 + timedelta(hours=1)).timestamp(),
    }
    assert compile_cutoffs([]) == {}


# --------------------------------------------------------------------------- token state
def record(**changes: object) -> TokenRecord:
    base = TokenRecord(
        authorization_id=str(uuid.uuid4()),
        kind=TokenKind.PAT,
        user_id="u",
        org_id="o",
        display_name="t",
        scopes=("vso.code", "vso.build"),
        target_orgs=None,
        secret_hash=b"\x00" * 16,
        pepper_id="p1",
        valid_from=T0,
        valid_to=T0 + timedelta(days=1),
        created_at=T0,
    )
    return base.with_changes(**changes)


@pytest.mark.parametrize(
    ("now", "state"),
    [
        (T0 - timedelta(microseconds=1), TokenState.NOT_YET_VALID),
        (T0, TokenState.ACTIVE),
        (T0 + timedelta(days=1) - timedelta(microseconds=1), TokenState.ACTIVE),
        (T0 + timedelta(days=1), TokenState.EXPIRED),  # valid_to is exclusive
        (T0 + timedelta(days=400), TokenState.EXPIRED),
    ],
)
def test_state_follows_the_validity_window(now: datetime, state: TokenState) -> None:
    token = record()
    assert token.state(now) is state
    assert token.is_active(now) is (state is TokenState.ACTIVE)


def test_revocation_wins_over_every_other_state() -> None:
    revoked = record(revoked_at=T0 + timedelta(hours=1))
    for now in (T0 - timedelta(days=1), T0 + timedelta(hours=2), T0 + timedelta(days=2)):
        assert revoked.state(now) is TokenState.REVOKED
        assert not revoked.is_active(now)


def test_scope_string_and_all_orgs() -> None:
    assert record().scope_string == "vso.code vso.build"
    assert record().all_orgs is True
    assert record(target_orgs=("o",)).all_orgs is False
