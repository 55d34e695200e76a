"""The installed package collides with nothing: the wheel holds one top-level package, `vouchsim`, and a project with
its own `server/` and `companion/` packages runs the pytest plugin's README example against it.

Such a project is the common case (a web app with a `server` package), and before the namespace the fixture ran
`python -m server serve`, which found the project's folder: `No module named server.__main__`. Here the wheel is
built from this checkout, installed with uv into a fresh virtual environment, and pytest runs from the project's
folder (so its own packages come first on sys.path, as they do in its CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from e2e.harness import REPO, clean_environment

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "companion" / "tests" / "testing" / "example_test_vouchsim.py"
BUILD_TIMEOUT = 300.0  # a wheel build and ~60 packages from uv's cache: seconds, unless the cache is cold
RUN_TIMEOUT = 180.0

THEIR_PACKAGES = {
    # A project of its own, with the two names Vouchsim's halves have in its repository.
    "server/__init__.py": 'NAME = "their server"\n',
    "server/__main__.py": "raise SystemExit(\"this is the project's own server package, not Vouchsim's\")\n",
    "companion/__init__.py": 'NAME = "their companion"\n',
    "companion/__main__.py": "raise SystemExit(\"this is the project's own companion package, not Vouchsim's\")\n",
    "tests/test_their_own.py": (
        "import companion\nimport server\n\n\n"
        "def test_their_packages_are_theirs():\n"
        '    assert server.NAME == "their server" and companion.NAME == "their companion"\n'
    ),
}


def uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if found is None:
        pytest.fail("this test builds and installs the wheel with uv: run it with `uv run pytest` (or `make test`)")
    return found


def run(command: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.requirement("PACKAGE-ONE-NAMESPACE", "TESTBED-PYTEST-PLUGIN")
def test_a_project_with_its_own_server_and_companion_packages_runs_the_plugin_example(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run([uv(), "build", "--wheel", "--quiet", "--out-dir", str(dist), str(REPO)], tmp_path, BUILD_TIMEOUT)
    [wheel] = dist.glob("vouchsim-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/", 1)[0] for name in archive.namelist() if not name.startswith("vouchsim-")}
        entry_points = archive.read(next(n for n in archive.namelist() if n.endswith("entry_points.txt"))).decode()
    assert top_level == {"vouchsim"}, top_level
    assert "vouchsim = vouchsim.testing" in entry_points
    assert "vouchsim = vouchsim.server.cli:main" in entry_points

    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    run([uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], tmp_path, BUILD_TIMEOUT)
    run([uv(), "pip", "install", "--quiet", "--python", str(python), str(wheel), "pytest"], tmp_path, BUILD_TIMEOUT)

    project = tmp_path / "their-project"
    for name, text in THEIR_PACKAGES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    shutil.copy(EXAMPLE, project / "tests" / "test_vouchsim_example.py")  # the README's example, as they'd copy it

    env = clean_environment()
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # `python -m pytest` puts the project's folder first on sys.path: `server` and `companion` are theirs.
    output = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], project, RUN_TIMEOUT, env)
    assert "3 passed" in output, output  # the example's two tests, and their own
