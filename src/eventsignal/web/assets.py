"""htmx for the web apps, from its npm package: never copied into this repository.

It is the npm package ``htmx.org``, installed into the Python environment's prefix (``npm install
--global --prefix "$VIRTUAL_ENV" htmx.org@2``, which ``scripts/setup`` does), or any file named by
``EVENTSIGNAL_HTMX_JS``. Without it the pages still work: every form posts and redirects on its
own; htmx only spares the page reloads.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HTMX_ENV = "EVENTSIGNAL_HTMX_JS"


def find_htmx() -> Path | None:
    """The htmx script to serve, or ``None`` when no installed copy is found."""
    candidates = [
        os.environ.get(HTMX_ENV, ""),
        str(Path(sys.prefix) / "lib" / "node_modules" / "htmx.org" / "dist" / "htmx.min.js"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None
