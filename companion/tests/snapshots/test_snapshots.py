"""Every screen at 100x32 (the demo's at 140x40), compared with the SVG baselines in __snapshots__/
(pytest-textual-snapshot). The demo's scenes pin its layout: the agent panel on the right of the tabs, dialogs on
the companion's side, the pairing code docked where it covers nothing.

After a deliberate change of look: `uv run pytest companion/tests/snapshots --snapshot-update`, then
review the new SVGs (the HTML report the plugin writes on a failure shows old and new side by side).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from companion.tests.ui.scenes import SCENES

SnapCompare = Callable[..., bool]


@pytest.mark.parametrize("name", sorted(SCENES))
def test_screen_looks_as_it_did(name: str, snap_compare: SnapCompare, tmp_path: Path) -> None:
    scene = SCENES[name](tmp_path / "state")
    assert snap_compare(scene.app, terminal_size=scene.size, run_before=scene.prepare)


def test_every_scene_is_a_different_picture(tmp_path: Path) -> None:
    """A scene whose preparation silently did nothing would pass its snapshot forever: the baselines
    must all differ."""
    baselines = sorted((Path(__file__).parent / "__snapshots__").rglob("*.raw"))
    assert len(baselines) == len(SCENES)
    bodies: set[Any] = {path.read_text(encoding="utf-8") for path in baselines}
    assert len(bodies) == len(baselines)
