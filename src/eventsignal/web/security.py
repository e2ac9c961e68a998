"""Browser-facing defences, as ASGI middleware any page of the project can be wrapped in.

:class:`SameOriginMiddleware` refuses cross-site form posts (CSRF): a page on another site can
make a visitor's browser post a form here, but the browser then names that site in ``Origin``.
:class:`SecurityHeadersMiddleware` adds the headers that keep pages from running injected
scripts, being framed by other sites, being sniffed into another content type, or leaking their
addresses to other sites.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Only the app's own files: no inline script or style, no eval, no plugins, no framing.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    # Same-site requests keep their Referer, which SameOriginMiddleware falls back on.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SameOriginMiddleware:
    """Refuse unsafe requests (POST and the like) sent from another site, with 403.

    The site that caused a request is its ``Origin`` header, or, without one, the host of its
    ``Referer``; it must be the host (and port) the request was sent to, as its ``Host`` header
    says, or one of ``trusted_origins`` (``"https://shop.example"``, for pages served under
    another name behind a proxy that rewrites ``Host``). ``Origin: null`` (sandboxed frames,
    some redirects) is refused.

    A request with neither header is let through: every browser in use sends ``Origin`` with
    a form post or a script's POST, so such a request comes from a program (curl, a test, a
    script), which a malicious page cannot make a visitor's browser send.
    """

    def __init__(self, app: ASGIApp, trusted_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.trusted = {_site(origin) for origin in trusted_origins} - {None}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            reason = self._refusal(Headers(scope=scope))
            if reason is not None:
                await PlainTextResponse(reason, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, headers: Headers) -> str | None:
        """Why the request is refused, or ``None`` when it came from this site or a program."""
        source = headers.get("origin") or headers.get("referer")
        if source is None:
            return None
        site = _site(source)
        if site is None:
            return "refused: the request does not say which site sent it"
        if site in self.trusted or site[1:] == _host_site(headers.get("host", ""), site[0]):
            return None
        return "refused: a form on another site cannot change anything here"


def _site(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an absolute http(s) URL, or ``None`` (``null``, garbage)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _host_site(host: str, scheme: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``Host`` header, its port defaulting to that of ``scheme``."""
    site = _site(f"{scheme}://{host}")
    return None if site is None or "/" in host or "@" in host else site[1:]


class SecurityHeadersMiddleware:
    """Add :data:`SECURITY_HEADERS` to every response that does not set them itself."""

    def __init__(self, app: ASGIApp, headers: Mapping[str, str] = SECURITY_HEADERS) -> None:
        self.app = app
        self.headers = dict(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
