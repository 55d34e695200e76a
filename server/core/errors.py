"""The base of every domain error. Features subclass it in their own `errors.py`; routes translate once."""

from __future__ import annotations


class VouchsimError(Exception):
    """A failure a caller can act on: `code` is the wire error code, `status` the HTTP status it maps to."""

    code: str = "server_error"
    status: int = 400

    def __init__(self, description: str = "", *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(description or self.__class__.__doc__ or self.code)
        self.description = description or (self.__class__.__doc__ or self.code).strip()
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
