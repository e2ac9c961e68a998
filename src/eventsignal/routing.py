"""Sticky routing: send every command for one aggregate to the same node.

Any node may run any command (the store's optimistic concurrency keeps them consistent), but a node
that owns an aggregate keeps it live in its pool and never conflicts on it. :class:`Router` picks
the owner by rendezvous (highest random weight) hashing over BLAKE2b:

* it is stable across processes, machines and Python runs (unlike :func:`hash`, which is salted
  per process), so every front end routes alike with no coordination;
* when a node joins, only the aggregates it now wins move to it (about ``1/N`` of them), and when
  a node leaves, only its own aggregates move; everything else stays where it is warm.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b

from eventsignal.domain.errors import ConfigurationError


def _weight(node: bytes, key: bytes) -> int:
    return int.from_bytes(blake2b(key, digest_size=8, key=node).digest(), "big")


class Router:
    """Maps aggregate ids to one of ``nodes`` (any strings: host names, URLs, worker numbers).

    ``node_for`` costs one 8-byte BLAKE2b per node, so it suits the tens of nodes a deployment
    has; the order in which nodes are given does not matter.
    """

    __slots__ = ("_keys", "nodes")

    def __init__(self, nodes: Iterable[str]) -> None:
        self.nodes: tuple[str, ...] = tuple(nodes)
        if not self.nodes:
            raise ConfigurationError("a router needs at least one node")
        if len(set(self.nodes)) != len(self.nodes):
            raise ConfigurationError(f"nodes must be distinct: {self.nodes!r}")
        encoded = [node.encode() for node in self.nodes]
        if any(len(key) > 64 for key in encoded):
            # BLAKE2b keys hold 64 bytes; longer names are hashed down to a key first.
            encoded = [blake2b(key, digest_size=32).digest() for key in encoded]
        self._keys = tuple(zip(encoded, self.nodes, strict=True))

    def node_for(self, aggregate_id: str, aggregate_name: str = "") -> str:
        """The node that owns this aggregate.

        Give ``aggregate_name`` when several aggregate types share ids, so they spread separately.
        """
        key = f"{aggregate_name}\x00{aggregate_id}".encode()
        return max(self._keys, key=lambda pair: (_weight(pair[0], key), pair[1]))[1]

    def __repr__(self) -> str:
        return f"Router({list(self.nodes)!r})"


__all__ = ["Router"]
