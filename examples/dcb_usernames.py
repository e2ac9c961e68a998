"""Unique usernames with dynamic consistency boundaries: no aggregate per name, no lock.

Registering or renaming reads the events tagged with the wanted name, and is stored only if
none was stored meanwhile, so two users racing for one name never both get it. Run it with
``python examples/dcb_usernames.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventsignal import CommandRejected
from eventsignal.dcb import (
    DcbStore,
    Decision,
    DecisionEngine,
    Projection,
    Query,
    QueryItem,
    Tagged,
    view,
)
from eventsignal.stores import MemoryStore


@dataclass(frozen=True)
class UserRegistered:
    user: str
    username: str


@dataclass(frozen=True)
class UsernameChanged:
    user: str
    old: str
    new: str


@dataclass(frozen=True)
class Register:
    user: str
    username: str


@dataclass(frozen=True)
class ChangeUsername:
    user: str
    new: str


def name_tag(username: str) -> str:
    return f"username:{username}"


def user_tag(user: str) -> str:
    return f"user:{user}"


def holders(owners: dict[str, str], event: object) -> dict[str, str]:
    """Who holds each username the query selected (only the wanted one, here)."""
    owners = dict(owners)
    if isinstance(event, UserRegistered):
        owners[event.username] = event.user
    elif isinstance(event, UsernameChanged):
        owners.pop(event.old, None)
        owners[event.new] = event.user
    return owners


def latest_name(name: str | None, event: object) -> str | None:
    if isinstance(event, UserRegistered):
        return event.username
    if isinstance(event, UsernameChanged):
        return event.new
    return name


def wanted_name(command: Register | ChangeUsername) -> Query:
    wanted = command.username if isinstance(command, Register) else command.new
    return Query([QueryItem(tags=[name_tag(wanted)])])


def this_user(command: Register | ChangeUsername) -> Query:
    return Query([QueryItem(tags=[user_tag(command.user)])])


def register(command: Register, states: Mapping[str, Any]) -> list[Tagged]:
    if states["user"] is not None:
        raise CommandRejected(f"user {command.user!r} is registered already")
    if command.username in states["names"]:
        raise CommandRejected(f"username {command.username!r} is taken")
    event = UserRegistered(command.user, command.username)
    return [Tagged(event, [name_tag(command.username), user_tag(command.user)])]


def change(command: ChangeUsername, states: Mapping[str, Any]) -> list[Tagged]:
    old = states["user"]
    if old is None:
        raise CommandRejected(f"no user {command.user!r}")
    if old == command.new:
        return []  # the name it has already: nothing to store
    if command.new in states["names"]:
        raise CommandRejected(f"username {command.new!r} is taken")
    event = UsernameChanged(command.user, old, command.new)
    return [Tagged(event, [name_tag(old), name_tag(command.new), user_tag(command.user)])]


PROJECTIONS: dict[str, Projection[Any, Any]] = {
    "names": Projection({}, holders, wanted_name),
    "user": Projection(None, latest_name, this_user),
}
DECISIONS: list[Decision[Any]] = [
    Decision(Register, PROJECTIONS, register),
    Decision(ChangeUsername, PROJECTIONS, change),
]
EVENTS = [UserRegistered, UsernameChanged]


def engine(dcb: DcbStore, max_attempts: int = 10) -> DecisionEngine:
    """The username decisions on one store's DCB view."""
    return DecisionEngine(dcb, DECISIONS, EVENTS, max_attempts=max_attempts)


async def main() -> None:
    async with MemoryStore() as store:
        users = engine(view(store))
        await users.handle(Register("u1", "ada"))
        try:
            await users.handle(Register("u2", "ada"))
        except CommandRejected as rejected:
            print(rejected)
        await users.handle(ChangeUsername("u1", "countess"))
        await users.handle(Register("u2", "ada"))
        print("u2 is ada now")


if __name__ == "__main__":
    asyncio.run(main())
