"""Short codes: the PGP word list, making codes, and reading typed ones back (or refusing them
before they reach the network, where a typo would count as a wrong guess)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.errors import CodeError, TicketError
from ringdrop.shortcode import (
    EVEN_WORDS,
    NAMEPLATE_MAX,
    ODD_WORDS,
    WORDS,
    ShortCode,
    looks_like_code,
)


def test_the_word_list_is_the_pgp_list() -> None:
    assert len(EVEN_WORDS) == len(ODD_WORDS) == 256
    assert len(set(EVEN_WORDS) | set(ODD_WORDS)) == 512
    # Entries of the published list (Juola and Zimmermann), by byte value.
    assert (EVEN_WORDS[0x00], ODD_WORDS[0x00]) == ("aardvark", "adroitness")
    assert (EVEN_WORDS[0x0A], ODD_WORDS[0x0A]) == ("allow", "apollo")
    assert (EVEN_WORDS[0x69], ODD_WORDS[0x69]) == ("gazelle", "guitarist")
    assert (EVEN_WORDS[0xFF], ODD_WORDS[0xFF]) == ("zulu", "yucatan")
    assert list(EVEN_WORDS) == sorted(EVEN_WORDS)  # the even list is alphabetical
    assert all(w.isascii() and w.isalpha() and w.islower() for w in EVEN_WORDS + ODD_WORDS)


def test_a_made_code_has_a_small_nameplate_and_alternating_words() -> None:
    for _ in range(50):
        code = ShortCode.generate()
        assert 1 <= code.nameplate <= NAMEPLATE_MAX
        assert len(code.words) == WORDS == 2
        assert code.words[0] in EVEN_WORDS
        assert code.words[1] in ODD_WORDS
        assert code.entropy_bits == 16
        assert ShortCode.parse(str(code)) == code


def test_a_made_code_draws_from_the_random_source_it_is_given() -> None:
    draws = iter([6, 0xA9, 0x69])
    code = ShortCode.generate(randbelow=lambda _: next(draws))
    assert str(code) == "7-revenge-guitarist"
    assert code.password == b"7-revenge-guitarist"


@pytest.mark.parametrize(
    "typed",
    [
        "7-revenge-guitarist",
        " 7 Revenge GUITARIST ",
        "7--revenge--guitarist",
        "007-revenge-guitarist",
    ],
)
def test_typed_codes_are_read_in_one_spelling(typed: str) -> None:
    assert str(ShortCode.parse(typed)) == "7-revenge-guitarist"


def test_three_words_are_read_too() -> None:
    code = ShortCode.parse("12-revenge-guitarist-zulu")
    assert code.words == ("revenge", "guitarist", "zulu")
    assert code.entropy_bits == 24


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("revenge-guitarist", "starts with a number"),
        ("", "starts with a number"),
        ("7-revenge", "has 1"),
        ("7-revenge-guitarist-zulu-yucatan", "has 4"),
        ("0-revenge-guitarist", "from 1 to"),
        ("1234567-revenge-guitarist", "from 1 to"),
        ("7-guitarist-revenge", "out of order"),  # swapped
        ("7-revenge-zulu", "out of order"),  # two two-syllable words: one is missing
        ("7-revenj-guitarist", "Did you mean 'revenge'?"),
        ("7-revenge-xyzzy", "not a word that codes use"),
    ],
)
def test_a_code_no_sender_could_have_made_is_refused_saying_why(typed: str, says: str) -> None:
    with pytest.raises(CodeError) as caught:
        ShortCode.parse(typed)
    assert says in str(caught.value)
    assert isinstance(caught.value, TicketError)  # exit code 3, as an unreadable ticket


def test_codes_and_tickets_are_told_apart() -> None:
    assert looks_like_code("7-revenge-guitarist")
    assert looks_like_code("7 revenge guitarist")
    assert looks_like_code("7-revenj")  # meant as a code: reported as one
    assert not looks_like_code("rdrop:aeaqmzpq")
    assert not looks_like_code("7")


@given(st.text(max_size=60))
def test_parsing_any_text_gives_a_code_or_a_code_error(text: str) -> None:
    try:
        code = ShortCode.parse(text)
    except CodeError:
        return
    assert ShortCode.parse(str(code)) == code
