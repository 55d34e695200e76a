"""The `vouchsim` pytest plugin, as the `pytest11` entry point names it.

Its fixtures and hooks live in `vouchsim.companion.testing.pytest_plugin`; this short public name is that very
module (one module object under two names, so its private fixtures come along and pytest never sees two plugins).
"""

import sys

from vouchsim.companion.testing import pytest_plugin

sys.modules[__name__] = pytest_plugin
