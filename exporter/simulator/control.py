"""The control interface: steer a running simulator and ask it for the ground truth.

Separate from the API on purpose — its own path prefix (``/_sim``), answered only when enabled
(``--control``; otherwise 404) and only to loopback peers (otherwise 403), because it can change
what every client sees. No signature: it is a test and demo tool, never exposed.

Endpoints (JSON in and out; a request body is a JSON object, query parameters work too):

====================================  ===========================================================
``GET  /_sim``                        this list
``GET  /_sim/world``                  clock, speed, instances, targets, job counts
``GET  /_sim/clock``                  ``{"now_ms", "start_ms", "speed", "manual"}``
``POST /_sim/clock/advance``          ``{"ms": 60000}`` or ``{"by": "5m"}``; manual clock only (409)
``POST /_sim/clock/set``              ``{"now_ms": …}``; manual clock only, never backwards
``GET  /_sim/faults``                 the fault spec in force and the injection counters
``PUT  /_sim/faults``                 ``{"spec": "throttle=0.3"}`` or the spec as text/plain
``DELETE /_sim/faults``               no faults any more
``POST /_sim/jobs``                   add a job: ``instance_id``, ``target_id`` (required),
                                      ``direction``, ``trigger_type`` (manual), ``status`` (final
                                      status, success), ``start_time_ms`` (now; never future),
                                      ``pending_ms`` (1000), ``duration_ms``, ``error_code``,
                                      ``error_message``, ``result`` (statistics in the API's
                                      ``Result`` shape), ``description``, ``stuck`` (false)
``POST /_sim/targets``                add a target: ``instance_id`` plus a scenario target object
``POST /_sim/targets/{id}/fail``      ``{"error_code", "error_message", "from_ms", "until_ms",
                                      "midway"}``: jobs starting from now (from_ms) fail
``POST /_sim/targets/{id}/recover``   end the target's failure windows now (or ``at_ms``)
``GET  /_sim/ground-truth``           ``?since=MS&instance_id=ID``; format in
                                      :mod:`exporter.simulator.groundtruth`
``GET  /_sim/stats``                  API requests by action and outcome
====================================  ===========================================================

>>> _is_loopback("127.0.0.1"), _is_loopback("::1"), _is_loopback("::ffff:127.0.0.1")
(True, True, True)
>>> _is_loopback("10.0.0.5"), _is_loopback(None)
(False, False)
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

from exporter.eiam.encoding import parse_query_string
from exporter.simulator.clock import ManualClock
from exporter.simulator.faults import FaultInjector, FaultSpecError
from exporter.simulator.groundtruth import ground_truth
from exporter.simulator.jobstats import statistics_from_api
from exporter.simulator.scenarios import ScenarioError, TargetSpec, parse_duration
from exporter.simulator.world import NEVER, Job, Target, World, WorldError
from exporter.web.server import Request, Response

__all__ = ["ControlApi"]


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _job_json(job: Job, now_ms: int, world: World) -> dict[str, Any]:
    return {
        "synchronization_job_id": job.job_id,
        "instance_id": job.instance_id,
        "target_type": job.target_type,
        "target_id": job.target_id,
        "direction": job.direction,
        "trigger_type": job.trigger,
        "status": job.status_at(now_ms),
        "start_time_ms": job.start_ms,
        "end_time_ms": job.end_ms if job.end_ms < NEVER else None,
        "visible_from_ms": visible if (visible := world.visible_from(job)) < NEVER else None,
    }


def _target_json(target: Target) -> dict[str, Any]:
    return {
        "target_id": target.target_id,
        "target_type": target.target_type,
        "instance_id": target.instance.instance_id,
        "name": target.name,
        "kind": target.kind,
        "directions": list(target.streams),
        "failures": [
            {
                "from_ms": w.from_ms,
                "until_ms": w.until_ms,
                "error_code": w.error[0],
                "error_message": w.error[1],
            }
            for w in target.failures
        ],
        "paused_from_ms": target.paused_from_ms,
    }


class ControlApi:
    """The ``/_sim`` handler. *api_stats* supplies the API's request counters."""

    def __init__(
        self,
        world: World,
        faults: FaultInjector,
        *,
        api_stats: Callable[[], dict[str, Any]] | None = None,
        allow_remote: bool = False,
    ) -> None:
        self.world = world
        self.faults = faults
        self.api_stats = api_stats
        self.allow_remote = allow_remote

    async def __call__(self, request: Request) -> Response:
        if not self.allow_remote and not _is_loopback(request.peer_host):
            return Response.json(
                {"error": "the control interface answers loopback peers only"}, 403
            )
        try:
            return self._route(request)
        except _BadRequest as exc:
            return Response.json({"error": exc.message}, exc.status)
        except (WorldError, ScenarioError, FaultSpecError, ValueError) as exc:
            return Response.json({"error": str(exc)}, 400)
        except KeyError as exc:
            return Response.json({"error": f"not found: {exc.args[0]}"}, 404)

    # -- routing ------------------------------------------------------------------------------

    def _route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p][1:]  # drop "_sim"
        method = request.method
        args = self._args(request)
        match (method, parts):
            case ("GET", []):
                return Response.json({"endpoints": _ENDPOINTS})
            case ("GET", ["world"]):
                return Response.json(self.world.summary())
            case ("GET", ["clock"]):
                return Response.json(self._clock())
            case ("POST", ["clock", "advance"]):
                return self._advance(args)
            case ("POST", ["clock", "set"]):
                return self._set_clock(args)
            case ("GET", ["faults"]):
                return Response.json(self.faults.snapshot())
            case ("PUT" | "POST", ["faults"]):
                spec = args.get("spec")
                if spec is None and not request.headers.get("content-type", "").startswith(
                    "application/json"
                ):
                    spec = request.body.decode("utf-8", "replace").strip()
                self.faults.set(str(spec or ""))
                return Response.json(self.faults.snapshot())
            case ("DELETE", ["faults"]):
                self.faults.clear()
                return Response.json(self.faults.snapshot())
            case ("POST", ["jobs"]):
                return self._add_job(args)
            case ("POST", ["targets"]):
                return self._add_target(args)
            case ("POST", ["targets", target_id, "fail"]):
                return self._fail(target_id, args)
            case ("POST", ["targets", target_id, "recover"]):
                return self._recover(target_id, args)
            case ("POST", ["targets", target_id, "pause"]):
                target = self.world.pause_target(
                    target_id,
                    from_ms=_opt_int(args, "from_ms"),
                    instance_id=args.get("instance_id") or None,
                )
                return Response.json(_target_json(target))
            case ("POST", ["targets", target_id, "resume"]):
                target = self.world.resume_target(
                    target_id, instance_id=args.get("instance_id") or None
                )
                return Response.json(_target_json(target))
            case ("GET", ["ground-truth"]):
                since = _opt_int(args, "since")
                instance_id = args.get("instance_id") or None
                return Response.json(
                    ground_truth(self.world, since_ms=since, instance_id=instance_id)
                )
            case ("GET", ["stats"]):
                stats = self.api_stats() if self.api_stats else {}
                return Response.json({**stats, "faults": self.faults.snapshot()})
        raise _BadRequest(404, f"no control endpoint {method} {request.path}")

    @staticmethod
    def _args(request: Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(parse_query_string(request.query))
        if request.body and request.headers.get("content-type", "").startswith("application/json"):
            try:
                payload = json.loads(request.body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise _BadRequest(400, f"invalid JSON body: {exc}") from None
            if not isinstance(payload, dict):
                raise _BadRequest(400, "the JSON body must be an object")
            args.update(payload)
        return args

    # -- handlers -----------------------------------------------------------------------------

    def _clock(self) -> dict[str, Any]:
        return {
            "now_ms": self.world.now(),
            "start_ms": self.world.start_ms,
            "speed": self.world.speed,
            "manual": isinstance(self.world.clock, ManualClock),
        }

    def _manual(self) -> ManualClock:
        clock = self.world.clock
        if not isinstance(clock, ManualClock):
            raise _BadRequest(
                409, "the world runs on the wall clock; start the simulator with a manual clock"
            )
        return clock

    def _advance(self, args: dict[str, Any]) -> Response:
        clock = self._manual()
        if "ms" in args:
            step = _opt_int(args, "ms")
        elif "by" in args:
            step = parse_duration(args["by"])
        else:
            raise _BadRequest(400, "give ms (milliseconds) or by (a duration like 5m)")
        clock.advance(int(step or 0))
        self.world.advance()
        return Response.json(self._clock())

    def _set_clock(self, args: dict[str, Any]) -> Response:
        clock = self._manual()
        now = _opt_int(args, "now_ms")
        if now is None:
            raise _BadRequest(400, "give now_ms")
        clock.set(now)
        self.world.advance()
        return Response.json(self._clock())

    def _add_job(self, args: dict[str, Any]) -> Response:
        instance_id = _req_str(args, "instance_id")
        target_id = _req_str(args, "target_id")
        result = args.get("result")
        if result is not None and not isinstance(result, dict):
            raise _BadRequest(400, "result must be an object in the API's Result shape")
        pending = _opt_int(args, "pending_ms")
        job = self.world.add_job(
            instance_id,
            target_id,
            direction=args.get("direction") or None,
            trigger=str(args.get("trigger_type") or "manual"),
            outcome=str(args.get("status") or "success"),
            start_ms=_opt_int(args, "start_time_ms"),
            pending_ms=1_000 if pending is None else pending,
            duration_ms=_opt_int(args, "duration_ms"),
            error_code=args.get("error_code") or None,
            error_message=args.get("error_message") or None,
            statistics=statistics_from_api(result) if result is not None else None,
            description=args.get("description") or None,
            stuck=bool(args.get("stuck", False)),
            visible_after_ms=_opt_int(args, "visible_after_ms"),
            visible_when_terminal=bool(args.get("visible_when_terminal", False)),
        )
        return Response.json(_job_json(job, self.world.now(), self.world), 201)

    def _add_target(self, args: dict[str, Any]) -> Response:
        instance_id = _req_str(args, "instance_id")
        spec_data = {k: v for k, v in args.items() if k != "instance_id"}
        try:
            spec = TargetSpec.model_validate(spec_data)
        except ValueError as exc:
            raise _BadRequest(400, f"invalid target: {exc}") from None
        target = self.world.add_target(instance_id, spec)
        return Response.json(_target_json(target), 201)

    def _fail(self, target_id: str, args: dict[str, Any]) -> Response:
        target = self.world.fail_target(
            target_id,
            error_code=_req_str(args, "error_code"),
            error_message=str(args.get("error_message") or ""),
            from_ms=_opt_int(args, "from_ms"),
            until_ms=_opt_int(args, "until_ms"),
            midway=bool(args.get("midway", False)),
            instance_id=args.get("instance_id") or None,
        )
        return Response.json(_target_json(target))

    def _recover(self, target_id: str, args: dict[str, Any]) -> Response:
        target = self.world.recover_target(
            target_id, at_ms=_opt_int(args, "at_ms"), instance_id=args.get("instance_id") or None
        )
        return Response.json(_target_json(target))


def _opt_int(args: dict[str, Any], name: str) -> int | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _BadRequest(400, f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _BadRequest(400, f"{name} must be an integer, got {value!r}") from None


def _req_str(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _BadRequest(400, f"{name} is required")
    return value.strip()


_ENDPOINTS = [
    "GET /_sim/world",
    "GET /_sim/clock",
    "POST /_sim/clock/advance {ms | by}",
    "POST /_sim/clock/set {now_ms}",
    "GET /_sim/faults",
    "PUT /_sim/faults {spec}",
    "DELETE /_sim/faults",
    "POST /_sim/jobs {instance_id, target_id, ...}",
    "POST /_sim/targets {instance_id, type, name, ...}",
    "POST /_sim/targets/{target_id}/fail {error_code, error_message, ...}",
    "POST /_sim/targets/{target_id}/recover",
    "POST /_sim/targets/{target_id}/pause {from_ms}",
    "POST /_sim/targets/{target_id}/resume",
    "GET /_sim/ground-truth?since=MS&instance_id=ID",
    "GET /_sim/stats",
]
