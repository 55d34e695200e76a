"""QR reading: real images made with `qrcode`, the repairs that rescue hard ones, and typed failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageOps
from pyzbar.pyzbar import ZBarSymbol
from pyzbar.pyzbar import decode as raw_zbar

from companion.tests.fakes import ISSUER, new_secret, pairing_uri, png_bytes, qr_image
from vouchsim.companion.core import qr
from vouchsim.companion.core.errors import (
    ImageSourceError,
    IssuerMismatchError,
    NoQrCodeFoundError,
    NotAnImageError,
    NotAPairingQrError,
)

URI = pairing_uri(ISSUER, "A" * 43)


def plain_zbar_reads(image: Image.Image) -> bool:
    """Whether pyzbar alone, on the grayscale image, finds the QR: the hard cases must say no."""
    return bool(raw_zbar(image.convert("L"), symbols=[ZBarSymbol.QRCODE]))


def tiny(image: Image.Image, px_per_module: float) -> Image.Image:
    modules = image.width // 10  # qr_image uses 10 px per module
    side = round(modules * px_per_module)
    return image.resize((side, side), Image.Resampling.BILINEAR)


# --- decoding ------------------------------------------------------------------------------------------


def test_clean_png_from_bytes_path_and_image(tmp_path: Path) -> None:
    image = qr_image(URI)
    path = tmp_path / "qr.png"
    path.write_bytes(png_bytes(image))
    assert qr.decode_qr_image(image) == URI
    assert qr.decode_qr_bytes(png_bytes(image)) == URI
    assert qr.decode_qr_file(path) == URI


def test_jpeg_photo_of_a_colour_qr() -> None:
    image = qr_image(URI).convert("RGB")
    colour = ImageOps.colorize(image.convert("L"), black="#1a237e", white="#fff8e1")
    assert qr.decode_qr_bytes(png_bytes(colour, "JPEG")) == URI


def test_tiny_qr_needs_the_upscale() -> None:
    image = tiny(qr_image(URI), 1.5)
    assert not plain_zbar_reads(image)
    assert qr.decode_qr_image(image) == URI


def test_dark_mode_qr_needs_the_inversion() -> None:
    image = ImageOps.invert(qr_image(URI))
    assert not plain_zbar_reads(image)
    assert qr.decode_qr_image(image) == URI


def test_tiny_dark_mode_qr_needs_both() -> None:
    image = ImageOps.invert(tiny(qr_image(URI), 1.5))
    assert not plain_zbar_reads(image)
    assert not plain_zbar_reads(ImageOps.invert(image))
    assert qr.decode_qr_image(image) == URI


def test_low_contrast_qr_needs_autocontrast() -> None:
    image = qr_image(URI).point(lambda v: 125 if v < 128 else 131)
    assert not plain_zbar_reads(image)
    assert qr.decode_qr_image(image) == URI


def test_rotated_qr() -> None:
    image = qr_image(URI).rotate(30, expand=True, fillcolor=255, resample=Image.Resampling.BICUBIC)
    assert qr.decode_qr_image(image) == URI


def test_transparent_png_is_laid_on_white() -> None:
    mask = ImageOps.invert(qr_image(URI))  # opaque where the modules are dark
    image = Image.new("RGBA", mask.size, (0, 0, 0, 0))
    image.putalpha(mask)
    assert not plain_zbar_reads(image)  # a naive grayscale turns the transparent background black
    assert qr.decode_qr_bytes(png_bytes(image)) == URI


def test_qr_inside_a_screenshot() -> None:
    shot = Image.new("L", (1280, 800), 235)
    shot.paste(qr_image(URI).resize((130, 130), Image.Resampling.LANCZOS), (600, 300))
    assert qr.decode_qr_image(shot) == URI


def test_a_pairing_qr_wins_over_other_codes_in_view() -> None:
    canvas = Image.new("L", (1000, 520), 255)
    canvas.paste(qr_image("https://example.com/menu"), (0, 0))
    canvas.paste(qr_image(URI), (500, 0))
    assert qr.decode_qr_image(canvas) == URI


def test_repairs_run_in_the_documented_order() -> None:
    small = [name for name, _ in qr._attempts(Image.new("L", (100, 100), 255))]
    assert small == [
        "as-is", "as-is, upscaled", "inverted", "inverted, upscaled",
        "autocontrast", "autocontrast, upscaled", "sharpened", "sharpened, upscaled",
    ]  # fmt: skip
    big = [name for name, _ in qr._attempts(Image.new("L", (2000, 1500), 255))]
    assert big == ["as-is", "inverted", "autocontrast", "sharpened"]  # already large: no upscale


def test_upscale_is_bounded() -> None:
    screenshot = qr._upscale(Image.new("L", (1280, 800)))
    small = qr._upscale(Image.new("L", (60, 60)))
    assert screenshot is not None
    assert max(screenshot.size) == qr.UPSCALE_MAX_SIDE
    assert small is not None
    assert small.size == (240, 240)


def test_an_image_without_a_qr() -> None:
    with pytest.raises(NoQrCodeFoundError, match="No QR code"):
        qr.decode_qr_bytes(png_bytes(Image.new("RGB", (300, 200), "white")))


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(NotAnImageError):
        qr.decode_qr_bytes(data)


def test_truncated_image() -> None:
    data = png_bytes(qr_image(URI))
    with pytest.raises(NotAnImageError):
        qr.decode_qr_bytes(data[: len(data) // 2])


def test_oversized_image_is_refused() -> None:
    data = png_bytes(Image.new("L", (101, 100), 255))
    assert qr.open_image(data, max_pixels=101 * 100).size == (101, 100)
    with pytest.raises(NotAnImageError, match="too large"):
        qr.open_image(data, max_pixels=100 * 100)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageSourceError, match="No such file"):
        qr.decode_qr_file(tmp_path / "nope.png")


# --- sources -------------------------------------------------------------------------------------------


@pytest.fixture
async def image_host() -> AsyncIterator[httpx.AsyncClient]:
    files = {"/qr.png": png_bytes(qr_image(URI)), "/big.png": b"x" * (qr.MAX_DOWNLOAD_BYTES + 1)}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/moved":
            return httpx.Response(302, headers={"location": "/qr.png"})
        if request.url.path == "/down":
            raise httpx.ConnectError("refused")
        body = files.get(request.url.path)
        return httpx.Response(200, content=body) if body is not None else httpx.Response(404)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        yield http


@pytest.mark.anyio
@pytest.mark.parametrize("url", ["http://img.test/qr.png", "https://img.test/moved"])
async def test_decode_from_url(image_host: httpx.AsyncClient, url: str) -> None:
    assert await qr.decode_qr(url, http=image_host) == URI


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://img.test/missing.png", "HTTP 404"),
        ("http://img.test/down", "ConnectError"),
        ("http://img.test/big.png", "larger than"),
    ],
)
async def test_url_failures(image_host: httpx.AsyncClient, url: str, match: str) -> None:
    with pytest.raises(ImageSourceError, match=match):
        await qr.decode_qr(url, http=image_host)


@pytest.mark.anyio
async def test_decode_dispatches_on_the_source_type(tmp_path: Path) -> None:
    image = qr_image(URI)
    path = tmp_path / "qr.png"
    path.write_bytes(png_bytes(image))
    assert await qr.decode_qr(image) == URI
    assert await qr.decode_qr(png_bytes(image)) == URI
    assert await qr.decode_qr(path) == URI
    assert await qr.decode_qr(str(path)) == URI
    with pytest.raises(ImageSourceError, match="HTTP client"):
        await qr.decode_qr("https://img.test/qr.png")


# --- the pairing URI -----------------------------------------------------------------------------------


def test_parse_a_pairing_uri() -> None:
    secret = new_secret()
    parsed = qr.parse_pairing_uri(pairing_uri(ISSUER, secret), ISSUER)
    assert parsed == qr.PairingUri(issuer=ISSUER, secret=secret)


@pytest.mark.parametrize(("in_qr", "enrolled"), [(ISSUER + "/", ISSUER), (ISSUER, ISSUER + "/")])
def test_issuers_compare_without_a_trailing_slash(in_qr: str, enrolled: str) -> None:
    assert qr.parse_pairing_uri(pairing_uri(in_qr), enrolled).issuer == in_qr


def test_unknown_parameters_are_ignored() -> None:
    assert qr.parse_pairing_uri(pairing_uri() + "&hint=x", ISSUER).issuer == ISSUER


def test_another_issuer_is_a_mismatch() -> None:
    with pytest.raises(IssuerMismatchError) as caught:
        qr.parse_pairing_uri(pairing_uri("https://other.example"), ISSUER)
    assert (caught.value.qr_issuer, caught.value.expected_issuer) == ("https://other.example", ISSUER)
    assert "https://other.example" in str(caught.value)
    assert ISSUER in str(caught.value)


def test_issuer_differing_only_in_path_is_a_mismatch() -> None:
    with pytest.raises(IssuerMismatchError):
        qr.parse_pairing_uri(pairing_uri(ISSUER + "/other"), ISSUER)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("https://example.com/", "not a Vouchsim pairing QR"),
        ("hello", "not a Vouchsim pairing QR"),
        ("vouchsim://other?v=1", "not a Vouchsim pairing QR"),
        (URI.replace("v=1", "v=2"), "version '2'"),
        (URI.replace("v=1&", ""), "version 'none'"),
        (f"vouchsim://pair?v=1&secret={'A' * 43}", "issuer is missing"),
        (f"vouchsim://pair?v=1&iss=ftp%3A%2F%2Fx&secret={'A' * 43}", "issuer is missing or not"),
        (pairing_uri(secret="A" * 42), "43 base64url"),
        (pairing_uri(secret="A" * 42 + "="), "43 base64url"),
        (pairing_uri(secret="A" * 42 + "+"), "43 base64url"),
        (URI + "&v=1", "repeats v"),
        (URI.replace("pair?", "pair/x?"), "unexpected path"),
    ],
)
def test_not_a_pairing_uri(text: str, match: str) -> None:
    with pytest.raises(NotAPairingQrError, match=match):
        qr.parse_pairing_uri(text, ISSUER)


def test_hostile_text_is_shown_escaped_and_short() -> None:
    with pytest.raises(NotAPairingQrError) as caught:
        qr.parse_pairing_uri("\x1b[2J" + "x" * 200, ISSUER)
    message = str(caught.value)
    assert "\x1b" not in message
    assert "\\x1b" in message
    assert len(message) < 120


# --- image to claimable URI, end to end ----------------------------------------------------------------


def test_a_qr_with_other_text_is_not_a_pairing_qr() -> None:
    text = qr.decode_qr_image(qr_image("WIFI:S:guest;T:WPA;P:secret;;"))
    with pytest.raises(NotAPairingQrError):
        qr.parse_pairing_uri(text, ISSUER)


def test_a_qr_from_another_server_is_a_mismatch() -> None:
    text = qr.decode_qr_image(qr_image(pairing_uri("https://elsewhere.example")))
    with pytest.raises(IssuerMismatchError):
        qr.parse_pairing_uri(text, ISSUER)
