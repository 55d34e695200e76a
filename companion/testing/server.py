"""A throwaway Vouchsim server for tests: `python -m vouchsim.server serve` on a free loopback port with SQLite in a
temporary directory, ready once /healthz answers. The process handling is `companion.server_process`'s (the demo
and the side-car use it too); this adds the temporary directory and a context manager."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from vouchsim.companion.server_process import ServerProcess, ServerStartError, free_port

__all__ = ["ServerStartError", "VouchsimServer", "free_port"]


class VouchsimServer(ServerProcess):
    """`with VouchsimServer() as server: ...` starts it (in `state_dir`, or a fresh temporary directory that is
    removed again on stop) and stops it. `start()` raises ServerStartError with the log's tail."""

    def __init__(
        self, state_dir: Path | None = None, *, port: int | None = None, testbed_token: str | None = None
    ) -> None:
        """`testbed_token`: run with the testbed controls (`/testbed/`) on, reached with this bearer token."""
        self._owned = state_dir is None
        self.testbed_token = testbed_token
        env = {"VOUCHSIM_TESTBED": "1", "VOUCHSIM_TESTBED_TOKEN": testbed_token} if testbed_token else {}
        super().__init__(state_dir or Path(tempfile.mkdtemp(prefix="vouchsim-test-")), port=port, env=env)

    def start(self, on_progress: Callable[[str], None] | None = None) -> VouchsimServer:
        super().start(on_progress)
        return self

    def stop(self) -> None:
        super().stop()
        if self._owned:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self._owned = False

    def __enter__(self) -> VouchsimServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
