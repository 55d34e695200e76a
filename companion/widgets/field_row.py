"""A label and its value on one row, as dialogs and cards show a request's details."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, Static


class FieldRow(Horizontal):
    """`Scopes     payments.identity, payments.prepare`; the value is plain text, never markup."""

    def __init__(self, label: str, value: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=f"field-row {classes or ''}".strip())
        self._label = label
        self._value = value

    def compose(self) -> ComposeResult:
        yield Label(self._label, classes="field-label")
        yield Static(self._value, markup=False, classes="field-value")
