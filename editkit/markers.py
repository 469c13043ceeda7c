"""The pluggy markers of the ``editkit`` project.

Plugins import :data:`hookimpl` (re-exported as ``editkit.hookimpl``) to mark their hook
implementations. This module imports nothing heavy, so plugins can be discovered and listed
without loading torch.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "editkit"
ENTRY_POINT_GROUP = "editkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
