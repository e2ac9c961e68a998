"""A small bank-account domain used by the engine tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from eventsignal import AggregateConfig, CommandRejected, Event


@dataclass(frozen=True)
class Account:
    balance: int = 0
    history: tuple[int, ...] = ()
    closed: bool = False


@dataclass(frozen=True)
class Deposit:
    amount: int


@dataclass(frozen=True)
class Withdraw:
    amount: int


@dataclass(frozen=True)
class DepositTwice:
    """Produces two events from one command, to exercise multi-event appends."""

    amount: int


@dataclass(frozen=True)
class DepositMany:
    """Produces ``times`` events of ``amount`` each: long histories in few commands."""

    amount: int
    times: int


@dataclass(frozen=True)
class SlowDeposit:
    amount: int
    gate: asyncio.Event


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class Deposited:
    amount: int


@dataclass(frozen=True)
class Withdrawn:
    amount: int


@dataclass(frozen=True)
class Closed:
    pass


Command = Deposit | Withdraw | DepositTwice | DepositMany | SlowDeposit | Close


async def handle(command: Any, account: Account) -> list[Any]:
    if account.closed:
        raise CommandRejected("the account is closed")
    match command:
        case Deposit(amount) | DepositTwice(amount) | SlowDeposit(amount) if amount <= 0:
            raise CommandRejected(f"cannot deposit {amount}")
        case Deposit(amount):
            return [Deposited(amount)]
        case DepositTwice(amount):
            return [Deposited(amount), Deposited(amount)]
        case DepositMany(amount, times):
            return [Deposited(amount)] * times
        case SlowDeposit(amount, gate):
            await gate.wait()
            return [Deposited(amount)]
        case Withdraw(amount) if amount > account.balance:
            raise CommandRejected(f"balance {account.balance} is less than {amount}")
        case Withdraw(amount):
            return [Withdrawn(amount)]
        case Close():
            return [Closed()]
    raise TypeError(f"unknown command {command!r}")


def apply(account: Account, event: Event[Any]) -> Account:
    match event.data:
        case Deposited(amount) if event.version > 1000:  # keep long histories cheap to apply
            return replace(account, balance=account.balance + amount)
        case Deposited(amount):
            return replace(
                account, balance=account.balance + amount, history=(*account.history, amount)
            )
        case Withdrawn(amount):
            return replace(
                account, balance=account.balance - amount, history=(*account.history, -amount)
            )
        case Closed():
            return replace(account, closed=True)
    raise TypeError(f"unknown event {event.name}")


def config(name: str = "account", **overrides: Any) -> AggregateConfig[Account, Any]:
    """The account aggregate; ``overrides`` replace any of its fields (handlers, events...)."""
    fields: dict[str, Any] = {
        "name": name,
        "initial_state": Account(),
        "command_handler": handle,
        "event_handler": apply,
        "events": [Deposited, Withdrawn, Closed],
    }
    return AggregateConfig(**(fields | overrides))
