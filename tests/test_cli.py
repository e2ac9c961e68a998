"""The ``eventsignal`` command line and store URLs, run for real against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from eventsignal import Event, Signal
from eventsignal.cart import AddToCart, CompletePurchase, Product, cart_config
from eventsignal.cart.revenue import RevenueTotals, read_revenue
from eventsignal.cli import main
from eventsignal.stores import EventStore, MemoryStore, PostgresStore, SQLiteStore
from eventsignal.stores.urls import InvalidStoreURL, open_store, redact, sqlite_path
from eventsignal.subscriptions import Subscription, register

BIN = Path(sys.executable).parent


@asynccontextmanager
async def store_opened(store: EventStore) -> AsyncIterator[EventStore]:
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def fill(url: str, prefix: str = "") -> None:
    """Two carts: c1 with two events (paid), c2 empty."""

    async def job() -> None:
        async with Signal(cart_config, store=open_store(url), telemetry=None) as signal:
            c1 = await signal.create(f"{prefix}c1")
            await c1.handle_command(AddToCart(Product("<apple>", 2, 120)))
            await c1.handle_command(CompletePurchase())
            await signal.create(f"{prefix}c2")

    asyncio.run(job())


# Store URLs


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("data/cart.db", "data/cart.db"),
        ("sqlite:///data/cart.db", "data/cart.db"),
        ("sqlite:////tmp/x/cart.db", "/tmp/x/cart.db"),
        ("  /var/lib/cart.db ", "/var/lib/cart.db"),
        ("memory:", None),
        ("postgresql://u@h/db", None),
        ("host=127.0.0.1 dbname=x", None),
    ],
)
def test_sqlite_paths_are_read_from_urls(url: str, path: str | None) -> None:
    assert sqlite_path(url) == path


def test_urls_choose_the_store(tmp_path: Path) -> None:
    assert isinstance(open_store("memory:"), MemoryStore)
    target = tmp_path / "new" / "folder" / "cart.db"
    store = open_store(f"sqlite:///{target}")
    assert isinstance(store, SQLiteStore)
    assert target.parent.is_dir()  # ready for the first start
    assert isinstance(open_store(str(tmp_path / "plain.db")), SQLiteStore)
    assert isinstance(open_store("postgresql://u@127.0.0.1/db"), PostgresStore)
    assert isinstance(open_store("postgres://u@127.0.0.1/db"), PostgresStore)
    assert isinstance(open_store("host=127.0.0.1 dbname=db"), PostgresStore)
    assert type(open_store("nats://127.0.0.1:4222")).__name__ == "NatsStore"
    nats = open_store("nats://127.0.0.1:4222?stream=shop&replicas=3")
    assert (getattr(nats, "stream", None), getattr(nats, "replicas", None)) == ("shop", 3)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("mysql://u@h/db", "unknown scheme 'mysql'"),
        ("memory:somewhere", "a memory store takes no location"),
        ("sqlite://cart.db", "write sqlite:///relative/path"),
        ("sqlite:///", "names no file"),
        ("nats://", "a NATS URL needs a host"),
        ("nats://h:4222?replicas=x", "replicas must be a positive whole number"),
        ("nats://h:4222?color=red", "unknown NATS option 'color'"),
        ("nats://h:4222?stream=a.b", "stream name 'a.b'"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, reason: str) -> None:
    with pytest.raises(InvalidStoreURL, match=reason):
        open_store(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://me:s3cret@h/db", "postgresql://me:***@h/db"),
        ("postgresql://me@h/db", "postgresql://me@h/db"),  # a user name is no secret
        ("postgresql://me:s3c?ret@h/db", "postgresql://me:***@h/db"),
        (
            "postgresql://h/db?password=s3cret&sslmode=require",
            "postgresql://h/db?password=***&sslmode=require",
        ),
        (
            "postgresql://h/db?sslmode=require&sslpassword=s3cret",
            "postgresql://h/db?sslmode=require&sslpassword=***",
        ),
        ("host=h password=s3cret dbname=db", "host=h password=*** dbname=db"),
        ("host=h password = 's3 c\\'ret' dbname=db", "host=h password = *** dbname=db"),
        ("PASSWORD=s3cret host=h", "PASSWORD=*** host=h"),
        ("nats://s3cret@h:4222", "nats://***@h:4222"),
        ("nats://me:s3cret@h:4222?stream=s", "nats://me:***@h:4222?stream=s"),
        ("tls://s3cret@h:4222", "tls://***@h:4222"),
        ("nats://h:4222?token=s3cret", "nats://h:4222?token=***"),
        ("nats://h:4222?nkey=SUs3cret&stream=s", "nats://h:4222?nkey=***&stream=s"),
        (
            "nats://a:s3cret@h1:4222,nats://b:s3cret@h2:4222",
            "nats://a:***@h1:4222,nats://b:***@h2:4222",
        ),
        ("nats://s3cret@h1:4222,s3cret@h2:4222", "nats://***@h1:4222,***@h2:4222"),
        ("nats://me:s3c,ret@h:4222", "nats://***,***@h:4222"),
        ("memory:", "memory:"),
        ("data/cart.db", "data/cart.db"),
    ],
)
def test_credentials_are_redacted_in_every_form(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "mysql://me:s3cret@h/db",
        "nats://s3cret@127.0.0.1:1",
        "nats://me:s3cret@127.0.0.1:1?stream=s",
        "nats://me:s3cret@127.0.0.1:1,nats://me:s3cret@127.0.0.1:2",
        "host=127.0.0.1 port=1 user=me password=s3cret connect_timeout=1",
        "postgresql://me@127.0.0.1:1/db?password=s3cret&connect_timeout=1",
    ],
)
def test_command_errors_never_show_credentials(url: str) -> None:
    code, out, err = cli("aggregates", url)
    assert code == 1
    assert err.startswith("Error: ")
    assert "s3cret" not in out + err


# SQLite


def test_help_reads_well() -> None:
    code, out, _ = cli("--help")
    assert code == 0
    for command in ("migrate", "aggregates", "history", "cart"):
        assert re.search(rf"^  {command}\s+\S", out, re.MULTILINE)
    assert "STORE is a SQLite path" in out
    code, out, _ = cli("history", "--help")
    assert code == 0
    assert "Usage: main history [OPTIONS] STORE TYPE ID" in out
    assert "--json" in out


def test_migrate_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cart.db"
    for _ in range(2):
        code, out, err = cli("migrate", str(path))
        assert (code, err) == (0, "")
        assert out == f"{path} is migrated: its schema is up to date\n"
    code, out, _ = cli("aggregates", f"sqlite:///{path}")
    assert (code, out) == (0, f"no aggregates in sqlite:///{path}\n")


def test_migrate_of_a_memory_store_says_there_is_nothing_to_do() -> None:
    code, out, _ = cli("migrate", "memory:")
    assert code == 0
    assert "needs no migration" in out


def test_aggregates_are_listed_with_their_versions(tmp_path: Path) -> None:
    url = str(tmp_path / "cart.db")
    fill(url)
    code, out, _ = cli("aggregates", url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["TYPE", "ID", "VERSION", "CREATED", "(UTC)"]
    assert [line.split()[:3] for line in lines[1:]] == [["cart", "c1", "2"], ["cart", "c2", "0"]]
    code, out, _ = cli("aggregates", url, "--type", "cart")
    assert len(out.splitlines()) == 3
    code, out, _ = cli("aggregates", url, "--type", "order")
    assert (code, out) == (0, f"no aggregates of type 'order' in {url} (its types: cart)\n")


def test_history_as_a_table(tmp_path: Path) -> None:
    url = str(tmp_path / "cart.db")
    fill(url)
    code, out, _ = cli("history", url, "cart", "c1")
    assert code == 0
    header, first, second = out.splitlines()
    assert header.split() == ["VERSION", "POSITION", "TIME", "(UTC)", "EVENT", "DATA"]
    assert first.split()[0] == "1"
    assert first.endswith('ProductAdded  {"product":{"sku":"<apple>","quantity":2,"price":120}}')
    assert second.endswith('CartPaid      {"total":240}')
    code, out, _ = cli("history", url, "cart", "c2")
    assert (code, out) == (0, "cart 'c2' has no events yet\n")


def test_history_as_json_lines(tmp_path: Path) -> None:
    url = str(tmp_path / "cart.db")
    fill(url)
    code, out, _ = cli("history", url, "cart", "c1", "--json")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["version"], r["name"]) for r in records] == [(1, "ProductAdded"), (2, "CartPaid")]
    assert records[0]["data"] == {"product": {"sku": "<apple>", "quantity": 2, "price": 120}}
    assert records[1]["data"] == {"total": 240}
    assert records[1]["aggregate_id"] == "c1"
    assert records[0]["position"] < records[1]["position"]
    assert records[0]["timestamp"].endswith("+00:00")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["history", "{db}", "cart", "nobody"], "Error: cart 'nobody' not found\n"),
        (["history", "{dir}/missing.db", "cart", "c1"], "Error: no SQLite database at "),
        (["aggregates", "{dir}/missing.db"], "Error: no SQLite database at "),
        (["ui", "{dir}/missing.db"], "Error: no SQLite database at "),
        (["aggregates", "{notes}"], "Error: {notes} is not a SQLite database (SQLite says: "),
        (["history", "{db}", "kart", "c1"], "has no aggregate type 'kart' (its types: cart)\n"),
        (["ui", "{db}", "--app", "nowhere_at_all:x"], "Error: cannot import nowhere_at_all"),
        (["ui", "{db}", "--app", "eventsignal.cart"], "Error: --app takes MODULE:ATTR"),
        (["ui", "{db}", "--app", "eventsignal.cart:Cart"], "expected an AggregateConfig"),
        (["aggregates", "ftp://x/y"], "Error: invalid store URL 'ftp://x/y': unknown scheme"),
        (["aggregates", "{empty}"], "holds no eventsignal schema"),
        (["aggregates", "postgresql://127.0.0.1:9/x"], "Error: cannot connect to PostgreSQL"),
    ],
)
def test_errors_are_one_line_without_a_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    db = tmp_path / "cart.db"
    fill(str(db))
    empty = tmp_path / "empty.db"
    empty.touch()
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nNot a database at all, but long enough to look like one.\n" * 20)
    values = {"db": str(db), "dir": str(tmp_path), "empty": str(empty), "notes": str(notes)}
    code, out, err = cli(*(arg.format(**values) for arg in args))
    assert code == 1
    assert out == ""
    assert message.format(**values) in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not (tmp_path / "missing.db").exists()  # reading never creates a database


def test_an_unknown_aggregate_type_lists_the_known_ones(tmp_path: Path) -> None:
    db = tmp_path / "cart.db"
    fill(str(db))
    code, out, _ = cli("aggregates", str(db), "--type", "kart")
    assert code == 0
    assert out == f"no aggregates of type 'kart' in {db} (its types: cart)\n"


async def test_a_dead_nats_address_says_so_within_its_timeout() -> None:
    import socket

    from eventsignal import StoreUnavailable
    from eventsignal.stores.nats import NatsStore

    with socket.socket() as unused:  # a port nobody listens on: bound, never listening
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        store = NatsStore(f"nats://127.0.0.1:{port}", timeout=0.5)
        with pytest.raises(StoreUnavailable) as caught:
            await store.open()
    message = str(caught.value)
    assert message.startswith(f"cannot reach NATS at nats://127.0.0.1:{port}: ")
    assert "no server answered within 0.5 seconds: ConnectionRefusedError" in message


def test_the_console_script_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "eventsignal"), "aggregates", str(tmp_path / "nope.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == f"Error: no SQLite database at {tmp_path / 'nope.db'}\n"


# Subscriptions


def _failing(event: Event[Any]) -> None:
    raise RuntimeError(f"cannot handle {event.name}")


failing_subscription = register(
    Subscription(
        name="test-cli-failing",
        handler=_failing,
        configs=[cart_config],
        max_attempts=1,
        retry_delay=0,
        poll_interval=0.05,
    )
)


def test_rebuild_replays_the_cart_revenue(tmp_path: Path) -> None:
    url = str(tmp_path / "cart.db")
    fill(url)
    code, out, _ = cli("subscriptions", url)
    assert (code, out) == (0, f"no subscriptions in {url}\n")
    code, out, err = cli("rebuild", url, "cart-revenue")
    assert (code, err) == (0, "")
    assert "Rebuilt cart-revenue: 2 events in " in out

    async def revenue() -> RevenueTotals:
        store = open_store(url)
        async with store_opened(store):
            totals, fresh = await read_revenue(store, within=1)
            assert fresh
            return totals

    assert asyncio.run(revenue()) == RevenueTotals(total=240, paid_carts=1)
    fill(url, prefix="more-")  # two more events nobody has counted yet
    code, out, _ = cli("subscriptions", url)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["NAME", "POSITION", "HEAD", "LAG", "PARTITIONS", "LEASED", "PARKED"]
    assert row.split() == ["cart-revenue", "2", "4", "2", "1", "0", "0"]


def test_parked_events_are_listed(tmp_path: Path) -> None:
    url = str(tmp_path / "cart.db")
    fill(url)
    code, out, err = cli("rebuild", url, "test-cli-failing", "--import", __name__)
    assert (code, err) == (0, "")
    code, out, _ = cli("subscriptions", url)
    assert out.splitlines()[1].split() == ["test-cli-failing", "2", "2", "0", "1", "0", "2"]
    code, out, _ = cli("subscriptions", url, "--parked")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:7] == [
        "SUBSCRIPTION",
        "POSITION",
        "TYPE",
        "ID",
        "VERSION",
        "EVENT",
        "ATTEMPTS",
    ]
    assert lines[1].split() == [
        "test-cli-failing",
        "1",
        "cart",
        "c1",
        "1",
        "ProductAdded",
        "1",
        "RuntimeError:",
        "cannot",
        "handle",
        "ProductAdded",
    ]
    assert len(lines) == 3


def test_rebuild_of_an_unknown_projection_names_the_known_ones(tmp_path: Path) -> None:
    url = str(tmp_path / "cart.db")
    fill(url)
    code, _, err = cli("rebuild", url, "nope")
    assert code == 1
    assert err.startswith("Error: no subscription is registered as 'nope' (registered: ")
    assert "cart-revenue" in err
    code, _, err = cli("rebuild", url, "nope", "--import", "no_such_module")
    assert (code, err) == (
        1,
        "Error: cannot import no_such_module: No module named 'no_such_module'\n",
    )
    code, _, err = cli("subscriptions", str(tmp_path / "missing.db"))
    assert (code, err) == (1, f"Error: no SQLite database at {tmp_path / 'missing.db'}\n")


# Serving the cart


@contextmanager
def served(
    command: list[str], cwd: Path, env: dict[str, str], printed: list[str] | None = None
) -> Iterator[str]:
    """Start the cart in a process of its own; yield the address it prints; stop it.

    The lines printed up to the address are added to ``printed``.
    """
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        address = None
        while address is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            if printed is not None:
                printed.append(line)
            match = re.search(r"Open (http://127\.0\.0\.1:\d+/)", line)
            address = match.group(1) if match else None
        assert address is not None, process.stderr.read() if process.stderr else ""
        yield address
    finally:
        process.terminate()
        process.wait(timeout=20)


def _serve(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Start the cart, open the home page and a new cart, stop it."""
    with served(command, cwd, env) as address:
        home = httpx.get(address, timeout=10)
        assert home.status_code == 200
        assert "Open a new cart" in home.text
        created = httpx.post(address + "carts", timeout=10)
        assert created.status_code == 303


