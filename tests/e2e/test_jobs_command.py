"""``idaas-sync-exporter jobs --output json`` against a simulator holding 500+ jobs that
throttles 30 % of requests: every job exactly once, newest first, in the API's own shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from exporter.simulator import ManualClock, World, load_scenario, run_in_thread
from exporter.simulator.scenarios import BUILTIN_SCENARIOS


def busy_scenario(tmp_path: Path) -> Path:
    data = BUILTIN_SCENARIOS["small"]()
    data["name"] = "busy"
    data["history"] = "48h"
    data["instances"][0]["targets"][0]["interval"] = "5m"
    path = tmp_path / "busy.json"
    path.write_text(json.dumps(data))
    return path


def test_jobs_json_returns_every_job_exactly_once_under_throttling(tmp_path: Path) -> None:
    # a frozen clock: no job may start between the listing and the expectation
    world = World(load_scenario(busy_scenario(tmp_path)), seed=21, now_ms=ManualClock())
    instance = world.instances[0]
    with run_in_thread(world, faults="throttle=0.3,retry-after=20ms") as simulator:
        key = simulator.server.access_key
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IDAAS_", "ALIBABA_"))}
        env.update(
            ALIBABA_CLOUD_ACCESS_KEY_ID=key.access_key_id,
            ALIBABA_CLOUD_ACCESS_KEY_SECRET=key.access_key_secret,
            IDAAS_EXPORTER_INSTANCE_IDS=instance.instance_id,
            IDAAS_EXPORTER_ENDPOINT=simulator.server.base_url,
            IDAAS_EXPORTER_API_MAX_ATTEMPTS="10",
        )
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "jobs", "--output", "json", "--since", "604800"],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        throttled = simulator.server.faults.snapshot()["injected"].get("throttle", 0)
        expected = {job.job_id for job in instance.jobs}
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)
    ids = [job["SynchronizationJobId"] for job in jobs]
    assert len(expected) >= 500
    assert len(ids) == len(set(ids))  # exactly once
    assert set(ids) == expected  # every job
    assert throttled > 0  # the retries really happened
    starts = [job["StartTime"] for job in jobs]
    assert starts == sorted(starts, reverse=True)  # newest first
    assert all(job["InstanceId"] == instance.instance_id for job in jobs)
    finished = next(job for job in jobs if job["Status"] == "success")
    assert set(finished) >= {"SynchronizationJobId", "TargetType", "TargetId", "Direction",
                             "StartTime", "EndTime", "TriggerType", "Status", "Result"}  # fmt: skip
    assert "UserStatistics" in finished["Result"]
