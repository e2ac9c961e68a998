"""One Signal, many tenants: a tenant's view of a :class:`~eventsignal.Signal`.

``signal.for_tenant("acme")`` answers with a Signal that runs the same aggregate type inside one
tenant: its commands, reads and rebuilds go through the store's view of that tenant
(:mod:`eventsignal.stores.tenancy`), while the pool, the store's connections, the subscribers and
the snapshots under way stay those of the one Signal the application started. Ten thousand
tenants therefore cost ten thousand small views at most (kept only while in use), never ten
thousand pools or connection pools.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from eventsignal.folding import lean_fold
from eventsignal.pool import TenantPool
from eventsignal.recording import Recorder
from eventsignal.stores.tenancy import tenant_store

if TYPE_CHECKING:
    from eventsignal.application import Signal


class TenantViews:
    """The views of one Signal that are in use, so concurrent callers of a tenant share one
    (and with it the rebuild of an aggregate they both miss)."""

    def __init__(self) -> None:
        self._views: weakref.WeakValueDictionary[str, Signal[Any, Any]] = (
            weakref.WeakValueDictionary()
        )

    def view(self, signal: Signal[Any, Any], tenant: str) -> Signal[Any, Any]:
        found = self._views.get(tenant)
        if found is None:
            found = _make_view(signal, tenant)
            self._views[tenant] = found
        return found


def _make_view(root: Signal[Any, Any], tenant: str) -> Signal[Any, Any]:
    store = tenant_store(root.store, tenant)  # checks the name, and that the store has tenants
    view: Signal[Any, Any] = object.__new__(type(root))
    view.__dict__.update(root.__dict__)
    view.tenant = tenant
    view.store = store
    view._keys = None  # idempotency keys and shared transactions stay with the default tenant
    view._shares = None
    view._append = view._traced_append = store.append
    view._create_in_store = view._traced_create = store.create
    instrumentation = root._instrumentation
    if instrumentation is not None:
        view._traced_append = instrumentation.wrap_append(store, store.append)
        view._traced_create = instrumentation.wrap_create(store, store.create)
    view._recorder = Recorder(root.config, root.serializer, store, tenant)
    view._lean = lean_fold(root.config, root.serializer, store, tenant)
    view._pool = TenantPool(root._pool, tenant)  # type: ignore[assignment]
    view._loading = {}
    if root._snapshotter is not None:
        view._snapshotter = root._snapshotter.scoped(store)
    view._watcher = None
    return view
