"""A throwaway Vouchsim server for tests: `python -m vouchsim.server serve` on a free loopback port with SQLite in a
temporary directory, ready once /healthz answers. The process handling is the demo's (`DemoServer`); this
adds the temporary directory, the MCP URL, and a context manager."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from vouchsim.companion.demo.server import DemoServer, ServerStartError, free_port

__all__ = ["ServerStartError", "VouchsimServer", "free_port"]


class VouchsimServer(DemoServer):
    """`with VouchsimServer() as server: ...` starts it (in `state_dir`, or a fresh temporary directory that is
    removed again on stop) and stops it. `start()` raises ServerStartError with the log's tail."""

    def __init__(self, state_dir: Path | None = None, *, port: int | None = None) -> None:
        self._owned = state_dir is None
        super().__init__(state_dir or Path(tempfile.mkdtemp(prefix="vouchsim-test-")), port=port)

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    def start(self) -> VouchsimServer:
        super().start()
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
