"""One error hierarchy for everything that can go wrong talking to EIAM, and what to do about it.

Every error carries what an operator needs in one line: the API Code, the message, the RequestId
(quote it to Alibaba support), the HTTP status, and a hint that names the fix: the RAM action to
grant, the clock to correct, the InstanceId to check. ``retryable`` tells the client whether
another attempt can help; the classification follows ``eiam-api.md`` §6.

These constructors are where a server's words become ours, so they are where credentials are
masked (:func:`~exporter.eiam.redaction.redact`): a ``SignatureDoesNotMatch`` message quotes the
request it refused, security token included, and every text and attribute below ends up in logs,
command output, metric labels (``code``) or the landing page.

>>> from exporter.eiam.redaction import register
>>> register("CAIS+example/token=", "security-token")
>>> echo = classify_api_error(400, "SignatureDoesNotMatch",
...     "Server canonical request is:POST#/##x-acs-security-token:CAIS+example/token=#", "REQ-2")
>>> echo.api_message
'Server canonical request is:POST#/##x-acs-security-token:<redacted:security-token>#'

>>> err = classify_api_error(403, "Forbidden.RAM", "User not authorized", "REQ-1",
...                          action="ListSynchronizationJobs")
>>> type(err).__name__, err.retryable
('PermissionDeniedError', False)
>>> print(err)  # doctest: +NORMALIZE_WHITESPACE
ListSynchronizationJobs failed: Forbidden.RAM (HTTP 403): User not authorized [RequestId REQ-1].
Grant the RAM action eiam:ListSynchronizationJobs to this identity, for example with the system
policy AliyunIDaaSEiamReadOnlyAccess.
"""

from __future__ import annotations

from exporter.eiam.redaction import redact

__all__ = [
    "ApiError",
    "AuthenticationError",
    "ClockSkewError",
    "CredentialsError",
    "EiamError",
    "InstanceNotFoundError",
    "InvalidAccessKeyError",
    "InvalidRequestError",
    "MalformedResponseError",
    "PaginationError",
    "PermissionDeniedError",
    "SecurityTokenExpiredError",
    "ServerError",
    "SignatureMismatchError",
    "ThrottlingError",
    "TransportError",
    "classify_api_error",
]


class EiamError(Exception):
    """Base of all client errors. ``code`` is a short, bounded token usable as a label value."""

    retryable: bool = False
    code: str = "Error"

    def __init__(self, message: str, *, action: str | None = None, hint: str | None = None) -> None:
        self.message = redact(message)
        self.action = action
        self.hint = redact(hint) if hint else hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        head = f"{self.action} failed: {self.message}" if self.action else self.message
        if not self.hint:
            return head
        return f"{head}. {self.hint.rstrip('.')}."


class CredentialsError(EiamError):
    """No usable credential: the chain found nothing, or a source (STS, metadata) failed."""

    code = "CredentialsError"


class TransportError(EiamError):
    """The request did not complete: DNS, connect, TLS, reset, timeout. Usually transient."""

    retryable = True

    def __init__(self, message: str, *, kind: str, action: str | None = None) -> None:
        self.code = kind  # e.g. "ConnectTimeout", "ReadTimeout", "ConnectError"
        super().__init__(message, action=action)


