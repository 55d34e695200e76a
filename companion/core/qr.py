"""Reading a pairing QR: decode the image (pyzbar), then parse and check the `vouchsim://pair` URI.

Photos and screenshots of a QR are rarely clean, so decoding tries a short list of repairs and stops at
the first that works: as-is, upscaled (tiny QRs of about 2 px per module), inverted (dark mode), with
autocontrast (washed-out screens), then slightly sharpened. Each repair is tried at the original size and,
when the image is small enough, upscaled too, so that e.g. a tiny dark-mode QR still reads.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError
from pyzbar.pyzbar import ZBarSymbol
from pyzbar.pyzbar import decode as zbar_decode

from vouchsim.companion.core.errors import (
    ImageSourceError,
    IssuerMismatchError,
    NoQrCodeFoundError,
    NotAnImageError,
    NotAPairingQrError,
)

PAIRING_SCHEME = "vouchsim"
PAIRING_HOST = "pair"
PAIRING_VERSION = "1"
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")  # 256 bits, base64url without padding

MAX_DOWNLOAD_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 4K screenshot is 8.3 Mpx; beyond this is a mistake or an attack
UPSCALE_FACTOR = 4.0  # ~2 px per module becomes ~8: LANCZOS x4 read 1.2 px/module QRs in trials
UPSCALE_MAX_SIDE = 2600  # bounds the upscaled image (and zbar's time on it) for big screenshots
UPSCALE_MIN_FACTOR = 1.5  # below this an upscale adds time, not readability

ImageInput = str | Path | bytes | Image.Image


@dataclass(frozen=True)
class PairingUri:
    issuer: str
    secret: str


# --- decoding ------------------------------------------------------------------------------------------


def decode_qr_image(image: Image.Image) -> str:
    """The text of the QR in `image`, trying the repairs in order; NoQrCodeFoundError if none works.

    With several QR codes in view, a Vouchsim pairing one wins over the others.
    """
    gray = _flatten(image)
    for _name, candidate in _attempts(gray):
        texts = _zbar_texts(candidate)
        if texts:
            return next((t for t in texts if t.startswith(f"{PAIRING_SCHEME}:")), texts[0])
    raise NoQrCodeFoundError()


def decode_qr_bytes(data: bytes) -> str:
    return decode_qr_image(open_image(data))


def decode_qr_file(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageSourceError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    return decode_qr_bytes(data)


async def decode_qr_url(url: str, http: httpx.AsyncClient) -> str:
    return decode_qr_bytes(await fetch_image(url, http))


async def decode_qr(source: ImageInput, *, http: httpx.AsyncClient | None = None) -> str:
    """Decode from a PIL image, raw bytes, a file path, or an http(s) URL (fetched with `http`).

    Decoding itself is CPU-bound (a few to a hundred milliseconds): an event loop with other work to do,
    like the TUI's, should call the synchronous `decode_qr_*` functions from a worker thread instead.
    """
    if isinstance(source, Image.Image):
        return decode_qr_image(source)
    if isinstance(source, bytes):
        return decode_qr_bytes(source)
    if isinstance(source, str) and is_url(source):
        if http is None:
            raise ImageSourceError("Fetching a QR image from a URL needs an HTTP client.")
        return await decode_qr_url(source, http)
    return decode_qr_file(Path(source))


def is_url(text: str) -> bool:
    return urlsplit(text).scheme.lower() in ("http", "https")


def open_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode image bytes fully, mapping every way that can fail to a typed error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > max_pixels:
                raise NotAnImageError(f"The image is too large ({image.width}x{image.height} pixels).")
            image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise NotAnImageError("The image is too large to decode safely.") from exc
    except UnidentifiedImageError as exc:
        raise NotAnImageError() from exc
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt image data
        raise NotAnImageError(f"The image is damaged: {exc}.") from exc
    return image


async def fetch_image(url: str, http: httpx.AsyncClient) -> bytes:
    """GET an image, following redirects, refusing bodies over MAX_DOWNLOAD_BYTES."""
    try:
        async with http.stream("GET", url, follow_redirects=True) as response:
            if response.status_code != 200:
                raise ImageSourceError(f"Fetching {url} failed: HTTP {response.status_code}.")
            return await _read_capped(response, url)
    except httpx.TimeoutException as exc:
        raise ImageSourceError(f"Fetching {url} timed out.") from exc
    except httpx.HTTPError as exc:
        raise ImageSourceError(f"Fetching {url} failed: {exc.__class__.__name__}.") from exc


async def _read_capped(response: httpx.Response, url: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_DOWNLOAD_BYTES:
            raise ImageSourceError(f"The image at {url} is larger than {MAX_DOWNLOAD_BYTES} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _flatten(image: Image.Image) -> Image.Image:
    """Grayscale, with transparency laid on white (a transparent PNG's background would turn black)."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L")


Repair = Callable[[Image.Image], Image.Image]

_REPAIRS: tuple[tuple[str, Repair], ...] = (
    ("as-is", lambda image: image),
    ("inverted", ImageOps.invert),
    ("autocontrast", lambda image: ImageOps.autocontrast(image, cutoff=1)),
    ("sharpened", lambda image: image.filter(ImageFilter.SHARPEN)),
)


def _attempts(gray: Image.Image) -> Iterator[tuple[str, Image.Image]]:
    """Candidate images, cheapest and likeliest first; lazy, so work stops at the first success. The upscaled copy
    (a LANCZOS resize, ~5 times zbar's own time on a 530 px QR) is made only once the image as it is has failed."""
    upscaled: Image.Image | None = None
    for index, (name, repair) in enumerate(_REPAIRS):
        yield name, repair(gray)
        if index == 0:
            upscaled = _upscale(gray)
        if upscaled is not None:
            yield f"{name}, upscaled", repair(upscaled)


def _upscale(gray: Image.Image) -> Image.Image | None:
    factor = min(UPSCALE_FACTOR, UPSCALE_MAX_SIDE / max(gray.size))
    if factor < UPSCALE_MIN_FACTOR:
        return None
    size = (round(gray.width * factor), round(gray.height * factor))
    return gray.resize(size, Image.Resampling.LANCZOS)


def _zbar_texts(image: Image.Image) -> list[str]:
    symbols: list[Any] = zbar_decode(image, symbols=[ZBarSymbol.QRCODE])
    return [bytes(symbol.data).decode("utf-8", errors="replace") for symbol in symbols]


# --- the pairing URI -----------------------------------------------------------------------------------


def parse_pairing_uri(text: str, expected_issuer: str) -> PairingUri:
    """`vouchsim://pair?v=1&iss=<issuer>&secret=<43 base64url>`, from the issuer this device enrolled with.

    NotAPairingQrError for anything else; IssuerMismatchError for a good URI naming another server.
    Unknown query parameters are ignored so later URI versions can add optional ones.
    """
    parts = urlsplit(text.strip())
    if parts.scheme.lower() != PAIRING_SCHEME or parts.netloc.lower() != PAIRING_HOST:
        raise NotAPairingQrError(f"This QR code is not a Vouchsim pairing QR (it reads {preview(text)}).")
    if parts.path not in ("", "/") or parts.fragment:
        raise _malformed("unexpected path or fragment")
    params = _single_params(parts.query)
    if params.get("v") != PAIRING_VERSION:
        raise NotAPairingQrError(
            f"This Vouchsim pairing QR has version {params.get('v', 'none')!r}; this companion reads v=1."
        )
    issuer, secret = params.get("iss", ""), params.get("secret", "")
    if not is_url(issuer):
        raise _malformed("its issuer is missing or not an http(s) URL")
    if not SECRET_PATTERN.fullmatch(secret):
        raise _malformed("its secret is not 43 base64url characters")
    if issuer.rstrip("/") != expected_issuer.rstrip("/"):
        raise IssuerMismatchError(issuer, expected_issuer)
    return PairingUri(issuer=issuer, secret=secret)


def _single_params(query: str) -> dict[str, str]:
    values = parse_qs(query, keep_blank_values=True)
    repeated = sorted(name for name, found in values.items() if len(found) > 1)
    if repeated:
        raise _malformed(f"it repeats {', '.join(repeated)}")
    return {name: found[0] for name, found in values.items()}


def _malformed(reason: str) -> NotAPairingQrError:
    return NotAPairingQrError(f"This Vouchsim pairing QR is malformed: {reason}.")


def preview(text: str, limit: int = 60) -> str:
    """A short, terminal-safe rendering of untrusted text (QR contents can carry escape sequences)."""
    short = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(short)
