"""Scenarios: what a simulated company looks like — instances, identity providers, applications.

A scenario is data, not code: the built-in ones below and any JSON file share one validated
format (pydantic models, unknown keys rejected so that a typo is an error, not a silent default).
Every duration is in *schedule time*: ``--speed X`` divides intervals, durations and offsets by X.

Built-in scenarios:

- ``demo`` (default): "Contoso Group", a production and a staging instance; corporate Active
  Directory, an engineering OpenLDAP, DingTalk (both directions), WeCom, Feishu; applications as
  egress targets. WeCom starts failing 10 minutes after start (IP whitelist), Feishu has frequent
  partial successes, one HR-portal job has been stuck running for three hours. Distinct
  cadences: the AD syncs every 10 minutes, DingTalk hourly, the payroll push daily, a partner
  IdP only when someone triggers it, ServiceNow at random times. 9 days of history (enough
  daily runs for the exporter to learn a daily cadence).
- ``small``: one instance, three targets, 12 h of history — quick tests.
- ``bench-100k``: two instances, 20 schedules, exactly 100,000 historical jobs — benchmarks.

Scenario file format (JSON; durations are ``"500ms"``, ``"90s"``, ``"5m"``, ``"1h"``, ``"2d"``,
optionally negative for offsets, or integers in milliseconds)::

    {
      "name": "acme",
      "description": "optional free text",
      "history": "48h",                      // schedule time simulated before start
      "instances": [{
        "id": "idaas_...",                   // optional; derived from the seed if absent
        "description": "Acme production",
        "targets": [{
          "type": "identity_provider",       // or "application"
          "kind": "ad",                      // ad|ldap|dingtalk|wecom|feishu|idaas|oidc|application
          "name": "Acme Corporate AD (corp.acme.com)",
          "id": "idp_...",                   // optional
          "directions": ["ingress"],         // default: ingress for IdPs, egress for applications
          "schedule": "interval",            // interval: automatic runs every `interval`;
                                             // manual: only manual runs, at random times,
                                             // `interval` apart on average; random: automatic
                                             // runs at random times (event-driven), likewise
          "interval": "1h",                  // automatic sync period (mean gap if not interval)
          "duration": "3m",                  // typical run time (randomised around it)
          "jitter": 0.05,                    // start jitter, fraction of the interval
          "manual_rate": 0.05,               // chance of an extra manual run per interval
          "partial_rate": 0.03,              // chance of partial_success
          "failure_rate": 0.01,              // chance of a transient failure (kind's catalogue)
          "population": {"users": 2400, "organizational_units": 180,
                         "groups": 95, "group_members": 7200},
          "failures": [{"from": "+10m", "until": null,   // offsets from start; null = forever
                        "error_code": "OperationFailed.WeComApi",
                        "error_message": "WeCom API error 60020: not allow to access"}],
          "stuck_job_at": "-3h"              // optional: a manual job started then, running forever
        }]
      }]
    }

>>> scenario = load_scenario("demo")
>>> [len(i.targets) for i in scenario.instances]
[12, 2]
>>> parse_duration("1h30m"), parse_duration("-2h"), parse_duration(250)
(5400000, -7200000, 250)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "BUILTIN_SCENARIOS",
    "DEFAULT_ERRORS",
    "PARTIAL_ERRORS",
    "FailureSpec",
    "InstanceSpec",
    "PopulationSpec",
    "Scenario",
    "ScenarioError",
    "TargetSpec",
    "load_scenario",
    "parse_duration",
]

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


class ScenarioError(ValueError):
    """A scenario name that does not exist or a file that is not a valid scenario."""


def parse_duration(value: object) -> int:
    """Milliseconds from ``"90s"``, ``"1h30m"``, ``"-2h"``, ``"+10m"`` or an integer (ms)."""
    if isinstance(value, bool):
        raise ValueError("a duration cannot be a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return round(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '90s' or an integer in ms, got {value!r}")
    text = value.strip().replace(" ", "")
    sign = 1
    if text and text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text.isdigit():
        return sign * int(text)
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r}: use e.g. 500ms, 90s, 5m, 1h30m, 2d")
    return sign * round(total)


Duration = Annotated[int, BeforeValidator(parse_duration)]
"""Milliseconds; accepts the string forms of :func:`parse_duration`."""

TargetKind = Literal["ad", "ldap", "dingtalk", "wecom", "feishu", "idaas", "oidc", "application"]
Direction = Literal["ingress", "egress"]
Schedule = Literal["interval", "manual", "random"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PopulationSpec(_Spec):
    """How many objects the target holds; sync statistics are drawn around these sizes."""

    users: int = Field(default=500, ge=0)
    organizational_units: int = Field(default=40, ge=0)
    groups: int = Field(default=20, ge=0)
    group_members: int = Field(default=1500, ge=0)

    def as_tuple(self) -> tuple[int, int, int, int]:
        """In the order of ``ENTITY_BLOCKS``: user, organizational_unit, group, group_member."""
        return (self.users, self.organizational_units, self.groups, self.group_members)


class FailureSpec(_Spec):
    """Jobs starting in ``[from, until)`` (offsets from the start) fail with this error."""

    from_: Duration = Field(alias="from")
    until: Duration | None = None
    error_code: str = Field(min_length=1)
    error_message: str = ""
    partial: bool = False
    """Fail midway (some objects processed, ``Total`` above the processed sum) instead of at
    connection time (all statistics zero)."""


class TargetSpec(_Spec):
    type: Literal["identity_provider", "application"]
    kind: TargetKind | None = None
    name: str = Field(min_length=1)
    id: str | None = None
    directions: tuple[Direction, ...] | None = None
    schedule: Schedule = "interval"
    """``interval``: an automatic run every *interval* (jittered), plus manual runs at
    *manual_rate*; ``manual``: no automatic run, manual runs at random times *interval* apart
    on average (a target synchronized only when someone presses "sync"); ``random``: automatic
    runs at random times *interval* apart on average (an event-driven sync)."""
    interval: Duration = 3_600_000
    duration: Duration = 120_000
    jitter: float = Field(default=0.05, ge=0.0, lt=1.0)
    manual_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    partial_rate: float = Field(default=0.03, ge=0.0, le=1.0)
    failure_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    population: PopulationSpec = PopulationSpec()
    failures: tuple[FailureSpec, ...] = ()
    stuck_job_at: Duration | None = None
    status: str = "enabled"

    @model_validator(mode="after")
    def _check(self) -> TargetSpec:
        if self.interval <= 0:
            raise ValueError("interval must be positive")
        if self.duration <= 0:
            raise ValueError("duration must be positive")
        if self.partial_rate + self.failure_rate > 1.0:
            raise ValueError("partial_rate + failure_rate must not exceed 1")
        return self

    @property
    def resolved_kind(self) -> str:
        if self.kind is not None:
            return self.kind
        return "application" if self.type == "application" else "idaas"

    @property
    def resolved_directions(self) -> tuple[str, ...]:
        if self.directions:
            return tuple(dict.fromkeys(self.directions))
        return ("egress",) if self.type == "application" else ("ingress",)


class InstanceSpec(_Spec):
    id: str | None = None
    description: str = ""
    targets: tuple[TargetSpec, ...] = ()


class Scenario(_Spec):
    name: str = "custom"
    description: str = ""
    history: Duration = 48 * 3_600_000
    instances: tuple[InstanceSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if self.history < 0:
            raise ValueError("history must not be negative")
        seen: set[str] = set()
        for instance in self.instances:
            for value in [instance.id, *(t.id for t in instance.targets)]:
                if value is None:
                    continue
                if value in seen:
                    raise ValueError(f"duplicate id {value!r}")
                seen.add(value)
        return self


# -- realistic errors ------------------------------------------------------------------------

DEFAULT_ERRORS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "ad": (
        (
            "OperationFailed.LdapConnection",
            "Failed to connect to ldaps://dc01.corp.contoso.com:636: "
            "connect timed out after 10000 ms",
            False,
        ),
        (
            "InvalidCredential.LdapBind",
            "LDAP bind failed for CN=svc-idaas,OU=Service Accounts,DC=corp,DC=contoso,DC=com: "
            "[LDAP: error code 49 - 80090308: LdapErr: DSID-0C09044E, data 775]",
            False,
        ),
        (
            "OperationFailed.LdapSearch",
            "LDAP search under OU=Staff,DC=corp,DC=contoso,DC=com was aborted: "
            "[LDAP: error code 3 - Time Limit Exceeded]",
            True,
        ),
    ),
    "ldap": (
        (
            "OperationFailed.LdapSearch",
            "LDAP search under ou=people,dc=eng,dc=contoso,dc=com exceeded the size limit "
            "[LDAP: error code 4 - Size Limit Exceeded]",
            True,
        ),
        (
            "OperationFailed.LdapConnection",
            "Failed to connect to ldap://ldap.eng.contoso.com:389: Connection refused",
            False,
        ),
    ),
    "dingtalk": (
        (
            "OperationFailed.DingTalkApi",
            "DingTalk API error 60011: no permission to access department 487522645",
            True,
        ),
        (
            "Throttling.DingTalkApi",
            "DingTalk API error 90018: api call frequency exceeds the limit, retry later",
            True,
        ),
    ),
    "wecom": (
        (
            "OperationFailed.WeComApi",
            "WeCom API error 60020: not allow to access from your ip, from ip: 47.96.152.38",
            False,
        ),
        (
            "OperationFailed.WeComApi",
            "WeCom API error 45009: api freq out of limit",
            True,
        ),
    ),
    "feishu": (
        (
            "OperationFailed.FeishuApi",
            "Feishu API error 99991672: app has no permission contact:user.base:readonly",
            False,
        ),
        (
            "OperationFailed.FeishuApi",
            "Feishu API error 99991400: request trigger frequency limit",
            True,
        ),
    ),
    "idaas": (
        (
            "InternalError.SyncEngine",
            "The synchronization engine was restarted while the job was running",
            True,
        ),
    ),
    "oidc": (
        (
            "OperationFailed.UserInfoEndpoint",
            "Failed to fetch the user list: HTTP 502 Bad Gateway",
            False,
        ),
    ),
    "application": (
        (
            "OperationFailed.ScimPush",
            "SCIM endpoint returned HTTP 503 Service Unavailable for PATCH /scim/v2/Users",
            True,
        ),
        (
            "InvalidCredential.ScimToken",
            "SCIM endpoint rejected the bearer token: HTTP 401 Unauthorized",
            False,
        ),
    ),
}
"""Transient failures per target kind: (ErrorCode, ErrorMessage, fails midway)."""

PARTIAL_ERRORS: tuple[tuple[str, str], ...] = (
    ("MissingParameter.Username", "The specified parameter Username is required!"),
    (
        "EntityAlreadyExists.User.Email",
        "The email wang.fang@contoso.com is already bound to user user_5tq3mdxl2s2yrkvbn7x4",
    ),
    ("InvalidParameter.PhoneNumber", "The phone number +86-1380013800 of user li.na is invalid"),
)
"""Errors reported by partially successful jobs (some objects failed, the rest went through)."""


# -- built-in scenarios ----------------------------------------------------------------------


def _demo() -> dict[str, Any]:
    return {
        "name": "demo",
        "description": "Contoso Group: production and staging IDaaS instances",
        "history": "9d",
        "instances": [
            {
                "description": "Contoso Group – production",
                "targets": [
                    {
                        "type": "identity_provider",
                        "kind": "ad",
                        "name": "Contoso Corporate AD (corp.contoso.com)",
                        "interval": "10m",
                        "duration": "4m",
                        "population": {
                            "users": 2400,
                            "organizational_units": 180,
                            "groups": 95,
                            "group_members": 7200,
                        },
                    },
                    {
                        "type": "identity_provider",
                        "kind": "ldap",
                        "name": "Contoso Engineering OpenLDAP (ldap.eng.contoso.com)",
                        "interval": "30m",
                        "duration": "90s",
                        "population": {
                            "users": 640,
                            "organizational_units": 24,
                            "groups": 60,
                            "group_members": 2100,
                        },
                    },
                    {
                        "type": "identity_provider",
                        "kind": "dingtalk",
                        "name": "Contoso DingTalk (钉钉)",
                        "directions": ["ingress", "egress"],
                        "interval": "1h",
                        "duration": "6m",
                        "population": {
                            "users": 3100,
                            "organizational_units": 260,
                            "groups": 0,
                            "group_members": 0,
                        },
                    },
                    {
                        "type": "identity_provider",
                        "kind": "wecom",
                        "name": "Contoso Shanghai WeCom (企业微信)",
                        "interval": "30m",
                        "duration": "2m",
                        "population": {
                            "users": 420,
                            "organizational_units": 35,
                            "groups": 12,
                            "group_members": 380,
                        },
                        "failures": [
                            {
                                "from": "+10m",
                                "error_code": "OperationFailed.WeComApi",
                                "error_message": "WeCom API error 60020: not allow to access "
                                "from your ip, from ip: 47.96.152.38",
                            }
                        ],
                    },
                    {
                        "type": "identity_provider",
                        "kind": "feishu",
                        "name": "Contoso Shenzhen Feishu (飞书)",
                        "interval": "1h",
                        "duration": "3m",
                        "partial_rate": 0.3,
                        "population": {
                            "users": 880,
                            "organizational_units": 64,
                            "groups": 30,
                            "group_members": 1900,
                        },
                    },
                    {
                        "type": "application",
                        "name": "Salesforce (CRM)",
                        "interval": "1h",
                        "duration": "2m",
                        "population": {
                            "users": 760,
                            "organizational_units": 0,
                            "groups": 40,
                            "group_members": 900,
                        },
                    },
                    {
                        "type": "application",
                        "name": "GitLab Self-Managed (git.contoso.com)",
                        "interval": "30m",
                        "duration": "1m",
                        "population": {
                            "users": 610,
                            "organizational_units": 0,
                            "groups": 85,
                            "group_members": 2300,
                        },
                    },
                    {
                        "type": "application",
                        "name": "Jira Software Cloud",
                        "interval": "2h",
                        "duration": "3m",
                        "failures": [
                            {
                                "from": "-20h",
                                "until": "-17h",
                                "error_code": "InvalidCredential.ScimToken",
                                "error_message": "SCIM endpoint rejected the bearer token: "
                                "HTTP 401 Unauthorized",
                            }
                        ],
                        "population": {
                            "users": 980,
                            "organizational_units": 0,
                            "groups": 55,
                            "group_members": 2600,
                        },
                    },
                    {
                        "type": "application",
                        "name": "Legacy HR Portal (SCIM)",
                        "interval": "6h",
                        "duration": "10m",
                        "manual_rate": 0.2,
                        "stuck_job_at": "-3h",
                        "population": {
                            "users": 2400,
                            "organizational_units": 180,
                            "groups": 0,
                            "group_members": 0,
                        },
                    },
                    {
                        "type": "application",
                        "name": "Workday Payroll (daily push)",
                        "interval": "1d",
                        "duration": "20m",
                        "jitter": 0.01,
                        "manual_rate": 0.0,
                        "population": {
                            "users": 2350,
                            "organizational_units": 170,
                            "groups": 0,
                            "group_members": 0,
                        },
                    },
                    {
                        "type": "identity_provider",
                        "kind": "oidc",
                        "name": "Fabrikam Partner IdP (OIDC, on demand)",
                        "schedule": "manual",
                        "interval": "6h",
                        "duration": "1m",
                        "population": {
                            "users": 150,
                            "organizational_units": 4,
                            "groups": 6,
                            "group_members": 180,
                        },
                    },
                    {
                        "type": "application",
                        "name": "ServiceNow (provisioned on change)",
                        "schedule": "random",
                        "interval": "1h",
                        "duration": "40s",
                        "population": {
                            "users": 1200,
                            "organizational_units": 0,
                            "groups": 30,
                            "group_members": 1400,
                        },
                    },
                ],
            },
            {
                "description": "Contoso Group – staging",
                "targets": [
                    {
                        "type": "identity_provider",
                        "kind": "ad",
                        "name": "Contoso Staging AD (stg.corp.contoso.com)",
                        "interval": "2h",
                        "duration": "2m",
                        "population": {
                            "users": 120,
                            "organizational_units": 15,
                            "groups": 10,
                            "group_members": 300,
                        },
                    },
                    {
                        "type": "application",
                        "name": "GitLab Staging",
                        "interval": "1h",
                        "duration": "30s",
                        "population": {
                            "users": 80,
                            "organizational_units": 0,
                            "groups": 12,
                            "group_members": 200,
                        },
                    },
                ],
            },
        ],
    }


def _small() -> dict[str, Any]:
    return {
        "name": "small",
        "description": "One instance, three targets, 12 h of history: quick tests",
        "history": "12h",
        "instances": [
            {
                "description": "Test instance",
                "targets": [
                    {
                        "type": "identity_provider",
                        "kind": "ad",
                        "name": "Test AD (corp.test)",
                        "interval": "30m",
                        "duration": "2m",
                        "partial_rate": 0.1,
                        "failure_rate": 0.05,
                        "failures": [
                            {
                                "from": "-3h",
                                "until": "-2h",
                                "error_code": "OperationFailed.LdapConnection",
                                "error_message": "Failed to connect to ldaps://dc01.corp.test:636",
                            }
                        ],
                    },
                    {
                        "type": "identity_provider",
                        "kind": "dingtalk",
                        "name": "Test DingTalk",
                        "directions": ["ingress", "egress"],
                        "interval": "1h",
                        "duration": "3m",
                        "manual_rate": 0.2,
                    },
                    {
                        "type": "application",
                        "name": "Test App (SCIM)",
                        "interval": "1h",
                        "duration": "1m",
                        "stuck_job_at": "-90m",
                    },
                ],
            }
        ],
    }


def _bench_100k() -> dict[str, Any]:
    interval_min = 6
    runs = 5000

    def instance(label: str) -> dict[str, Any]:
        idp = [("ad", "AD"), ("ldap", "OpenLDAP"), ("wecom", "WeCom"), ("feishu", "Feishu")]
        targets: list[dict[str, Any]] = [
            {
                "type": "identity_provider",
                "kind": kind,
                "name": f"{label} {title}",
                "interval": f"{interval_min}m",
                "duration": "1m",
                "manual_rate": 0.0,
                "partial_rate": 0.05,
                "failure_rate": 0.02,
            }
            for kind, title in idp
        ]
        targets.append(
            {
                "type": "identity_provider",
                "kind": "dingtalk",
                "name": f"{label} DingTalk",
                "directions": ["ingress", "egress"],
                "interval": f"{interval_min}m",
                "duration": "1m",
                "manual_rate": 0.0,
            }
        )
        targets.extend(
            {
                "type": "application",
                "name": f"{label} App {n}",
                "interval": f"{interval_min}m",
                "duration": "30s",
                "manual_rate": 0.0,
            }
            for n in range(1, 5)
        )
        return {"description": f"{label} (benchmark)", "targets": targets}

    return {
        "name": "bench-100k",
        "description": "2 instances x 10 schedules x 5,000 runs = 100,000 historical jobs",
        "history": f"{interval_min * runs}m",
        "instances": [instance("Bench A"), instance("Bench B")],
    }


BUILTIN_SCENARIOS = {"demo": _demo, "small": _small, "bench-100k": _bench_100k}
"""Name → factory of the scenario's JSON form (validated by :func:`load_scenario`)."""


def _validate(data: Any, origin: str) -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ScenarioError(f"invalid scenario {origin}: {problems}") from None


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or a scenario JSON file by path."""
    key = str(name_or_path)
    if key in BUILTIN_SCENARIOS:
        return _validate(BUILTIN_SCENARIOS[key](), repr(key))
    path = Path(key)
    if not path.is_file():
        names = ", ".join(sorted(BUILTIN_SCENARIOS))
        raise ScenarioError(f"unknown scenario {key!r}: not a built-in ({names}) and no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario file {key}: {exc}") from None
    return _validate(data, key)
