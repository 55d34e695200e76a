"""What each screen does and which key does what."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# Vouchsim companion

This app plays your **trusted phone**: it links applications to your account by scanning their
pairing QR, and it approves or denies what agents ask to do for you. Every decision is signed with
this device's key.

## Keys

- `i` `h` `c` `s`: the Inbox, History, Connections and Scan tabs; `tab` moves between controls
- `a` / `d` in the Inbox: approve / deny the selected request, else the newest (`↑` `↓` choose); a
  confirmation shows the exact bytes that are signed, and `enter` signs them
- `x` in History: revoke the selected approved delegation
- `u` in Connections: unpair the selected application
- `r` reconnect now, `t` light or dark theme, `?` this help, `q` quit
- in a text field letters are text: `escape` leaves the field, `ctrl+q` quits from anywhere

## Screens

**Inbox**: requests from agents, live. Each card shows the application, where it wants to act
(the audience), the scopes, its purpose, the *binding message* (check it matches what the agent shows)
and the time left.

**Scan**: the camera. Give a picture file, an image URL, or a folder to watch: every new image saved
there is scanned. Before a pairing is approved you see who is asking, and approving needs your PIN (the
field has the focus: type it, `enter`; `escape` declines). The code to type on the authorization page then
stays docked under the tabs, large, until it is used or expires.

**History**: decided, expired and revoked requests. **Connections**: paired applications; unpairing
one stops its tokens at once. **Timeline** (`l`, with the server's testbed token): each request of the
flow as the server records it, live; failures in red, `↯` where a testbed fault answered.

The bar at the top shows the server, whether the live connection is up (it reconnects by itself),
and this device's name and key fingerprint; the line under it names the next step.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog", classes="dialog"):
            yield Markdown(HELP, id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
