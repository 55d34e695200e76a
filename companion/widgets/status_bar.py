"""The status bar: which server, whether the live connection to it is up, and which device this is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static

from vouchsim.companion.core.text import clean

LinkState = Literal["idle", "connecting", "online", "offline", "refused", "revoked"]

_BADGES: dict[LinkState, str] = {
    "idle": "○ not connected",
    "connecting": "◌ connecting…",
    "online": "● live",
    "offline": "▲ offline",
    "refused": "✖ refused",
    "revoked": "✖ DEVICE REVOKED",
}


@dataclass(frozen=True)
class Link:
    """The app's view of its server connection; the app owns it and hands it down."""

    state: LinkState = "idle"
    server: str = ""
    device: str = ""
    fingerprint: str = ""
    detail: str = ""  # why it is offline or refused, and what happens next


class StatusBar(Vertical):
    """One line (brand, link state, server, device), and a second one saying what is wrong, when it is."""

    link: reactive[Link] = reactive(Link, init=False)

    def compose(self) -> ComposeResult:
        with Horizontal(id="status-line"):
            yield Static(Content.styled("Vouchsim", "bold"), id="status-brand")
            yield Static(id="status-link", markup=False)
            yield Static(id="status-server", markup=False)
            yield Static(id="status-device", markup=False)
        yield Static(id="status-detail", markup=False)

    def on_mount(self) -> None:
        self.watch_link(self.link)

    def watch_link(self, link: Link) -> None:
        badge = self.query_one("#status-link", Static)
        badge.update(_BADGES[link.state])
        for state in _BADGES:
            badge.set_class(state == link.state, f"-{state}")
        self.query_one("#status-server", Static).update(clean(link.server))
        detail = self.query_one("#status-detail", Static)
        detail.update(clean(link.detail))
        detail.display = bool(link.detail)
        detail.set_class(link.state in ("refused", "revoked"), "-refused")
        device = clean(link.device) + (f" · {link.fingerprint}" if link.fingerprint else "")
        self.query_one("#status-device", Static).update(device)
