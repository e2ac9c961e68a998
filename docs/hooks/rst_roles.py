"""A griffe extension for the API reference: the docstrings' reST markup, as Markdown.

The docstrings are written for ``help()`` and Sphinx-minded readers: ``:class:`~x.Y``` roles and
paragraphs ending in ``::`` before an indented example. Here roles become inline code (the last
part of the name, for ``~``) and ``::`` a colon; the indented example is a Markdown code block
already.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj|const):`(~?)([^`]+)`")
_LITERAL = re.compile(r"(\S)::$", re.M)


def _role(match: re.Match[str]) -> str:
    short, target = match.groups()
    name = target.rsplit(".", 1)[-1] if short else target
    return f"`{name}`"


def markdown(text: str) -> str:
    """reST roles as inline code, ``text::`` as ``text:``."""
    return _LITERAL.sub(r"\1:", _ROLE.sub(_role, text))


class RstRoles(griffe.Extension):
    """Rewrites each docstring once it is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