def _revenue(address: str) -> str:
    page = httpx.get(address + "revenue", timeout=10).text
    found = re.search(r'<span id="revenue">([^<]*)</span>', page)
    assert found is not None
    return found.group(1)


def test_revenue_is_shared_by_processes_on_one_store(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'cart.db'}"}
    command = [sys.executable, "-m", "eventsignal.cart", "--port", "0"]
    with served(command, tmp_path, env) as one, served(command, tmp_path, env) as two:
        for address, price in ((one, "10.00"), (two, "2.34")):
            cart = address + httpx.post(address + "carts", timeout=10).headers["location"][1:]
            form = {"sku": "apple", "quantity": "1", "price": price}
            assert httpx.post(cart + "/add", data=form, timeout=10).status_code == 303
            assert httpx.post(cart + "/pay", timeout=10).status_code == 303
        assert _revenue(one) == _revenue(two) == "12.34"
    with served(command, tmp_path, env) as again:
        assert _revenue(again) == "12.34"


def test_eventsignal_cart_serves_on_the_default_sqlite_file(tmp_path: Path) -> None:
    env = {"DATABASE_URL": ""}
    _serve([str(BIN / "eventsignal"), "cart", "--port", "0"], tmp_path, env)
    assert (tmp_path / "data" / "cart.db").is_file()  # created and migrated on first start
    code, out, _ = cli("aggregates", str(tmp_path / "data" / "cart.db"))
    assert code == 0
    kind, _, version, *_ = out.splitlines()[1].split()
    assert (kind, version) == ("cart", "0")


