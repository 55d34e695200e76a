"""The QR images in fixtures/qr/ read as fixtures/qr/expected.json says, through the companion's own decoder.

`text` is what `decode_qr` must return (null: decoding fails with `error`); `error` is what reading the file
as a pairing QR for the fixtures' issuer raises, null for a good pairing QR.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vouchsim.companion.core import errors
from vouchsim.companion.core.qr import decode_qr, parse_pairing_uri

QR_DIR = Path(__file__).resolve().parents[3] / "fixtures" / "qr"
EXPECTED: dict[str, Any] = json.loads((QR_DIR / "expected.json").read_text(encoding="utf-8"))
ISSUER: str = EXPECTED["issuer"]
FILES: dict[str, dict[str, Any]] = EXPECTED["files"]


def error_class(name: str) -> type[errors.QrError]:
    cls = getattr(errors, name, None)
    assert isinstance(cls, type) and issubclass(cls, errors.QrError), f"{name} is not a QrError"
    return cls


def test_expected_json_lists_exactly_the_images() -> None:
    on_disk = {path.name for path in QR_DIR.iterdir() if path.suffix == ".png"}
    assert set(FILES) == on_disk
    # The set covers both outcomes of each step, or it would test less than it seems to.
    assert any(entry["text"] and entry["error"] is None for entry in FILES.values())
    assert {entry["error"] for entry in FILES.values()} >= {
        "IssuerMismatchError",
        "NotAPairingQrError",
        "NoQrCodeFoundError",
        "NotAnImageError",
    }


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(name for name, entry in FILES.items() if entry["text"] is not None))
async def test_image_decodes_to_its_text(name: str) -> None:
    entry = FILES[name]
    text = await decode_qr(QR_DIR / name)
    assert text == entry["text"]
    if entry["error"] is None:
        pairing = parse_pairing_uri(text, ISSUER)
        assert pairing.issuer == ISSUER
        assert len(pairing.secret) == 43
    else:
        with pytest.raises(error_class(entry["error"])) as raised:
            parse_pairing_uri(text, ISSUER)
        assert type(raised.value) is error_class(entry["error"])


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(name for name, entry in FILES.items() if entry["text"] is None))
async def test_image_fails_to_decode_with_its_error(name: str) -> None:
    cls = error_class(FILES[name]["error"])
    with pytest.raises(cls) as raised:
        await decode_qr(QR_DIR / name)
    assert type(raised.value) is cls
    assert str(raised.value)  # a sentence for the person, never empty
