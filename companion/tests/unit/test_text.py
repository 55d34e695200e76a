"""The companion's one text module (companion.core.text): what every front end prints is spelled here."""

from __future__ import annotations

from companion.tests.fakes import sample_delegation
from vouchsim.companion.core.text import clean, decision_line, safe, sentence


def test_an_error_and_its_hint_end_with_one_full_stop_each() -> None:
    assert sentence("GET /oauth/authorize answered 404: Not Found.", "Pass the URL the client opens.") == (
        "GET /oauth/authorize answered 404: Not Found. Pass the URL the client opens."
    )
    assert sentence("No QR code was found in the image", "") == "No QR code was found in the image."
    assert sentence("Is the server running?", "Check --server..") == "Is the server running? Check --server."
    assert sentence("", "") == ""


def test_untrusted_text_is_one_line_without_control_characters() -> None:
    assert clean("Evil\x1b[2J\n  Client") == "Evil?[2J Client"
    assert safe("a  b\x07") == "a  b?"  # spacing kept: a signed statement is shown as signed


def test_a_decision_line_keeps_its_fields_apart() -> None:
    line = decision_line("approved", sample_delegation(audience_id="aud a\nb"), "rule 1: pay\nments")
    assert line == "approved dlg_1 aud a?b payments.identity,payments.prepare (rule 1: pay ments)"
