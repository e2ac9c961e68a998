"""Where the cart's browser assets come from: its own stylesheet and templates, and htmx from
its npm package (see :mod:`eventsignal.web.assets`)."""

from __future__ import annotations

from pathlib import Path

from eventsignal.web.assets import HTMX_ENV, find_htmx

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"

__all__ = ["HTMX_ENV", "STATIC_DIR", "TEMPLATES_DIR", "find_htmx"]
