"""Secrets never leave the process: not in logs (debug level), metrics, the landing page, the
state file or error messages, over a full run that includes failures."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from exporter.simulator import AccessKey, ManualClock, World, load_scenario, run_in_thread

from .processes import ExporterProcess

SECRET = "Sx9-unmistakable-secret-4f1e"
TOKEN = "Tk7-unmistakable-sts-token-9b2"
WRONG = "Wr0ng-unmistakable-secret-77"


async def test_no_secret_anywhere_over_a_full_run(tmp_path: Path) -> None:
    world = World(load_scenario("small"), seed=4, now_ms=ManualClock())
    key = AccessKey("STS.LTAI5tSecretsTest", SECRET, security_token=TOKEN)
    with run_in_thread(world, access_keys=[key], faults="throttle=0.3,5xx=0.1") as simulator:
        instance_ids = [i.instance_id for i in world.instances]
        exporter = ExporterProcess(simulator, instance_ids, tmp_path / "state.json")
        exporter.extra_env = {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": key.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
            "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN,
        }
        exporter.extra_args = ["--log.level", "debug"]
        await exporter.start()
        outputs: list[str] = []
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                for _ in range(40):  # a few seconds of polls, retries and scrapes
                    for path in ("/metrics", "/", "/-/ready"):
                        outputs.append((await client.get(exporter.url + path)).text)
                    await asyncio.sleep(0.1)
                # the simulator's control interface is not reachable through the exporter
                assert (await client.get(exporter.url + "/_sim/ground-truth")).status_code == 404
            # jobs were really polled and counted: the run exercised the API, not just the HELP
            metrics = [text for text in outputs if "# HELP idaas_sync_jobs_total" in text]
            assert re.search(r"^idaas_sync_jobs_total\{", metrics[-1], re.MULTILINE)
        finally:
            assert await exporter.terminate() == 0

        # the day-one commands, with the right and with a wrong secret
        base = {k: v for k, v in os.environ.items() if not k.startswith(("IDAAS_", "ALIBABA_"))}
        for secret in (SECRET, WRONG):
            env = {
                **base,
                "ALIBABA_CLOUD_ACCESS_KEY_ID": key.access_key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": secret,
                "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN,
                "IDAAS_EXPORTER_ENDPOINT": simulator.server.base_url,
                "IDAAS_EXPORTER_INSTANCE_IDS": ",".join(instance_ids),
            }
            for command in (["jobs", "--log.level", "debug"], ["check", "--log.level", "debug"]):
                result = subprocess.run(
                    [sys.executable, "-m", "exporter", *command],
                    capture_output=True, text=True, env=env, timeout=60, check=False,
                )  # fmt: skip
                outputs += [result.stdout, result.stderr]
                if secret == WRONG:
                    assert result.returncode == 1
                    assert "SignatureDoesNotMatch" in result.stdout + result.stderr

    written = [*exporter.logs, *outputs, (tmp_path / "state.json").read_text()]
    assert any("eiam request" in line for line in exporter.logs)  # debug logs were on
    for text in written:
        for value in (SECRET, TOKEN, WRONG):
            assert value not in text
