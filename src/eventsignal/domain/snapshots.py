"""When to take snapshots of an aggregate's state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventsignal.domain.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """Take a snapshot every ``every`` events, or whenever ``when(state, version)`` says so.

    ``schema_version`` names the shape of the state class: change it when the state class
    changes incompatibly, and older snapshots are ignored (the aggregate is rebuilt from its
    events and snapshotted afresh) instead of being decoded into the wrong shape.
    """

    every: int | None = 100
    when: Callable[[Any, int], bool] | None = None
    schema_version: int = 1

    def __post_init__(self) -> None:
        if self.every is not None and self.every < 1:
            raise ConfigurationError("SnapshotPolicy.every must be at least 1")
        if self.every is None and self.when is None:
            raise ConfigurationError("SnapshotPolicy needs 'every' or 'when'")

    def due(self, state: Any, previous_version: int, version: int) -> bool:
        """Whether a command that took the aggregate from one version to another calls for one."""
        if self.when is not None:
            return self.when(state, version)
        assert self.every is not None
        return version // self.every > previous_version // self.every
