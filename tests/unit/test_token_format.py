import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenwarden.domain import token_format
from tokenwarden.domain.errors import InvalidToken
from tokenwarden.domain.tokens import TokenKind


@pytest.mark.parametrize("kind", list(token_format.PREFIXES))
def test_generated_tokens_parse_back_to_their_kind(kind: TokenKind) -> None:
    token = token_format.generate(kind)
    assert len(token) == token_format.TOKEN_LEN
    assert token.startswith(token_format.PREFIXES[kind])
    assert token_format.parse(token) is kind


def test_tokens_are_unique() -> None:
    assert len({token_format.generate(TokenKind.PAT) for _ in range(1000)}) == 1000


@given(st.integers(min_value=0, max_value=62**6 - 1))
def test_b62_round_trip(value: int) -> None:
    text = token_format.b62encode(value, 6)
    assert len(text) == 6
    decoded = 0
    for ch in text:
        decoded = decoded * 62 + token_format.ALPHABET.index(ch)
    assert decoded == value


@given(st.data())
def test_any_single_character_change_is_rejected(data: st.DataObject) -> None:
    token = token_format.generate(TokenKind.PAT)
    pos = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.sampled_from(string.ascii_letters + string.digits + "_"))
    mutated = token[:pos] + replacement + token[pos + 1 :]
    if mutated == token:
        assert token_format.parse(mutated) is TokenKind.PAT
    else:
        with pytest.raises(InvalidToken):
            token_format.parse(mutated)


_PREFIXED = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from([*token_format.KIND_BY_PREFIX, "twx_", "TWP_"]),
    st.text(min_size=token_format.TOKEN_LEN - 6, max_size=token_format.TOKEN_LEN - 2),
)


@given(st.one_of(st.text(max_size=80), _PREFIXED))
def test_arbitrary_text_never_crashes_the_parser(text: str) -> None:
    """``parse`` either names a kind or raises InvalidToken (nothing else), and
    ``looks_like_token`` agrees with it."""
    try:
        kind = token_format.parse(text)
    except InvalidToken:
        assert token_format.looks_like_token(text) is False
    else:
        assert isinstance(kind, TokenKind)
        assert token_format.KIND_BY_PREFIX[text[:4]] is kind
        assert token_format.looks_like_token(text) is True


@given(st.sampled_from(list(token_format.PREFIXES)), st.text(max_size=3), st.booleans())
def test_a_valid_token_with_anything_around_it_is_not_a_token(
    kind: TokenKind, extra: str, before: bool
) -> None:
    token = token_format.generate(kind)
    assert token_format.looks_like_token(token) is True
    if extra:
        text = extra + token if before else token + extra
        with pytest.raises(InvalidToken):
            token_format.parse(text)
        assert token_format.looks_like_token(text) is False


def test_b62_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="fit"):
        token_format.b62encode(62**6, 6)
