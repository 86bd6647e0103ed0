"""A handler module that kills its process while it is imported, as a crash in a native extension would: the
template's `tests.e2e.fixture_crash.handler` is never reached."""

from __future__ import annotations

import os

os._exit(3)
