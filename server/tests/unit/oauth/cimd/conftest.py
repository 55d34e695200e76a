from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.tests.cimd_support import DocumentServer, served


@pytest.fixture
def document_server(tmp_path: Path) -> Iterator[DocumentServer]:
    yield from served(tmp_path)
