"""Tolerant response models of the EIAM actions the exporter uses.

Why tolerant: the official model marks every field optional, pending and running jobs come
without ``Result``/``EndTime``, enum lists have changed between API versions, and the API's own
example carries identifiers ending in ``\\n``. So: enums are plain strings (an unknown status is
kept, never dropped), missing blocks are ``None``, unknown fields are ignored and identifiers
are stripped. Field names are Python's; aliases are the API's, and ``to_api()`` gives the API's
shape back (``jobs --output json``).

>>> job = SynchronizationJob.model_validate(
...     {"SynchronizationJobId": "sync_1\\n", "Status": "brand_new_status", "Extra": 1})
>>> job.synchronization_job_id, job.status, job.result
('sync_1', 'brand_new_status', None)
>>> job.to_api()
{'SynchronizationJobId': 'sync_1', 'Status': 'brand_new_status'}
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_pascal
from typing_extensions import TypedDict

__all__ = [
    "ACTIONS",
    "ENTITY_BLOCKS",
    "IN_PROGRESS_STATUSES",
    "RESULTS",
    "TERMINAL_STATUSES",
    "ActionStatistics",
    "ApiResponse",
    "Application",
    "EntityStatistics",
    "GetSynchronizationJobResponse",
    "IdentityProvider",
    "ListApplicationsResponse",
    "ListIdentityProvidersResponse",
    "ListSynchronizationJobsResponse",
    "SynchronizationJob",
    "SynchronizationJobResult",
]

Identifier = Annotated[str, StringConstraints(strip_whitespace=True)]
"""An identifier or enum value; stray whitespace (the API example's ``\\n``) is stripped."""

TERMINAL_STATUSES = frozenset({"success", "failed", "partial_success"})
"""Documented final statuses. A job with any other status and an EndTime is also final."""

IN_PROGRESS_STATUSES = frozenset({"pending", "running", "suspending"})
"""Documented non-final statuses (``suspending`` comes from an older model)."""


class ApiModel(BaseModel):
    """Base: API-cased aliases, unknown fields ignored, construction by either name."""

    model_config = ConfigDict(
        alias_generator=to_pascal,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    def to_api(self) -> dict[str, Any]:
        """The API's own field names, absent fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True)


class ActionStatistics(TypedDict, total=False):
    """One action's counts, e.g. users *created*, in the API's own keys.

    A ``TypedDict`` rather than a model on purpose: a full page holds 2,600 of these and plain
    dicts halve the parse time of a page (see ``bench/``), while still being validated.
    """

    Total: int | None
    Success: int | None
    Failed: int | None
    Skipped: int | None


class EntityStatistics(TypedDict, total=False):
    """Per-action statistics of one entity. ``Exported`` exists for users and OUs only."""

    Created: ActionStatistics
    Updated: ActionStatistics
    Binded: ActionStatistics
    Deleted: ActionStatistics
    Same: ActionStatistics
    Pushed: ActionStatistics
    Exported: ActionStatistics


ACTIONS: tuple[tuple[str, str], ...] = (
    ("created", "Created"),
    ("updated", "Updated"),
    ("binded", "Binded"),
    ("deleted", "Deleted"),
    ("same", "Same"),
    ("pushed", "Pushed"),
    ("exported", "Exported"),
)
"""(metric ``action`` label value, key in :class:`EntityStatistics`)."""

RESULTS: tuple[tuple[str, str], ...] = (
    ("success", "Success"),
    ("failed", "Failed"),
    ("skipped", "Skipped"),
)
"""(metric ``result`` label value, key in :class:`ActionStatistics`)."""


class SynchronizationJobResult(ApiModel):
    error_code: Identifier | None = None
    error_message: str | None = None
    user_statistics: EntityStatistics | None = None
    organizational_unit_statistics: EntityStatistics | None = None
    group_statistics: EntityStatistics | None = None
    group_member_statistics: EntityStatistics | None = None


ENTITY_BLOCKS: tuple[tuple[str, str], ...] = (
    ("user", "user_statistics"),
    ("organizational_unit", "organizational_unit_statistics"),
    ("group", "group_statistics"),
    ("group_member", "group_member_statistics"),
)
"""(metric ``entity`` label value, attribute of :class:`SynchronizationJobResult`)."""


class SynchronizationJob(ApiModel):
    """One synchronization job. Only the ID is required: without it a job cannot be tracked."""

    synchronization_job_id: Identifier = Field(min_length=1)
    target_type: Identifier | None = None
    target_id: Identifier | None = None
    direction: Identifier | None = None
    start_time: int | None = None
    end_time: int | None = None
    trigger_type: Identifier | None = None
    status: Identifier | None = None
    description: str | None = None
    result: SynchronizationJobResult | None = None


class ApiResponse(ApiModel):
    """Fields every response may carry; ``Code``/``Message`` appear on error bodies."""

    request_id: str | None = None
    code: str | None = None
    message: str | None = None


class ListSynchronizationJobsResponse(ApiResponse):
    total_count: int | None = None
    next_token: str | None = None
    synchronization_jobs: list[SynchronizationJob] = Field(default_factory=list)


class GetSynchronizationJobResponse(ApiResponse):
    synchronization_job: SynchronizationJob | None = None


class IdentityProvider(ApiModel):
    identity_provider_id: Identifier = Field(min_length=1)
    identity_provider_name: str | None = None
    identity_provider_type: Identifier | None = None


class ListIdentityProvidersResponse(ApiResponse):
    total_count: int | None = None
    identity_providers: list[IdentityProvider] = Field(default_factory=list)


class Application(ApiModel):
    application_id: Identifier = Field(min_length=1)
    application_name: str | None = None
    status: Identifier | None = None


class ListApplicationsResponse(ApiResponse):
    total_count: int | None = None
    applications: list[Application] = Field(default_factory=list)
