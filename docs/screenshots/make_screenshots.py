"""Write the README's screenshots of the companion TUI: `uv run python docs/screenshots/make_screenshots.py`.

They are the snapshot tests' scenes (companion/tests/ui/scenes.py: the fake server, a fixed device key, a
frozen clock; the demo's with a scripted agent), so running this again gives the same pictures unless the screens
changed.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository: the test kit's scenes (`companion.tests…`)

from companion.tests.ui.scenes import SCENES  # noqa: E402

SHOTS = {
    "inbox": "companion-inbox.svg",
    "decision": "companion-approve.svg",
    "pairing-code": "companion-pairing-code.svg",
    "demo-timeline": "demo.svg",
    "timeline": "companion-timeline.svg",
}


async def capture(scene_name: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scene = SCENES[scene_name](Path(tmp) / "state")
        async with scene.app.run_test(size=scene.size) as pilot:
            await scene.prepare(pilot)
            await pilot.pause()
            scene.app.save_screenshot(target.name, path=str(target.parent))


def main(out: Path = HERE) -> int:
    for scene_name, file_name in SHOTS.items():
        asyncio.run(capture(scene_name, out / file_name))
        print(out / file_name)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
