"""What OpenTelemetry costs a command, on MemoryStore (no I/O, so the cost shows plainly).

Three configurations, measured round robin in the same run::

    .venv/bin/python benchmarks/bench_otel.py [--seconds 3] [--repeats 5] [--clients 64]

- plain: a Signal without ``instrumentation=``;
- no provider: ``instrumentation=OpenTelemetry()`` with the API's global defaults, as in an
  application that installs the ``otel`` extra but configures no SDK (target: within 5%);
- SDK: tracer and meter providers of the OpenTelemetry SDK, exporting spans to memory; the
  cost per command is printed in microseconds.

The default telemetry hook is off in all three, so only the instrumentation differs. Ratios are
given per CPU second of this process (robust to other work on the machine) and wall-clock.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from typing import Any

from common import (
    Measurement,
    measure_signal,
    paired_ratio,
    parse_args,
    print_header,
    print_table,
    run_interleaved,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from workload import CART

from eventsignal import Signal
from eventsignal.otel import OpenTelemetry
from eventsignal.stores import MemoryStore


def _sdk() -> OpenTelemetry:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return OpenTelemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)


def ours(clients: int, cache: int, mode: str) -> Measurement:
    def make(_: object) -> Signal[Any, Any]:
        otel = {"plain": None, "no provider": OpenTelemetry(), "sdk": _sdk()}[mode]
        return Signal(
            CART, store=MemoryStore(), pool_size=cache, telemetry=None, instrumentation=otel
        )

    return measure_signal(make, clients)


def main(argv: Sequence[str] | None = None) -> None:
    args: argparse.Namespace = parse_args(__doc__ or "", argv)
    print_header("eventsignal MemoryStore with and without OpenTelemetry", args)
    for clients in [1, args.clients] if args.clients > 1 else [1]:
        configurations = [
            (f"c={clients} plain", ours(clients, args.cache, "plain")),
            (f"c={clients} otel, no provider", ours(clients, args.cache, "no provider")),
            (f"c={clients} otel, SDK in memory", ours(clients, args.cache, "sdk")),
        ]
        plain, idle, sdk = table = run_interleaved(configurations, args)
        print_table(table)
        for label, series in (("no provider", idle), ("SDK", sdk)):
            wall = paired_ratio(series, [plain])
            cpu = paired_ratio(series, [plain], lambda s: s.commands_per_cpu_second)
            target = "  (target >= 0.95x)" if series is idle else ""
            print(
                f"ratio otel {label} / plain c={clients}: {cpu:.3f}x per CPU second{target}, "
                f"{wall:.3f}x wall-clock"
            )
        cost = statistics.median(
            1 / s.commands_per_second - 1 / p.commands_per_second
            for s, p in zip(sdk.samples, plain.samples, strict=True)
        )
        print(f"SDK cost per command at c={clients}: {cost * 1e6:.1f} us")


if __name__ == "__main__":
    main()
