"""Pairing codes: RFC 8628 §6.1 alphabet, `XXXX-XXXX`, forgiving input, keyed storage."""

from __future__ import annotations

import pytest

from vouchsim.server.pairing import codes


def test_generated_codes_use_the_rfc_8628_alphabet() -> None:
    generated = {codes.generate() for _ in range(200)}
    assert len(generated) == 200
    for code in generated:
        assert len(code) == 8
        assert set(code) <= set("BCDFGHJKLMNPQRSTVWXZ")


def test_display_groups_by_four() -> None:
    assert codes.display("BCDFGHJK") == "BCDF-GHJK"


@pytest.mark.parametrize(
    "typed",
    [
        "BCDF-GHJK",
        "bcdf-ghjk",
        "BCDFGHJK",
        "bcdfghjk",
        "BCDF GHJK",
        " bcdf - ghjk ",
        "Bc-Df-Gh-Jk",
        "BCDF\tGHJK",
    ],
)
def test_normalise_accepts_any_case_dash_or_spaces(typed: str) -> None:
    assert codes.normalise(typed) == "BCDFGHJK"


@pytest.mark.parametrize(
    "typed",
    ["", "BCDF-GHJ", "BCDF-GHJKL", "ABCD-EFGH", "BCDF-GHJ1", "BCDF_GHJK", "BCDF-GHJÄ", "B" * 65, "BCDF—GHJK"],
)
def test_normalise_refuses_what_cannot_be_a_code(typed: str) -> None:
    assert codes.normalise(typed) is None


def test_the_stored_hash_is_keyed_and_bound_to_the_pairing() -> None:
    key = b"k" * 32
    stored = codes.code_hash(key, "pair_1", "BCDFGHJK")
    assert codes.matches(key, "pair_1", "BCDFGHJK", stored)
    assert not codes.matches(key, "pair_2", "BCDFGHJK", stored)
    assert not codes.matches(b"x" * 32, "pair_1", "BCDFGHJK", stored)
    assert not codes.matches(key, "pair_1", "BCDFGHJL", stored)
    assert "BCDFGHJK" not in stored
