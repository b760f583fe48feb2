"""The API's timestamps are wall-clock instants, even when the model runs time_scale x faster.

A model time t is stamped ``wall_start + (t - model_start) / time_scale``: nothing the API prints
lies in the future, and the wall time elapsed since a status change times ``time_scale`` is the
model time since it, so a client's cooldown arithmetic on its own clock works at any scale.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from gftune.sim.clock import ManualClock, ScaledClock
from tests.sim.helpers import wait_status

SCALE = 30.0
JITTER = timedelta(milliseconds=2)  # the monotonic and the real-time clocks are read separately


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_model_time_maps_to_wall_start_plus_model_elapsed_over_the_scale():
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    clock = ManualClock(100.0, time_scale=SCALE, epoch=epoch)
    assert clock.timestamp(100.0) == "2026-01-01T00:00:00Z"
    assert clock.timestamp(160.0) == "2026-01-01T00:00:02Z"  # 60 model seconds at scale 30: 2 wall seconds
    assert clock.timestamp(101.5) == "2026-01-01T00:00:00.05Z"
    scaled = ScaledClock(SCALE)
    time.sleep(0.2)
    now = datetime.now(UTC)
    stamped = _parse(scaled.timestamp(scaled.now()))
    assert now - timedelta(milliseconds=50) <= stamped <= now + JITTER


def test_no_api_timestamp_is_in_the_future_and_elapsed_wall_time_scales_to_model_time(sim_factory):
    sim = sim_factory("terminal-errors", time_scale=SCALE)  # has DLQ traffic for the DLQ's timestamps
    pid = "orders-schema-mismatch"
    with httpx.Client(base_url=sim.api_url, timeout=10) as http:
        time.sleep(1.0)  # 30 model seconds
        assert http.post(f"/api/v1/pipeline/{pid}/stop").status_code == 200
        wait_status(http, pid, "Stopped", timeout=20)
        assert http.get(f"/api/v1/pipeline/{pid}/dlq/consume", params={"batch_size": 5}).status_code == 200
        time.sleep(0.5)
        health = http.get(f"/api/v1/pipeline/{pid}/health").json()
        [row] = [r for r in http.get("/api/v1/pipeline").json() if r["pipeline_id"] == pid]
        dlq = http.get(f"/api/v1/pipeline/{pid}/dlq/state").json()
        now = datetime.now(UTC)
    stamps = {"health.created_at": health["created_at"], "health.updated_at": health["updated_at"],
              "list.created_at": row["created_at"], "list.updated_at": row["updated_at"],
              "dlq.last_received_at": dlq["last_received_at"], "dlq.last_consumed_at": dlq["last_consumed_at"]}
    for name, text in stamps.items():
        assert _parse(text) <= now + JITTER, f"{name} {text} is ahead of the wall clock {now.isoformat()}"
    assert row["updated_at"] == health["updated_at"] and row["created_at"] == health["created_at"]
    updated = _parse(health["updated_at"])
    assert updated > _parse(health["created_at"]) + timedelta(seconds=0.9)  # stopped ~1 wall second in
    stored = sim.store.row(pid)
    model_since_change = sim.clock.now() - stored.updated_at
    wall_since_change = (datetime.now(UTC) - updated).total_seconds()
    assert wall_since_change * SCALE == pytest.approx(model_since_change, abs=0.05 * SCALE)
    assert model_since_change > 10  # the 0.5 s wait alone is 15 model seconds
