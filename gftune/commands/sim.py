"""``gftune sim``: run the embedded GlassFlow API + metrics simulator in the foreground."""

from __future__ import annotations

import signal
import threading

import click

from gftune import exitcodes
from gftune.glassflow.instruments import DEFAULT_NAMING, NAMING_STYLES
from gftune.sim import ScenarioError, Simulator, available_scenarios

EMPTY_HINT = ("No pipelines yet: the simulator is empty until a scenario loads some or you create them "
              "(`gftune apply`). `gftune sim --scenario demo` runs the example repository's five pipelines, "
              "one of them sink-bound; `gftune sim --list-scenarios` lists the others.")


@click.command(name="sim", help="Run the embedded GlassFlow API + metrics simulator.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8081, show_default=True, type=int, help="API port (the real API's default).")
@click.option("--metrics-port", default=9090, show_default=True, type=int, help="Port of /metrics.")
@click.option("--scenario", "scenarios", multiple=True, metavar="NAME|FILE",
              help="Scenario name (scenarios/NAME.yaml) or file; repeatable.")
@click.option("--time-scale", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Sim seconds per wall second; counters are divided by it so rate() stays per sim second.")
@click.option("--naming", type=click.Choice(list(NAMING_STYLES)), default=DEFAULT_NAMING, show_default=True,
              help="Metric names as the Helm chart's OTel collector exposes them, or as GlassFlow documents them.")
@click.option("--metric-namespace", "namespace", default="glassflow", show_default=True,
              help="Prefix of the metric names (<namespace>_gfm_...).")
@click.option("--seed", type=int, default=None, help="Noise seed (default: the scenario's).")
@click.option("--nats-exporter", is_flag=True,
              help="Also expose the chart's NATS exporter JetStream series (jetstream_*), as its collector does.")
@click.option("--clickhouse-metrics", is_flag=True,
              help="Also serve the ClickHouse server's own Prometheus endpoint (ClickHouseProfileEvents_*) on "
                   "--clickhouse-port, as ClickHouse's <prometheus> config does.")
@click.option("--clickhouse-port", default=9363, show_default=True, type=int,
              help="Port of the ClickHouse server's /metrics (with --clickhouse-metrics).")
@click.option("--list-scenarios", is_flag=True, help="List the known scenarios and exit.")
def command(host: str, port: int, metrics_port: int, scenarios: tuple[str, ...], time_scale: float, naming: str,
            namespace: str, seed: int | None, nats_exporter: bool, clickhouse_metrics: bool, clickhouse_port: int,
            list_scenarios: bool) -> None:
    if list_scenarios:
        from gftune.sim import scenarios as scenario_files

        for path in available_scenarios():
            scenario = scenario_files.load(str(path))
            summary = " ".join((scenario.signature or scenario.description).split())
            click.echo(f"{scenario.name:28} {summary}")
        return
    try:
        simulator = Simulator(scenarios=list(scenarios), time_scale=time_scale, naming=naming, namespace=namespace,
                              seed=seed, nats_exporter=nats_exporter, clickhouse_metrics=clickhouse_metrics)
        simulator.start(host=host, port=port, metrics_port=metrics_port, clickhouse_port=clickhouse_port)
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}: {exc.strerror or exc}") from None
    store = simulator.store
    assert store is not None
    click.echo(f"GlassFlow API simulator: {simulator.api_url} (metrics: {simulator.metrics_url})"
               + (f"; ClickHouse metrics: {simulator.clickhouse_url}" if simulator.clickhouse_url else ""))
    click.echo(f"time scale {time_scale:g}x, naming {naming}, {len(store.rows)} pipeline(s) preloaded"
               + (f" from {', '.join(scenarios)}" if scenarios else ""))
    if not store.rows:
        click.echo(EMPTY_HINT)
    click.echo("Press Ctrl+C to stop.")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    finally:
        simulator.stop()
    raise SystemExit(exitcodes.OK)
