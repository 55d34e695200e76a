"""The pairing QR: URI shape and parsing (docs/device-api.md), derived secret, and a PNG a phone can read."""

from __future__ import annotations

import io

import pytest
import qrcode
import qrcode.constants
from PIL import Image
from pyzbar.pyzbar import decode

from vouchsim.server.pairing import qr
from vouchsim.server.pairing.errors import InvalidQrPayload

ISSUER = "http://127.0.0.1:8741"
SECRET = "A" * 21 + "_" + "b" * 20 + "-"


def test_uri_shape() -> None:
    assert qr.pairing_uri(ISSUER, SECRET) == (f"vouchsim://pair?v=1&iss=http%3A%2F%2F127.0.0.1%3A8741&secret={SECRET}")


def test_parse_round_trips() -> None:
    assert qr.parse_pairing_uri(qr.pairing_uri(ISSUER, SECRET), ISSUER) == SECRET


@pytest.mark.parametrize(
    ("payload_issuer", "server_issuer"),
    [(ISSUER + "/", ISSUER), (ISSUER, ISSUER + "/"), ("https://vouch.test/", "https://vouch.test")],
)
def test_a_trailing_slash_on_the_issuer_is_ignored(payload_issuer: str, server_issuer: str) -> None:
    assert qr.parse_pairing_uri(qr.pairing_uri(payload_issuer, SECRET), server_issuer) == SECRET


def test_scheme_and_host_in_any_case_and_unknown_parameters_ignored() -> None:
    payload = qr.pairing_uri(ISSUER, SECRET).replace("vouchsim://pair", "VOUCHSIM://PAIR") + "&later=1"
    assert qr.parse_pairing_uri(payload, ISSUER) == SECRET


ENCODED = "http%3A%2F%2F127.0.0.1%3A8741"


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "hello",
        f"https://pair?v=1&iss={ENCODED}&secret={SECRET}",
        f"vouchsim://other?v=1&iss={ENCODED}&secret={SECRET}",
        f"vouchsim://pair/x?v=1&iss={ENCODED}&secret={SECRET}",
        f"vouchsim://pair?iss={ENCODED}&secret={SECRET}",
        f"vouchsim://pair?v=2&iss={ENCODED}&secret={SECRET}",
        f"vouchsim://pair?v=1&secret={SECRET}",
        f"vouchsim://pair?v=1&iss={ENCODED}",
        f"vouchsim://pair?v=1&iss={ENCODED}&secret={SECRET}&secret={SECRET}",
        f"vouchsim://pair?v=1&v=1&iss={ENCODED}&secret={SECRET}",
        f"vouchsim://pair?v=1&iss=https%3A%2F%2Fevil.example&secret={SECRET}",
        f"vouchsim://pair?v=1&iss={ENCODED}&secret={SECRET[:-1]}",
        f"vouchsim://pair?v=1&iss={ENCODED}&secret={SECRET}A",
        f"vouchsim://pair?v=1&iss={ENCODED}&secret={SECRET[:-1]}=",
        f"vouchsim://pair?v=1&iss={ENCODED}&secret={SECRET}#frag",
        f"vouchsim://pair?v=1&iss={ENCODED}&secret={SECRET}&" + "x=1&" * 600,
        "vouchsim://pair?v=1&&&",
    ],
)
def test_what_is_not_a_pairing_uri_for_this_server(payload: str) -> None:
    with pytest.raises(InvalidQrPayload) as caught:
        qr.parse_pairing_uri(payload, ISSUER)
    assert caught.value.code == "invalid_qr_payload"
    assert caught.value.status == 400


def test_derived_secret_is_256_bits_per_browser_and_pairing() -> None:
    secret = qr.derive_secret("cookie", "pair_1")
    assert len(secret) == 43
    assert qr.derive_secret("cookie", "pair_1") == secret
    assert qr.derive_secret("cookie", "pair_2") != secret
    assert qr.derive_secret("other cookie", "pair_1") != secret
    assert qr.parse_pairing_uri(qr.pairing_uri(ISSUER, secret), ISSUER) == secret


def test_the_png_decodes_to_the_payload() -> None:
    payload = qr.pairing_uri("https://vouch.example.com", qr.derive_secret("cookie", "pair_x"))
    png = qr.render_png(payload)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert image.size[0] == image.size[1] >= 400
    assert [result.data.decode() for result in decode(image)] == [payload]


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:8741", "https://vouch.example.com/" + "tenant/" * 30])
def test_the_png_is_byte_for_byte_the_one_qrcodes_own_image_writes(issuer: str) -> None:
    """render_png builds the image from the module matrix; qrcode's PIL image draws it module by module."""
    payload = qr.pairing_uri(issuer, qr.derive_secret("cookie", "pair_x"))
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=10, border=4, mask_pattern=0)
    code.add_data(payload)
    code.make(fit=True)
    theirs = io.BytesIO()
    code.make_image().save(theirs, format="PNG")
    assert qr.render_png(payload) == theirs.getvalue()
