"""The one rule for names people read (client names, device names): server.core.text."""

from __future__ import annotations

import pytest

from vouchsim.server.core.text import display_text_problem, has_control_characters
from vouchsim.server.device.errors import InvalidRequest
from vouchsim.server.device.service import checked_name


@pytest.mark.parametrize("value", ["Acme", " Acme Agent ", "Zoë's phone", "\u0410\u043a\u043c\u0435"])
def test_fine_names(value: str) -> None:
    assert display_text_problem("client_name", value, 64) is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        (42, "non-empty"),
        ("x" * 65, "at most 64"),
        ("Acme\x00", "control"),
        ("Acme\r\nAdmin", "control"),
        ("Acme\x1b[2J", "control"),
        ("Acme\u202egnp.exe", "bidirectional"),
        ("\u2066Acme\u2069", "bidirectional"),
        ("Acme\u200f", "bidirectional"),
    ],
)
def test_refused_names(value: object, words: str) -> None:
    problem = display_text_problem("client_name", value, 64)
    assert problem is not None and words in problem


@pytest.mark.parametrize("name", ["Phone\u202e", "Phone\x00", "\u2067Phone"])
def test_the_device_api_uses_the_same_rule(name: str) -> None:
    with pytest.raises(InvalidRequest):
        checked_name(name)


def test_control_characters() -> None:
    assert has_control_characters("a\x00") and has_control_characters("a\x85") and has_control_characters("\t")
    assert not has_control_characters("a b\u202e")
