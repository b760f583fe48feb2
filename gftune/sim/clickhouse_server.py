"""The ClickHouse server the sinks insert into, and its built-in Prometheus endpoint (an option).

ClickHouse serves its own metrics in the Prometheus text format when the server config has a
``<prometheus>`` section (by convention ``<port>9363</port>``, ``<endpoint>/metrics</endpoint>``;
https://clickhouse.com/docs/concepts/features/interfaces/prometheus-metrics). Its writer
(``ClickHouse/ClickHouse:src/Server/PrometheusMetricsWriter.cpp``) prints every ProfileEvent as
``ClickHouseProfileEvents_<Event>`` with ``# TYPE … counter`` and **no** ``_total`` suffix, the
server-wide cumulative count since start, without labels; the scraper adds ``job``/``instance``.

The events this server emits are the INSERT ones of ``src/Common/ProfileEvents.cpp``, with their
upstream help texts: ``Query`` and ``InsertQuery`` (+1 per INSERT), ``FailedQuery`` and
``FailedInsertQuery``, ``InsertedRows`` and ``InsertedBytes`` (rows written, only of INSERTs that
succeeded), ``QueryTimeMicroseconds`` and ``InsertQueryTimeMicroseconds`` (the INSERT's elapsed time
on the server, added when it finishes). A real server emits hundreds more events and its own
SELECTs, merges and other writers' INSERTs blend into the same counters; here the simulator's sinks
are its only clients.

Server-side time of one INSERT: the sink model's ``insert_overhead + insert_per_row x rows``
(:class:`gftune.sim.sink.SinkConfig.send`), the INSERT from the query's start to its end. The
model has no network latency apart from it, so the client's send and the server's query time are
the same seconds. On a real server the INSERT query starts with the client's ``PrepareBatch``, so its
elapsed time can also hold the client's ``Append`` before ``Send`` (part of GlassFlow's
``total_preparation``): a busy time built from both then counts those seconds twice, an over-estimate
(safe for a scale-down).

Time scale: as on the collector's endpoint, the counters are divided by ``time_scale`` so that
``rate()`` over wall seconds is per simulated second.
"""

from __future__ import annotations

import threading

PREFIX = "ClickHouseProfileEvents_"
HELP = {
    "Query": "Number of queries to be interpreted and potentially executed. Does not include queries that failed to "
             "parse or were rejected due to AST size limits, quota limits or limits on the number of simultaneously "
             "running queries. May include internal queries initiated by ClickHouse itself. Does not count "
             "subqueries.",
    "InsertQuery": "Same as Query, but only for INSERT queries.",
    "FailedQuery": "Number of failed queries.",
    "FailedInsertQuery": "Same as FailedQuery, but only for INSERT queries.",
    "QueryTimeMicroseconds": "Total time of all queries.",
    "InsertQueryTimeMicroseconds": "Total time of INSERT queries.",
    "InsertedRows": "Number of rows INSERTed to all tables.",
    "InsertedBytes": "Number of bytes (uncompressed; for columns as they stored in memory) INSERTed to all tables.",
}


class ClickHouseServer:
    """Server-wide ProfileEvents counters, cumulative since the simulator started (never reset:
    pipelines and sink pods come and go, the server stays)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events = dict.fromkeys(HELP, 0.0)

    def inserts(self, queries: float, failed: float, rows: float, row_bytes: float, seconds: float) -> None:
        """``queries`` INSERTs (``failed`` of them failed) that wrote ``rows`` rows of ``row_bytes``
        each and took ``seconds`` on the server in all."""
        micros = seconds * 1e6
        with self.lock:
            for name, value in (("Query", queries), ("InsertQuery", queries), ("FailedQuery", failed),
                                ("FailedInsertQuery", failed), ("QueryTimeMicroseconds", micros),
                                ("InsertQueryTimeMicroseconds", micros), ("InsertedRows", rows),
                                ("InsertedBytes", rows * row_bytes)):
                self.events[name] += value

    def exposition(self, time_scale: float = 1.0) -> str:
        """The ``/metrics`` page as ``PrometheusMetricsWriter`` writes it (events only)."""
        with self.lock:
            values = dict(self.events)
        lines: list[str] = []
        for name, help_text in HELP.items():
            key = PREFIX + name
            value = values[name] / time_scale
            # integers, as the server's UInt64 counters; fractional only when the clock is scaled
            shown = str(int(value)) if time_scale == 1.0 else repr(value)
            lines += [f"# HELP {key} {help_text}", f"# TYPE {key} counter", f"{key} {shown}"]
        return "\n".join(lines) + "\n"


__all__ = ["HELP", "PREFIX", "ClickHouseServer"]
