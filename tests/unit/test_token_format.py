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


@given(st.text(max_size=80))
def test_arbitrary_text_never_crashes_the_parser(text: str) -> None:
    assert token_format.looks_like_token(text) in (True, False)
    if token_format.looks_like_token(text):
        assert text[:4] in token_format.KIND_BY_PREFIX


def test_b62_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="fit"):
        token_format.b62encode(62**6, 6)
