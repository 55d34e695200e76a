"""The pairing QR: its URI (docs/device-api.md, `POST /device/pairings/claim`), its secret, and its PNG.

`vouchsim://pair?v=1&iss=<issuer, URL-encoded>&secret=<43 base64url characters>`. The secret is not stored:
it is derived from the browser's cookie secret, so the page can draw the QR again while the database holds
only its SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
from urllib.parse import parse_qs, quote, urlsplit

import qrcode
import qrcode.constants
from PIL import Image

from vouchsim.server.core.crypto import b64url
from vouchsim.server.pairing.errors import InvalidQrPayload

SCHEME = "vouchsim"
HOST = "pair"
VERSION = "1"
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
_DERIVATION_LABEL = b"vouchsim-pairing-qr:"
_MAX_PAYLOAD = 2048
# A fixed mask saves ~6 ms per image (NOTES-dependencies.md); pattern 0 decodes as reliably as any.
_MASK_PATTERN = 0
_BOX_SIZE = 10  # pixels per module
_BORDER = 4  # modules of quiet zone, the minimum the QR standard asks for


def derive_secret(browser_secret: str, pairing_id: str) -> str:
    """256 bits only that browser can recompute: HMAC-SHA256(browser secret, label + pairing id)."""
    digest = hmac.new(browser_secret.encode(), _DERIVATION_LABEL + pairing_id.encode(), hashlib.sha256)
    return b64url(digest.digest())


def pairing_uri(issuer: str, secret: str) -> str:
    return f"{SCHEME}://{HOST}?v={VERSION}&iss={quote(issuer, safe='')}&secret={secret}"


def parse_pairing_uri(text: str, issuer: str) -> str:
    """The secret of a pairing URI that names `issuer` (a trailing slash aside); InvalidQrPayload otherwise.

    Parameters other than `v`, `iss` and `secret` are ignored; each of those three must appear exactly once.
    """
    if len(text) > _MAX_PAYLOAD:
        raise InvalidQrPayload("This QR code is not a Vouchsim pairing QR.")
    try:
        parts = urlsplit(text.strip())
        params = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InvalidQrPayload("This QR code is not a Vouchsim pairing QR.") from None
    if parts.scheme != SCHEME or parts.netloc.lower() != HOST or parts.path not in ("", "/") or parts.fragment:
        raise InvalidQrPayload("This QR code is not a Vouchsim pairing QR.")
    values = {name: params.get(name, []) for name in ("v", "iss", "secret")}
    if any(len(found) != 1 for found in values.values()):
        raise InvalidQrPayload("This pairing QR code lacks a version, issuer or secret.")
    if values["v"][0] != VERSION:
        raise InvalidQrPayload("This pairing QR code is from an unsupported version.")
    if values["iss"][0].rstrip("/") != issuer.rstrip("/"):
        raise InvalidQrPayload("This pairing QR code belongs to another server.")
    secret = values["secret"][0]
    if not _SECRET.match(secret):
        raise InvalidQrPayload("This pairing QR code carries a malformed secret.")
    return secret


def render_png(text: str) -> bytes:
    """The QR as a black and white PNG, byte for byte what `qrcode`'s own PIL image writes: one pixel per module
    (dark 0, light 255), scaled up. qrcode draws a rectangle per dark module instead: 7.0 ms an image that way, 4.5
    this way, on the 2-core machine of 2026-12-07 (test_pairing_qr.py compares the two images)."""
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        box_size=_BOX_SIZE,
        border=_BORDER,
        mask_pattern=_MASK_PATTERN,
    )
    code.add_data(text)
    code.make(fit=True)
    modules = code.get_matrix()  # the border included; True is dark
    size = len(modules)
    pixels = bytes(0 if dark else 255 for row in modules for dark in row)
    image = Image.frombytes("1", (size, size), pixels, "raw", "1;8")
    image = image.resize((size * _BOX_SIZE, size * _BOX_SIZE), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
