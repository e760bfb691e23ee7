"""A faithful simulator of the Alibaba Cloud IDaaS (EIAM) OpenAPI: the exporter's demo data
source, every test's counterpart, the benchmarks' load and the fault tests' adversary.

The pieces, one concern each:

- :mod:`~exporter.simulator.scenarios` — what a company looks like (built-ins and a JSON format);
- :mod:`~exporter.simulator.world` — the seeded, lazily advancing world of instances, targets and
  jobs; :mod:`~exporter.simulator.jobstats` — per-job statistics drawn on demand;
- :mod:`~exporter.simulator.auth` — V3 and legacy RPC signature verification, like the gateway;
- :mod:`~exporter.simulator.faults` — throttling, 5xx, latency, resets, truncation;
- :mod:`~exporter.simulator.server` — the API actions; :mod:`~exporter.simulator.render` — their
  JSON; :mod:`~exporter.simulator.control` — the ``/_sim`` control interface;
  :mod:`~exporter.simulator.groundtruth` — what the exporter's metrics must show;
- :mod:`~exporter.simulator.runner` — in-process servers (async and threaded);
  :mod:`~exporter.commands.simulate` — ``idaas-sync-exporter simulate``.

Typical test use::

    world = World(load_scenario("small"), seed=7, now_ms=ManualClock(1_735_689_600_000))
    async with SimulatorServer(world, control=True) as sim:
        ...  # a client on sim.base_url with sim.access_key
"""

from exporter.simulator.auth import DEMO_ACCESS_KEY, DEMO_STS_KEY, AccessKey
from exporter.simulator.clock import ManualClock, wall_clock_ms
from exporter.simulator.faults import FaultInjector, FaultPlan, FaultSpecError
from exporter.simulator.groundtruth import ground_truth
from exporter.simulator.runner import SimulatorServer, ThreadedSimulator, run_in_thread
from exporter.simulator.scenarios import Scenario, ScenarioError, load_scenario
from exporter.simulator.world import Job, JobFilter, World

__all__ = [
    "DEMO_ACCESS_KEY",
    "DEMO_STS_KEY",
    "AccessKey",
    "FaultInjector",
    "FaultPlan",
    "FaultSpecError",
    "Job",
    "JobFilter",
    "ManualClock",
    "Scenario",
    "ScenarioError",
    "SimulatorServer",
    "ThreadedSimulator",
    "World",
    "ground_truth",
    "load_scenario",
    "run_in_thread",
    "wall_clock_ms",
]