class MalformedResponseError(EiamError):
    """The server answered, but not with the JSON the API documents.

    Covers an HTML page from a proxy, a truncated body, invalid JSON and a JSON shape that does
    not fit the model. Retried a bounded number of times, since truncation is often transient.
    """

    retryable = True
    code = "MalformedResponse"

    def __init__(
        self,
        message: str,
        *,
        action: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.http_status = http_status
        self.request_id = redact(request_id) if request_id else request_id
        super().__init__(message, action=action)


class PaginationError(EiamError):
    """Paging went wrong: a repeated NextToken, too many pages, or a listing that ended early."""

    retryable = False
    code = "PaginationError"


class ApiError(EiamError):
    """The API returned an error body (HTTP 4xx/5xx, or HTTP 200 carrying an error ``Code``)."""

    def __init__(
        self,
        *,
        api_code: str,
        api_message: str,
        request_id: str | None,
        http_status: int,
        action: str | None = None,
        hint: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        # All three come from the server: the code is a metric label, the message may quote
        # the refused request (credentials included), the RequestId is printed.
        self.code = api_code = redact(api_code)
        self.api_message = api_message = redact(api_message)
        self.request_id = request_id = redact(request_id) if request_id else request_id
        self.http_status = http_status
        self.retry_after = retry_after
        rid = f" [RequestId {request_id}]" if request_id else ""
        text = f"{api_code} (HTTP {http_status}): {api_message.strip() or 'no message'}{rid}"
        super().__init__(text, action=action, hint=hint)


class ThrottlingError(ApiError):
    """Throttling*: back off with jitter, honour ``x-acs-retry-after``."""

    retryable = True


class ServerError(ApiError):
    """5xx, ``ServiceUnavailable``, ``InternalError``: transient on the server side."""

    retryable = True


class AuthenticationError(ApiError):
    """The request was not authenticated. Never retried: the same request fails the same way."""


class SignatureMismatchError(AuthenticationError):
    """``SignatureDoesNotMatch``/``IncompleteSignature``: a wrong secret (or a signing bug)."""


class ClockSkewError(AuthenticationError):
    """``InvalidTimeStamp.Expired``: the local clock is more than 15 minutes off."""


class InvalidAccessKeyError(AuthenticationError):
    """``InvalidAccessKeyId.NotFound``/``.Inactive``: unknown, deleted or disabled AccessKey."""


class SecurityTokenExpiredError(AuthenticationError):
    """An STS token the server considers expired: refresh the credential and retry once."""

    retryable = True


class PermissionDeniedError(ApiError):
    """``Forbidden*``: the identity lacks a RAM permission."""


class InstanceNotFoundError(ApiError):
    """``ResourceNotFound.Instance`` (or any not-found naming the instance): wrong InstanceId."""


class InvalidRequestError(ApiError):
    """``InvalidParameter*``/``MissingParameter*`` and other client-side mistakes."""


_THROTTLING = {"Throttling", "Throttling.User", "Throttling.Api", "Rejected.Throttling"}
_SERVER = {"ServiceUnavailable", "InternalError", "InternalError.System", "ServiceTimeout"}


def classify_api_error(
    http_status: int,
    api_code: str | None,
    api_message: str | None,
    request_id: str | None,
    *,
    action: str | None = None,
    retry_after: float | None = None,
) -> ApiError:
    """Map an error response to the matching typed error, with an actionable hint."""
    code = (api_code or "").strip() or f"HTTP{http_status}"
    cls, hint = _classify(http_status, code, action)
    return cls(
        api_code=code,
        api_message=(api_message or "").strip(),
        request_id=request_id,
        http_status=http_status,
        action=action,
        hint=hint,
        retry_after=retry_after,
    )


def _classify(http_status: int, code: str, action: str | None) -> tuple[type[ApiError], str | None]:
    """Pick the error class and the operator hint for an API error Code."""
    ram_action = f"eiam:{action}" if action else "the eiam:List*/Get* actions"
    lowered = code.lower()
    if code in _THROTTLING or lowered.startswith("throttling") or http_status == 429:
        return ThrottlingError, (
            "The API is throttling this account; lower the exporter's request rate "
            "or raise the poll interval if this persists"
        )
    if code in {"SignatureDoesNotMatch", "IncompleteSignature"}:
        return SignatureMismatchError, (
            "Check that the AccessKey secret belongs to this AccessKey ID "
            "(a wrong or truncated secret is the usual cause)"
        )
    if code == "SignatureNonceUsed":
        # Retryable: the client generates a new nonce for every attempt.
        return ServerError, "The nonce was reused; retried with a new one"
    if code.startswith("InvalidAccessKeyId"):
        state = "disabled" if code.endswith("Inactive") else "unknown or deleted"
        return InvalidAccessKeyError, (
            f"The AccessKey ID is {state}; check the credential source the exporter "
            "logged at start-up and enable or replace the key in the RAM console"
        )
    if code.startswith("InvalidTimeStamp") or "timestamp" in lowered:
        return ClockSkewError, (
            "This machine's clock is more than 15 minutes off Alibaba Cloud's; "
            "synchronise it with NTP (chrony or systemd-timesyncd) and restart"
        )
    if "securitytoken" in lowered or ("token" in lowered and "expired" in lowered):
        return SecurityTokenExpiredError, "The STS token expired; it is refreshed and retried once"
    if code.startswith("Forbidden") or code in {"NoPermission", "AccessDenied"}:
        return PermissionDeniedError, (
            f"Grant the RAM action {ram_action} to this identity, for example with "
            "the system policy AliyunIDaaSEiamReadOnlyAccess"
        )
    if "instance" in lowered and ("notfound" in lowered or "notexist" in lowered):
        return InstanceNotFoundError, (
            "Check the InstanceId (idaas_...) and the region or endpoint: the instance "
            "does not exist there"
        )
    if code in _SERVER or http_status >= 500:
        return ServerError, "A server-side error; retried with backoff"
    return InvalidRequestError, None
