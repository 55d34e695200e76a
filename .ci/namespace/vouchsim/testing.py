"""The `vouchsim` pytest plugin, as the `pytest11` entry point names it.

Its fixtures live in `vouchsim.companion.testing.pytest_plugin`; this module is the short public name a user
can write in `pytest_plugins` or `-p`, and the one module pytest registers (so nothing is registered twice).
"""

from vouchsim.companion.testing.pytest_plugin import *  # noqa: F403
