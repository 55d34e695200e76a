"""The audience registry (docs/delegations.md): the services a delegation may target, and their scopes.

Read once at startup from a JSON file: `settings.audiences_file` (`VOUCHSIM_AUDIENCES_FILE`,
`vouchsim serve --audiences-file`), or else `fixtures/audiences.json` (a checkout's, or the copy an installed
wheel carries). The format is documented in fixtures/README.md. A file that cannot be read or does not match
the format stops the server with an `AudienceFileError` naming the file and the problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated

import msgspec

from vouchsim.server.delegation.tokens import ALGORITHM, Algorithm
from vouchsim.server.settings import Settings

# fixtures/audiences.json: the wheel carries a copy beside this module (pyproject.toml, force-include); a
# checkout reads the original.
_PACKAGED = Path(__file__).resolve().with_name("audiences.json")
DEFAULT_FILE = _PACKAGED if _PACKAGED.is_file() else Path(__file__).resolve().parents[2] / "fixtures" / "audiences.json"

_AUDIENCE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"  # stored in a 128-character column
_SCOPE = r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}$"  # RFC 6749 §3.3 scope-token, bounded


class Audience(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    audience_id: Annotated[str, msgspec.Meta(pattern=_AUDIENCE_ID)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    scopes: Annotated[tuple[Annotated[str, msgspec.Meta(pattern=_SCOPE)], ...], msgspec.Meta(min_length=1)]
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""
    # The delegation token's signing algorithm, for the audience's own verifier (server.delegation.tokens).
    alg: Algorithm = ALGORITHM


class _AudienceFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    audiences: list[Audience]


class AudienceFileError(ValueError):
    """The audience file is missing, unreadable or malformed."""


class AudienceRegistry:
    """Audiences by id; immutable once loaded."""

    def __init__(self, audiences: Iterable[Audience]) -> None:
        self._by_id: dict[str, Audience] = {}
        for audience in audiences:
            if audience.audience_id in self._by_id:
                raise ValueError(f"audience {audience.audience_id!r} is listed twice")
            if len(set(audience.scopes)) != len(audience.scopes):
                raise ValueError(f"audience {audience.audience_id!r} lists a scope twice")
            self._by_id[audience.audience_id] = audience

    @classmethod
    def load(cls, path: Path) -> AudienceRegistry:
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise AudienceFileError(f"cannot read the audience file {path}: {error.strerror or error}") from None
        try:
            parsed = msgspec.json.decode(raw, type=_AudienceFile)
            return cls(parsed.audiences)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as error:
            raise AudienceFileError(f"the audience file {path} is not valid: {error}") from None

    @classmethod
    def from_settings(cls, settings: Settings) -> AudienceRegistry:
        return cls.load(Path(settings.audiences_file) if settings.audiences_file else DEFAULT_FILE)

    def get(self, audience_id: str) -> Audience | None:
        return self._by_id.get(audience_id)

    def name_of(self, audience_id: str) -> str:
        """The display name; the id itself for an audience removed from the registry since."""
        audience = self._by_id.get(audience_id)
        return audience.name if audience else audience_id

    def __iter__(self) -> Iterator[Audience]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
