"""The stream browser: Starlette pages over any event store, read-only unless an admin acts.

Pages: aggregate types with counts and a search by id or prefix (``/``, ``/aggregates``); one
stream's events (``/streams/TYPE/ID``), and with the application's configs its state at any
version and the change between two (``.../state``, ``.../diff``); single events (``/events/N``);
the global log, live through server-sent events (``/log``, ``/log/live``); subscriptions with
their partitions, owners and parked events (``/subscriptions``); read-model documents
(``/models``). Every listing pages by a key (see :mod:`eventsignal.browser.catalog`).

Every page works without JavaScript; ``browser.js`` only follows the live log and moves the
time slider. Actions (``POST``) need the admin cookie (see :mod:`eventsignal.browser.admin`), are
refused from other sites, and are recorded in the store's audit stream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import msgspec
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from eventsignal.application import Signal
from eventsignal.browser import catalog
from eventsignal.browser.admin import COOKIE, AdminAction, AdminGate, record
from eventsignal.browser.states import diff_lines, state_json
from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.errors import AggregateNotFound, StoreUnavailable
from eventsignal.stores.base import EventStore
from eventsignal.stores.credentials import is_secret_name, redact
from eventsignal.stores.subscription_state import SubscriptionStore
from eventsignal.subscriptions import (
    SubscriptionRunner,
    parked_events,
    registered,
    registered_names,
    subscription_status,
)
from eventsignal.subscriptions.errors import SubscriptionNotFound
from eventsignal.web.security import SameOriginMiddleware, SecurityHeadersMiddleware

HERE = Path(__file__).parent
LIVE_SECONDS = 30.0  # one live-log response lasts this long; the browser reconnects on its own
KEEP_ALIVE = 10.0  # seconds between comments that keep an idle live log's connection open
MAX_FORM = 4 * 1024  # bytes; the largest honest form here is the login's
_NUMBER = re.compile(r"[0-9]{1,18}")


def _pretty(data: bytes) -> str:
    """Stored event data as indented JSON, or a note with its first bytes when it is not JSON."""
    try:
        return msgspec.json.format(data, indent=2).decode()
    except (msgspec.DecodeError, UnicodeDecodeError):
        head = base64.b64encode(data[:48]).decode()
        return f"<{len(data)} bytes, not JSON (encrypted or compressed?); base64 {head}...>"


def _metadata(metadata: Mapping[str, str]) -> list[tuple[str, str, str | None]]:
    """``(key, value, link)`` per metadata entry: causation and correlation ids link to what they
    name, and a value under a name that may hold a credential is masked."""
    shown: list[tuple[str, str, str | None]] = []
    for key, value in sorted(metadata.items()):
        link = None
        if is_secret_name(key):
            value = "***"
        elif key == "causation_id":
            link = f"/events/id/{quote(value, safe='')}"
        elif key == "correlation_id":
            link = "/log?" + urlencode({"correlation": value})
        shown.append((key, value, link))
    return shown


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["segment"] = lambda value: quote(str(value), safe="")
    env.filters["pretty"] = _pretty
    env.filters["metadata"] = _metadata
    env.filters["when"] = lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    env.globals["query"] = lambda **items: urlencode({k: v for k, v in items.items() if v})
    return Jinja2Templates(env=env)


def _number(text: str | None, what: str, default: int = 0) -> int:
    if text is None or text == "":
        return default
    if not _NUMBER.fullmatch(text):
        raise HTTPException(400, f"{what} must be a whole number, not {text[:20]!r}")
    return int(text)


class Browser:
    """The browser's handlers and what they share: the store, configs, admin gate, templates."""

    def __init__(
        self,
        store: EventStore,
        *,
        url: str = "",
        configs: Sequence[AggregateConfig[Any, Any]] = (),
        admin_secret: str | None = None,
        live_seconds: float = LIVE_SECONDS,
    ) -> None:
        self.store = store
        self.where = redact(url) if url else type(store).__name__
        self.signals: dict[str, Signal[Any, Any]] = {
            c.name: Signal(c, store=store, telemetry=None) for c in configs
        }
        self.gate = AdminGate(admin_secret)
        self.live_seconds = live_seconds
        self.templates = _templates()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await self.store.open()
            stack.push_async_callback(self.store.close)
            for signal in self.signals.values():
                await stack.enter_async_context(signal)
            yield

    # Rendering

    def page(
        self, request: Request, template: str, context: Mapping[str, Any], status: int = 200
    ) -> Response:
        shared = {
            "where": self.where,
            "admin": self.gate.admits(request.cookies.get(COOKIE)),
            "can_admin": self.gate.enabled,
            "decoded": sorted(self.signals),
            "subscriptions_kept": isinstance(self.store, SubscriptionStore),
        }
        return self.templates.TemplateResponse(
            request, template, {**shared, **context}, status_code=status
        )

    # Aggregates

    async def home(self, request: Request) -> Response:
        types = await catalog.aggregate_types(self.store)
        head = await self.store.head_position()
        return self.page(request, "home.html", {"types": types, "head": head})

    async def aggregates(self, request: Request) -> Response:
        params = request.query_params
        kind = params.get("type", "").strip() or None
        prefix = params.get("q", "").strip()
        after = (params.get("after_type", ""), params.get("after_id", ""))
        rows, next_key = await catalog.find_aggregates(
            self.store, aggregate_name=kind, prefix=prefix, after=after
        )
        if len(rows) == 1 and prefix and rows[0].aggregate_id == prefix and after == ("", ""):
            row = rows[0]  # an exact id: straight to its stream
            return RedirectResponse(_stream_url(row.aggregate_name, row.aggregate_id), 303)
        types = await catalog.aggregate_types(self.store)
        context = {"rows": rows, "next": next_key, "kind": kind or "", "q": prefix, "types": types}
        return self.page(request, "aggregates.html", context)

    async def stream(self, request: Request) -> Response:
        kind, ident = request.path_params["type"], request.path_params["id"]
        after = _number(request.query_params.get("after"), "after")
        events, more = await catalog.stream_page(self.store, kind, ident, after)
        if not events and not await self.store.exists(kind, ident):
            raise HTTPException(404, f"there is no {kind} {ident!r} in this store")
        context = {
            "kind": kind,
            "ident": ident,
            "events": events,
            "after": after,
            "more": more,
            "page": catalog.PAGE,
            "base": _stream_url(kind, ident),
            "can_decode": kind in self.signals,
        }
        return self.page(request, "stream.html", context)

    async def state(self, request: Request) -> Response:
        kind, ident, signal = self._signal(request)
        latest = await self._latest_version(kind, ident)
        version = min(_number(request.query_params.get("version"), "version", latest), latest)
        past = await signal.state_at(ident, version=version)
        event = None
        if version:
            found, _ = await catalog.stream_page(self.store, kind, ident, version - 1, 1)
            event = found[0] if found else None
        context = {
            "kind": kind,
            "ident": ident,
            "version": past.version,
            "latest": latest,
            "state": state_json(past.state),
            "event": event,
            "base": _stream_url(kind, ident),
        }
        return self.page(request, "state.html", context)

    async def diff(self, request: Request) -> Response:
        kind, ident, signal = self._signal(request)
        latest = await self._latest_version(kind, ident)
        params = request.query_params
        new = min(_number(params.get("to"), "to", latest), latest)
        old = min(_number(params.get("from"), "from", max(new - 1, 0)), latest)
        before = state_json((await signal.state_at(ident, version=old)).state)
        after = state_json((await signal.state_at(ident, version=new)).state)
        context = {
            "kind": kind,
            "ident": ident,
            "old": old,
            "new": new,
            "latest": latest,
            "lines": diff_lines(before, after),
            "base": _stream_url(kind, ident),
        }
        return self.page(request, "diff.html", context)

    # Events and the log

    async def event(self, request: Request) -> Response:
        position = _number(request.path_params["position"], "the position")
        found = await catalog.event_at(self.store, position)
        if found is None:
            raise HTTPException(404, f"there is no event at position {position}")
        return self.page(request, "event.html", {"event": found})

    async def event_by_id(self, request: Request) -> Response:
        text = request.path_params["event_id"]
        try:
            event_id = uuid.UUID(text)
        except ValueError:
            raise HTTPException(404, f"{text[:40]!r} is not an event id") from None
        position = await catalog.position_of(self.store, event_id)
        if position is None:
            raise HTTPException(404, f"no event with id {event_id} found in this store")
        return RedirectResponse(f"/events/{position}", 303)

    async def log(self, request: Request) -> Response:
        params = request.query_params
        filters = _log_filters(params)
        head = await self.store.head_position()
        if "after" in params:
            after = _number(params.get("after"), "after")
        else:  # the newest page (fewer events where positions have gaps, as on NATS)
            after = max(head - catalog.PAGE, 0) if not any(filters.values()) else 0
        events, reached, more = await catalog.log_page(
            self.store, after=after, filters=catalog.LogFilter(**filters)
        )
        context = {
            "events": events,
            "after": after,
            "reached": reached,
            "more": more,
            "head": head,
            "filters": filters,
            # Followed live only from the end: a page in the middle has its Next link.
            "live": "" if more else "/log/live?" + urlencode({"after": reached, **filters}),
        }
        return self.page(request, "log.html", context)

    async def live(self, request: Request) -> Response:
        """The log from a position on, as server-sent events, for ``live_seconds``."""
        params = request.query_params
        filters = _log_filters(params)
        after = _number(params.get("after"), "after")
        resumed = request.headers.get("last-event-id", "")
        if _NUMBER.fullmatch(resumed):
            after = max(after, int(resumed))
        template = self.templates.get_template("_log_row.html")
        wanted = catalog.LogFilter(**filters)

        async def stream() -> AsyncIterator[str]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.live_seconds
            position = after
            yield "retry: 1000\n\n"
            while (left := deadline - loop.time()) > 0:
                events, position, more = await catalog.log_page(
                    self.store, after=position, filters=wanted
                )
                for event in events:
                    row = " ".join(template.render(event=event).split())
                    yield f"id: {event.position}\nevent: row\ndata: {row}\n\n"
                if not more:
                    try:
                        async with asyncio.timeout(min(left, KEEP_ALIVE)):
                            await self.store.wait_for_events(position)
                    except TimeoutError:
                        yield ": still here\n\n"
            yield f"id: {position}\n\n"  # a reconnection goes on from here

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    # Subscriptions and read models

    async def subscriptions(self, request: Request) -> Response:
        self._needs_subscriptions()
        rows = await subscription_status(self.store)
        return self.page(request, "subscriptions.html", {"rows": rows})

    async def subscription(self, request: Request) -> Response:
        store = self._needs_subscriptions()
        name = request.path_params["name"]
        status = {row.name: row for row in await subscription_status(self.store)}.get(name)
        if status is None:
            raise HTTPException(404, f"there is no subscription {name!r} in this store")
        async with store.subscription_reads() as reads:
            leases = await reads.leases(name)
        after = _number(request.query_params.get("after"), "after")
        parked = [p for p in await parked_events(self.store, name) if p.position > after]
        context = {
            "status": status,
            "leases": leases,
            "parked": parked[: catalog.PAGE],
            "more_parked": len(parked) > catalog.PAGE,
            "retryable": name in registered_names(),
            "models": self._models_of(name),
            "message": request.query_params.get("done", ""),
        }
        return self.page(request, "subscription.html", context)

    async def retry(self, request: Request) -> Response:
        return await self._act(request, "retry")

    async def skip(self, request: Request) -> Response:
        return await self._act(request, "skip")

    async def models(self, request: Request) -> Response:
        store = self._needs_subscriptions()
        async with store.subscription_reads() as reads:
            names = await reads.document_models()
        owners = {
            model.name: sub for sub in registered_names() for model in registered(sub).read_models
        }
        rows = [(name, owners.get(name)) for name in names]
        return self.page(request, "models.html", {"rows": rows})

    async def documents(self, request: Request) -> Response:
        store = self._needs_subscriptions()
        model = request.path_params["model"]
        after = request.query_params.get("after", "")
        async with store.subscription_reads() as reads:
            found = await reads.documents(model)
        if not found and model not in await _models(store):
            raise HTTPException(404, f"there is no read model {model!r} in this store")
        rows = [d for d in found if d.key > after]
        context = {
            "model": model,
            "documents": rows[: catalog.PAGE],
            "next": rows[catalog.PAGE - 1].key if len(rows) > catalog.PAGE else None,
        }
        return self.page(request, "documents.html", context)

    # Admin

    async def login_page(self, request: Request) -> Response:
        return self.page(request, "login.html", {"error": None})

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        if not self.gate.enabled:
            raise HTTPException(
                403, "this browser is read-only: it was started without --admin-secret"
            )
        if not self.gate.accepts(str(form.get("secret", ""))):
            return self.page(request, "login.html", {"error": "that is not the admin secret"}, 403)
        response = RedirectResponse("/subscriptions", 303)
        response.set_cookie(COOKIE, self.gate.token(), httponly=True, samesite="strict", path="/")
        return response

    async def logout(self, request: Request) -> Response:
        await _form(request)
        response = RedirectResponse("/", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return self.page(request, "error.html", {"message": exc.detail}, exc.status_code)

    async def unavailable(self, request: Request, exc: Exception) -> Response:
        message = "the store cannot be reached right now; try again shortly"
        return self.page(request, "error.html", {"message": message}, 503)

    # Helpers

    def _signal(self, request: Request) -> tuple[str, str, Signal[Any, Any]]:
        kind, ident = request.path_params["type"], request.path_params["id"]
        signal = self.signals.get(kind)
        if signal is None:
            known = ", ".join(sorted(self.signals)) or "none"
            raise HTTPException(
                404,
                f"states of {kind} need its AggregateConfig: start the browser with "
                f"--app MODULE:ATTR naming it (decoded here: {known})",
            )
        return kind, ident, signal

    async def _latest_version(self, kind: str, ident: str) -> int:
        version = await catalog.aggregate_version(self.store, kind, ident)
        if version is None:
            raise HTTPException(404, f"there is no {kind} {ident!r} in this store")
        return version

    def _needs_subscriptions(self) -> SubscriptionStore:
        if not isinstance(self.store, SubscriptionStore):
            raise HTTPException(
                404, f"{type(self.store).__name__} keeps no subscription state to show"
            )
        return self.store

    def _models_of(self, name: str) -> list[str]:
        try:
            return [model.name for model in registered(name).read_models]
        except SubscriptionNotFound:
            return []

    async def _act(self, request: Request, action: str) -> Response:
        await _form(request)
        if not self.gate.admits(request.cookies.get(COOKIE)):
            raise HTTPException(403, "only an admin may do that: log in with the admin secret")
        store = self._needs_subscriptions()
        name = request.path_params["name"]
        try:
            event_id = uuid.UUID(request.path_params["event_id"])
        except ValueError:
            raise HTTPException(404, "that is not an event id") from None
        parked = await parked_events(self.store, name)
        entry = next((p for p in parked if p.event_id == event_id), None)
        if entry is None:
            raise HTTPException(404, f"{name} has no parked event {event_id}")
        subject = f"{name} event {event_id} at position {entry.position}"
        if action == "retry":
            try:
                subscription = registered(name)
            except SubscriptionNotFound:
                raise HTTPException(
                    409, f"retrying needs {name}'s handler: start the browser with --app"
                ) from None
            failed = await SubscriptionRunner(subscription, self.store).retry_parked([event_id])
            outcome = "failed again; still parked" if failed else "delivered"
        else:
            async with store.subscription_transaction() as state:
                await state.unpark(name, event_id)
            outcome = "skipped; no longer parked"
        client = request.client.host if request.client else "unknown"
        await record(
            self.store, AdminAction(action=action, subject=subject, outcome=outcome, client=client)
        )
        done = f"{action} of the event at position {entry.position}: {outcome}"
        return RedirectResponse(
            f"/subscriptions/{quote(name, safe='')}?" + urlencode({"done": done}), 303
        )


def _stream_url(kind: str, ident: str) -> str:
    return f"/streams/{quote(kind, safe='')}/{quote(ident, safe='')}"


def _log_filters(params: Mapping[str, str]) -> dict[str, str]:
    return {
        "event_name": params.get("event_name", "").strip(),
        "aggregate": params.get("aggregate", "").strip(),
        "correlation": params.get("correlation", "").strip(),
    }


async def _models(store: SubscriptionStore) -> list[str]:
    async with store.subscription_reads() as reads:
        return list(await reads.document_models())


async def _form(request: Request) -> FormData:
    length = request.headers.get("content-length", "")
    if _NUMBER.fullmatch(length) and int(length) > MAX_FORM:
        raise HTTPException(413, f"the form is larger than {MAX_FORM} bytes")
    return await request.form(max_files=0, max_fields=5, max_part_size=MAX_FORM)


def create_app(
    store: EventStore,
    *,
    url: str = "",
    configs: Sequence[AggregateConfig[Any, Any]] = (),
    admin_secret: str | None = None,
    trusted_origins: Sequence[str] = (),
    live_seconds: float = LIVE_SECONDS,
) -> Starlette:
    """The browser over ``store`` (opened when the app starts, closed when it stops).

    ``url`` is shown (without credentials) as the store's name; ``configs`` decode states;
    ``admin_secret`` allows actions; ``trusted_origins`` as for
    :class:`~eventsignal.web.security.SameOriginMiddleware`.
    """
    site = Browser(
        store, url=url, configs=configs, admin_secret=admin_secret, live_seconds=live_seconds
    )
    stream = "/streams/{type}/{id}"
    parked = "/subscriptions/{name}/parked/{event_id}"
    routes = [
        Route("/", site.home),
        Route("/aggregates", site.aggregates),
        Route(stream, site.stream),
        Route(f"{stream}/state", site.state),
        Route(f"{stream}/diff", site.diff),
        Route("/events/id/{event_id}", site.event_by_id),
        Route("/events/{position}", site.event),
        Route("/log", site.log),
        Route("/log/live", site.live),
        Route("/subscriptions", site.subscriptions),
        Route("/subscriptions/{name}", site.subscription),
        Route(f"{parked}/retry", site.retry, methods=["POST"]),
        Route(f"{parked}/skip", site.skip, methods=["POST"]),
        Route("/models", site.models),
        Route("/models/{model}", site.documents),
        Route("/admin", site.login_page),
        Route("/admin/login", site.login, methods=["POST"]),
        Route("/admin/logout", site.logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeadersMiddleware),
        Middleware(SameOriginMiddleware, trusted_origins=trusted_origins),
    ]
    handlers: dict[Any, Any] = {
        HTTPException: site.error,
        StoreUnavailable: site.unavailable,
        AggregateNotFound: _not_found(site),
    }
    return Starlette(
        routes=routes, middleware=middleware, lifespan=site.lifespan, exception_handlers=handlers
    )


def _not_found(site: Browser) -> Any:
    async def handler(request: Request, exc: Exception) -> Response:
        return await site.error(request, HTTPException(404, str(exc)))

    return handler
