"""The cart web app: Starlette pages over a :class:`~eventsignal.Signal` of carts.

Every page works as plain HTML forms (post, then a 303 redirect back to the cart). When htmx is
loaded it posts the same forms in the background and swaps in the cart fragment the server returns
for requests carrying ``HX-Request``, so the two paths share one handler and one template.

Prices are typed as money (``12.50``, or ``12,50``) and kept as the integer cents the events
hold; pages show them with the app's currency (``CART_CURRENCY``, default EUR).

A form refused without JavaScript (a browser navigation, ``Sec-Fetch-Mode: navigate``) is
answered with a redirect back to the cart, which then shows the reason and the form as it was
sent (carried once, in a short-lived cookie), so Refresh and Back never resend it. Other
clients get the refusal itself, with its status code.

Status codes say what went wrong, and the page says why: 400 for input the cart can never accept
(not a number, an empty or oversized sku), 409 for a command the cart refuses in its current
state (a duplicate sku, a second payment), 404 for a cart or version that does not exist, 403
for a form posted from another site, and 503 with ``Retry-After`` while the store is unreachable.

Every response carries the headers of :mod:`eventsignal.web.security`; the pages use no inline
script or style, so its Content Security Policy admits only the app's own files.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jinja2
import msgspec
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from eventsignal import (
    Aggregate,
    AggregateExists,
    AggregateNotFound,
    CommandRejected,
    Event,
    InvalidAggregateId,
    Signal,
    StoreUnavailable,
)
from eventsignal.cart.assets import STATIC_DIR, TEMPLATES_DIR, find_htmx
from eventsignal.cart.domain import (
    MAX_PRICE,
    MAX_SKU_LENGTH,
    AddToCart,
    Cart,
    CartCommand,
    CartPaid,
    CompletePurchase,
    Product,
    ProductAdded,
    ProductRemoved,
    RemoveFromCart,
    cart_config,
    check_product,
    check_sku,
)
from eventsignal.cart.publishing import payments_publisher
from eventsignal.cart.recent import read_recent, recent_subscription
from eventsignal.cart.revenue import read_revenue, revenue_subscription
from eventsignal.domain.errors import ConfigurationError
from eventsignal.publishing import close_sink
from eventsignal.stores import EventStore
from eventsignal.stores.subscription_state import SubscriptionStore
from eventsignal.stores.urls import open_store
from eventsignal.subscriptions import SubscriptionRunner
from eventsignal.web.security import SameOriginMiddleware, SecurityHeadersMiddleware

if TYPE_CHECKING:
    from eventsignal.otel import OpenTelemetry

DEFAULT_DATABASE_URL = "sqlite:///data/cart.db"
MAX_BODY = 16 * 1024  # bytes; the largest honest form is well under 1 kB
RETRY_AFTER = 5  # seconds a client is asked to wait while the store is unreachable
# ASCII digits only: \d and str.isdigit() also take fullwidth, Arabic-Indic or superscript
# digits, which int() then reads (a surprise) or rejects (an error where a 400 belongs).
_DIGITS = re.compile(r"[0-9]+")
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,15}")
_VERSION = re.compile(r"[0-9]{1,18}")  # more digits than any cart could ever have versions
_MONEY = re.compile(r"([0-9]{1,12})(?:[.,]([0-9]{1,2}))?")
DEFAULT_CURRENCY = "EUR"
TIMES = "\u00d7"  # the multiplication sign, as in "3 x apple"
FLASH = "cart_flash"  # the cookie carrying a refused form's reason across the redirect back
FLASH_SECONDS = 60

CartSignal = Signal[Cart, CartCommand]


class BadInput(Exception):
    """A form the cart can never accept; answered with 400 and the reason."""


def database_url(explicit: str | None = None) -> str:
    """The store to use: the explicit URL, else ``DATABASE_URL``, else ``./data/cart.db``."""
    return explicit or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def currency_setting(explicit: str | None = None) -> str:
    """The currency shown beside prices: the explicit one, else ``CART_CURRENCY``, else EUR."""
    return (explicit or os.environ.get("CART_CURRENCY") or DEFAULT_CURRENCY).strip()[:8]


def parse_money(text: str, field: str = "price") -> int:
    """An amount typed as money (``12.50``, ``12,5``, ``12``) in integer cents."""
    text = text.strip()
    if not text:
        raise BadInput(f"the {field} is missing")
    match = _MONEY.fullmatch(text)
    if match is None:
        if re.fullmatch(r"[0-9]{13,}(?:[.,][0-9]*)?", text):
            raise BadInput(f"the {field} {text[:20]}... is far too large")
        raise BadInput(f"the {field} must be an amount like 12.50, not {text[:40]!r}")
    whole, part = match.group(1), match.group(2) or ""
    cents = int(whole) * 100 + int(part.ljust(2, "0"))
    if cents > MAX_PRICE:
        raise BadInput(f"the {field} must be at most {money(MAX_PRICE)}")
    return cents


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole:,}.{part:02d}"


def json_text(value: object) -> str:
    return msgspec.json.encode(value).decode()


def sentence(event: Event[Any], currency: str) -> str:
    """What an event did, as a person would say it: "Added 3 x apple at 1.20 EUR." (with the
    multiplication sign)."""
    match event.data:
        case ProductAdded(product):
            price = f"{money(product.price)} {currency}"
            return f"Added {product.quantity} {TIMES} {product.sku} at {price}."
        case ProductRemoved(sku):
            return f"Removed {sku}."
        case CartPaid(total):
            return f"Paid {money(total)} {currency}."
    return f"{event.name}."  # an event type this page does not know yet


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every template is HTML; user input must never become markup
        undefined=jinja2.StrictUndefined,
    )
    env.filters["money"] = money
    env.filters["segment"] = lambda value: quote(str(value), safe="")
    env.filters["json"] = json_text
    env.filters["sentence"] = sentence
    return Jinja2Templates(env=env)


class CartSite:
    """The app's handlers and what they share: the Signal, the revenue and the templates."""

    def __init__(
        self,
        store: EventStore,
        currency: str = DEFAULT_CURRENCY,
        otel: OpenTelemetry | None = None,
        publish_to: str | None = None,
    ) -> None:
        if not isinstance(store, SubscriptionStore):
            raise ConfigurationError(
                f"the cart app counts revenue with a durable subscription, which "
                f"{type(store).__name__} cannot keep: use SQLite or PostgreSQL"
            )
        self.signal: CartSignal = Signal(cart_config, store=store, instrumentation=otel)
        self.revenue = (
            revenue_subscription if otel is None else otel.subscription(revenue_subscription)
        )
        self.payments = payments_publisher(publish_to) if publish_to else None
        self.templates = _templates()
        self.htmx = find_htmx()
        self.currency = currency

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        store = self.signal.store
        async with (
            self.signal,
            SubscriptionRunner(self.revenue, store),
            SubscriptionRunner(recent_subscription, store),
        ):
            if self.payments is None:
                yield
                return
            try:
                async with SubscriptionRunner(self.payments, store):
                    yield
            finally:
                await close_sink(self.payments)

    # Rendering

    def page(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        context = {"htmx": self.htmx is not None, "currency": self.currency, **context}
        return self.templates.TemplateResponse(
            request, template, context, status_code=status, headers=headers
        )

    def cart_view(
        self,
        request: Request,
        cart_id: str,
        cart: Cart,
        *,
        error: str | None = None,
        status: int = 200,
        form: Mapping[str, str] | None = None,
    ) -> Response:
        """The cart page, or only its panel when htmx asked for it."""
        template = "_cart.html" if request.headers.get("HX-Request") else "cart.html"
        context = {"cart_id": cart_id, "cart": cart, "error": error, "form": form or {}}
        return self.page(request, template, context, status)

    # Pages

    async def home(self, request: Request) -> Response:
        context = {"error": None, "cart_id": "", "recent": await read_recent(self.signal.store)}
        return self.page(request, "home.html", context)

    async def new_cart(self, request: Request) -> Response:
        for _ in range(3):
            cart_id = secrets.token_urlsafe(16)  # 128 bits: guessing a live cart is hopeless
            try:
                await self.signal.create(cart_id)
            except AggregateExists:
                continue
            return RedirectResponse(f"/carts/{cart_id}", status_code=303)
        raise HTTPException(503, "could not find a free cart id; try again")

    async def open_cart(self, request: Request) -> Response:
        cart_id = request.query_params.get("cart_id", "").strip()
        error, status = None, 200
        if not cart_id:
            error, status = "enter the id of a cart", 400
        elif not await self._exists(cart_id):
            error, status = f"there is no cart with id {cart_id!r}", 404
        if error is not None:
            recent = await read_recent(self.signal.store)
            context = {"error": error, "cart_id": cart_id[:200], "recent": recent}
            return self.page(request, "home.html", context, status)
        return RedirectResponse(f"/carts/{quote(cart_id, safe='')}", status_code=303)

    async def show_cart(self, request: Request) -> Response:
        cart_id = request.path_params["cart_id"]
        handle = await self._aggregate(cart_id)
        flash = _read_flash(request.cookies.get(FLASH))
        if flash is None:
            return self.cart_view(request, cart_id, handle.state)
        error, form = flash
        response = self.cart_view(request, cart_id, handle.state, error=error, form=form)
        response.delete_cookie(FLASH, path=_cart_path(cart_id))
        return response

    async def add(self, request: Request) -> Response:
        form = await self._form(request)
        fields = {name: str(form.get(name, "")) for name in ("sku", "quantity", "price")}
        try:
            product = check_product(
                Product(
                    sku=fields["sku"].strip(),
                    quantity=_whole_number(fields["quantity"], "quantity"),
                    price=parse_money(fields["price"]),
                )
            )
        except (BadInput, CommandRejected) as exc:
            # The form comes back filled in, cut to sizes the inputs accept.
            echoed = {name: value[:MAX_SKU_LENGTH] for name, value in fields.items()}
            return await self._refused(request, str(exc), 400, echoed)
        return await self._command(request, AddToCart(product), fields)

    async def remove(self, request: Request) -> Response:
        form = await self._form(request)
        try:
            sku = check_sku(str(form.get("sku", "")))
        except CommandRejected as exc:
            return await self._refused(request, exc.reason, 400)
        return await self._command(request, RemoveFromCart(sku))

    async def pay(self, request: Request) -> Response:
        await self._form(request)
        return await self._command(request, CompletePurchase())

    async def history(self, request: Request) -> Response:
        cart_id = request.path_params["cart_id"]
        events = await self._history(cart_id)
        return self.page(request, "history.html", {"cart_id": cart_id, "events": events})

    async def version(self, request: Request) -> Response:
        cart_id = request.path_params["cart_id"]
        text: str = request.path_params["version"]
        events = await self._history(cart_id)
        version = int(text) if _VERSION.fullmatch(text) else None
        if version is None or version > len(events):
            shown = text if len(text) <= 20 else f"{text[:20]}..."
            raise HTTPException(
                404, f"cart {cart_id!r} has versions 0 to {len(events)}, not {shown}"
            )
        past = await self.signal.state_at(cart_id, version=version)
        context = {
            "cart_id": cart_id,
            "cart": past.state,
            "version": past.version,
            "latest": len(events),
            "event": events[version - 1] if version else None,
        }
        return self.page(request, "version.html", context)

    async def revenue_page(self, request: Request) -> Response:
        totals, fresh = await read_revenue(self.signal.store)
        return self.page(request, "revenue.html", {"revenue": totals, "fresh": fresh})

    async def htmx_script(self, request: Request) -> Response:
        if self.htmx is None:
            raise HTTPException(404, "htmx is not installed; the pages work without it")
        return FileResponse(self.htmx, media_type="text/javascript")

    async def favicon(self, request: Request) -> Response:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    async def error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        context = {"message": exc.detail}
        return self.page(request, "error.html", context, exc.status_code, exc.headers)

    async def unavailable(self, request: Request, exc: Exception) -> Response:
        """503 while the store cannot be reached: nothing was done, and trying again may work."""
        assert isinstance(exc, StoreUnavailable)
        message = "the carts cannot be reached right now; nothing was changed, try again shortly"
        headers = {"Retry-After": str(RETRY_AFTER)}
        return self.page(request, "error.html", {"message": message}, 503, headers)

    # Helpers

    async def _form(self, request: Request) -> FormData:
        length = request.headers.get("content-length", "")
        if _DIGITS.fullmatch(length) and int(length) > MAX_BODY:
            raise HTTPException(413, f"the form is larger than {MAX_BODY} bytes")
        return await request.form(max_files=0, max_fields=20, max_part_size=MAX_BODY)

    async def _exists(self, cart_id: str) -> bool:
        try:
            await self._aggregate(cart_id)
        except HTTPException:
            return False
        return True

    async def _aggregate(self, cart_id: str) -> Aggregate[Cart]:
        try:
            return await self.signal.aggregate(cart_id)
        except (AggregateNotFound, InvalidAggregateId):
            raise HTTPException(404, f"there is no cart with id {cart_id!r}") from None

    async def _history(self, cart_id: str) -> list[Event[Any]]:
        try:
            return await self.signal.events(cart_id)
        except (AggregateNotFound, InvalidAggregateId):
            raise HTTPException(404, f"there is no cart with id {cart_id!r}") from None

    async def _command(
        self, request: Request, command: CartCommand, form: Mapping[str, str] | None = None
    ) -> Response:
        cart_id = request.path_params["cart_id"]
        handle = await self._aggregate(cart_id)
        try:
            cart = await handle.handle_command(command)
        except CommandRejected as exc:
            if _navigation(request):
                return _back_with(cart_id, exc.reason, form)
            return self.cart_view(
                request, cart_id, handle.state, error=exc.reason, status=409, form=form
            )
        if request.headers.get("HX-Request"):
            return self.cart_view(request, cart_id, cart)
        return RedirectResponse(f"/carts/{quote(cart_id, safe='')}", status_code=303)

    async def _refused(
        self, request: Request, reason: str, status: int, form: Mapping[str, str] | None = None
    ) -> Response:
        cart_id = request.path_params["cart_id"]
        handle = await self._aggregate(cart_id)
        if _navigation(request):
            return _back_with(cart_id, reason, form)
        return self.cart_view(
            request, cart_id, handle.state, error=reason, status=status, form=form
        )


def _cart_path(cart_id: str) -> str:
    return f"/carts/{quote(cart_id, safe='')}"


def _navigation(request: Request) -> bool:
    """Whether a browser sent this form itself (no JavaScript in between)."""
    return request.headers.get("sec-fetch-mode") == "navigate" and not request.headers.get(
        "HX-Request"
    )


def _back_with(cart_id: str, reason: str, form: Mapping[str, str] | None) -> Response:
    """A 303 back to the cart, carrying the refusal and the form once."""
    response = RedirectResponse(_cart_path(cart_id), status_code=303)
    carried = {
        "error": reason[:500],
        "form": {k: v[:MAX_SKU_LENGTH] for k, v in (form or {}).items()},
    }
    response.set_cookie(
        FLASH,
        base64.urlsafe_b64encode(msgspec.json.encode(carried)).decode(),
        max_age=FLASH_SECONDS,
        path=_cart_path(cart_id),
        httponly=True,
        samesite="lax",
    )
    return response


class _Flash(msgspec.Struct):
    error: str
    form: dict[str, str] = {}


def _read_flash(cookie: str | None) -> tuple[str, dict[str, str]] | None:
    if not cookie:
        return None
    try:
        flash = msgspec.json.decode(base64.urlsafe_b64decode(cookie.encode()), type=_Flash)
    except (ValueError, msgspec.DecodeError):
        return None  # not ours, or damaged: show the cart without it
    return flash.error[:500], {k: v[:MAX_SKU_LENGTH] for k, v in flash.form.items()}


def _whole_number(text: str, field: str) -> int:
    text = text.strip()
    if not text:
        raise BadInput(f"the {field} is missing")
    if not _WHOLE_NUMBER.fullmatch(text):
        if re.fullmatch(r"-?[0-9]+", text):
            raise BadInput(f"the {field} {text[:20]}... is far too large")
        raise BadInput(f"the {field} must be a whole number, not {text[:40]!r}")
    return int(text)


def create_app(
    url: str | None = None,
    *,
    store: EventStore | None = None,
    trusted_origins: Sequence[str] = (),
    currency: str | None = None,
    otel: OpenTelemetry | None = None,
    publish_to: str | None = None,
) -> Starlette:
    """The cart app on ``store``, or on the store named by ``url`` (see :func:`database_url`).

    The store is opened, and migrated if it was named by URL, when the app starts. Forms are
    accepted from the app's own pages only, or from ``trusted_origins`` too (see
    :class:`~eventsignal.web.security.SameOriginMiddleware`). With ``otel``, each request is
    traced (the ``otel`` extra) into its command and the revenue projection. ``publish_to`` (a
    sink URL, see :mod:`eventsignal.cart.publishing`) publishes each payment as a CloudEvent.
    """
    site = CartSite(
        store if store is not None else open_store(database_url(url)),
        currency_setting(currency),
        otel,
        publish_to,
    )
    cart = "/carts/{cart_id}"
    routes = [
        Route("/", site.home),
        Route("/carts", site.new_cart, methods=["POST"]),
        Route("/carts/open", site.open_cart),
        Route(cart, site.show_cart),
        Route(f"{cart}/add", site.add, methods=["POST"]),
        Route(f"{cart}/remove", site.remove, methods=["POST"]),
        Route(f"{cart}/pay", site.pay, methods=["POST"]),
        Route(f"{cart}/history", site.history),
        Route(cart + "/versions/{version}", site.version),
        Route("/revenue", site.revenue_page),
        Route("/htmx.min.js", site.htmx_script),
        Route("/favicon.ico", site.favicon),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeadersMiddleware),  # outermost: refusals get the headers too
        Middleware(SameOriginMiddleware, trusted_origins=trusted_origins),
    ]
    if otel is not None:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        middleware.insert(
            0, Middleware(OpenTelemetryMiddleware, tracer_provider=otel.tracer_provider)
        )
    handlers = {HTTPException: site.error, StoreUnavailable: site.unavailable}
    return Starlette(
        routes=routes, middleware=middleware, lifespan=site.lifespan, exception_handlers=handlers
    )
