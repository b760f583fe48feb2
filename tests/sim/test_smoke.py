"""The simulator fixtures start real servers, and a scenario's pipelines are there and running."""

import httpx


def test_empty_simulator_serves_the_api_and_metrics(sim):
    assert httpx.get(sim.api_url + "/api/v2/healthz").json() == {"status": "ok"}
    assert httpx.get(sim.api_url + "/api/v1/pipeline").json() == []
    metrics = httpx.get(sim.metrics_url)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")


def test_scenario_pipelines_are_preloaded_running(sim_factory):
    sim = sim_factory("healthy", time_scale=20)
    rows = httpx.get(sim.api_url + "/api/v1/pipeline").json()
    assert [(r["pipeline_id"], r["status"]) for r in rows] == [("orders-healthy", "Running")]


def test_the_prometheus_fixture_scrapes_the_sim_fixture(sim, prometheus):
    result = prometheus.wait_for_series('up{job="target0"}', timeout=30)
    assert result[0]["value"][1] == "1"