def test_python_m_eventsignal_cart_takes_database_url(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.db"
    env = {"DATABASE_URL": f"sqlite:///{target}"}
    _serve([sys.executable, "-m", "eventsignal.cart", "--port", "0"], tmp_path, env)
    assert target.is_file()
    assert not (tmp_path / "data").exists()


def test_cart_on_a_busy_port_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        url = str(tmp_path / "cart.db")
        code, _, err = cli("cart", "--port", port, "--database-url", url)
        assert code == 1
        assert err == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
        done = subprocess.run(
            [sys.executable, "-m", "eventsignal.cart", "--port", port, "--database-url", url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1
        assert done.stderr == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_cart_on_nats_explains_why_not() -> None:
    code, _, err = cli("cart", "--port", "0", "--database-url", "nats://127.0.0.1:4222")
    assert code == 1
    # The machine's server (2.9) has no atomic batches, so no exactly-once subscription state.
    assert "needs a server with atomic batch publish (2.12 or later)" in err
    assert len(err.strip().splitlines()) == 1


def test_cart_with_a_bad_database_url_fails_in_one_line() -> None:
    code, _, err = cli("cart", "--port", "0", "--database-url", "oracle://x")
    assert code == 1
    assert err.startswith("Error: invalid store URL 'oracle://x': unknown scheme 'oracle'")
    assert len(err.strip().splitlines()) == 1


# PostgreSQL


def _postgres_url(dsn: str) -> str:
    """The fixture's keyword DSN as a postgresql:// URL, search_path included."""
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    options = quote(str(params.get("options", "")), safe="")
    return (
        f"postgresql://{params['user']}@{params['host']}:{params['port']}/{params['dbname']}"
        f"?options={options}"
    )


def test_postgresql_migrate_aggregates_and_history(postgres_dsn: str) -> None:
    url = _postgres_url(postgres_dsn)
    code, out, err = cli("migrate", url)
    assert (code, err) == (0, "")
    assert "is migrated" in out
    fill(url)
    code, out, _ = cli("aggregates", url)
    assert code == 0
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [
        ["cart", "c1", "2"],
        ["cart", "c2", "0"],
    ]
    code, out, _ = cli("history", url, "cart", "c1", "--json")
    assert [json.loads(line)["data"] for line in out.splitlines()][1] == {"total": 240}
    code, out, _ = cli("history", postgres_dsn, "cart", "c1")  # the keyword form works too
    assert code == 0
    assert 'CartPaid      {"total":240}' in out
    code, _, err = cli("history", url, "cart", "nobody")
    assert (code, err) == (1, "Error: cart 'nobody' not found\n")


def test_postgresql_without_a_schema_is_a_clear_error(postgres_dsn: str) -> None:
    code, _, err = cli("aggregates", postgres_dsn)
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert "eventsignal migrate" in err


@pytest.mark.parametrize("form", ["keyword", "url"])
def test_the_cart_banner_hides_the_password(postgres_dsn: str, tmp_path: Path, form: str) -> None:
    # The server trusts loopback connections, so the password is accepted and ignored.
    if form == "keyword":
        url = f"{postgres_dsn} password=s3cret"
    else:
        url = f"{_postgres_url(postgres_dsn)}&password=s3cret"
    printed: list[str] = []
    command = [sys.executable, "-m", "eventsignal.cart", "--port", "0"]
    with served(command, tmp_path, {"DATABASE_URL": url}, printed):
        pass
    banner = "".join(printed)
    assert "Cart app on " in banner
    assert "password=***" in banner
    assert "s3cret" not in banner


def test_migrate_creates_a_missing_postgres_database_on_request(postgres_dsn: str) -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"eventsignal_create_{uuid.uuid4().hex[:12]}"
    server = {k: v for k, v in conninfo_to_dict(postgres_dsn).items() if k != "options"}
    url = make_conninfo("", **{**server, "dbname": name})
    try:
        code, _, err = cli("migrate", url)
        assert code == 1
        assert f'database "{name}" does not exist' in err
        assert "'eventsignal migrate --create STORE' creates it" in err
        code, out, err = cli("migrate", "--create", url)
        assert (code, err) == (0, ""), err
        assert out.startswith("created the database; ")
        code, out, _ = cli("migrate", "--create", url)  # there already: only migrated
        assert code == 0
        assert out.endswith("is migrated: its schema is up to date\n")
        assert not out.startswith("created")
        assert cli("aggregates", url)[0] == 0
    finally:
        admin = make_conninfo(postgres_dsn, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_python_m_cart_is_the_cart_command() -> None:
    def help_text(*module: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", *module, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={**os.environ, "COLUMNS": "100"},
        ).stdout

    via_module = help_text("eventsignal.cart")
    via_command = help_text("eventsignal.cli", "cart")
    assert via_module.startswith("Usage: python -m eventsignal.cart [OPTIONS]\n")
    assert via_command.startswith("Usage: python -m eventsignal.cli cart [OPTIONS]\n")
    assert via_module.split("\n", 1)[1] == via_command.split("\n", 1)[1]
    assert "--request-timeout" in via_module
