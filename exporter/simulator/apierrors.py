"""The error the simulated gateway and actions raise, and the codes it uses.

One exception type carries what the error body needs (HTTP status, ``Code``, ``Message``) plus
extra response headers (``x-acs-retry-after`` for throttling). Codes and statuses follow what
Alibaba Cloud's gateway returns (``eiam-api.md`` §6), so the client's classification is tested
against the real vocabulary.

>>> err = ApiError.signature_mismatch("ACS3-HMAC-SHA256\\nabc")
>>> err.status, err.code
(400, 'SignatureDoesNotMatch')
"""

from __future__ import annotations

__all__ = ["ApiError"]


class ApiError(Exception):
    """An API error response: ``{RequestId, HostId, Code, Message, Recommend}`` with *status*."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    # -- the gateway's vocabulary -------------------------------------------------------------

    @classmethod
    def incomplete_signature(cls, detail: str) -> ApiError:
        return cls(
            400, "IncompleteSignature", f"The request signature does not conform to Aliyun "
            f"standards. {detail}",
        )  # fmt: skip

    @classmethod
    def signature_mismatch(
        cls, string_to_sign: str, *, canonical_request: str | None = None
    ) -> ApiError:
        """What the gateway echoes: its string to sign, and for V3 its canonical request.

        Both hold what the client sent, verbatim: the RPC string to sign every parameter
        (``SecurityToken`` and ``AccessKeyId`` included, percent-encoded twice), the V3
        canonical request every signed header (``x-acs-security-token`` included). A client
        must treat this message as carrying its own credentials. Newlines show as ``#``.

        >>> err = ApiError.signature_mismatch(
        ...     "ACS3-HMAC-SHA256\\nabc", canonical_request="POST\\n/\\nx-acs-security-token:T\\n"
        ... )
        >>> err.message.split("is:")[1:]
        ['ACS3-HMAC-SHA256#abc. Server canonical request ', 'POST#/#x-acs-security-token:T#']
        """
        shown = string_to_sign.replace("\n", "#")
        message = (
            f"Specified signature does not match our calculation. Server string to sign is:{shown}"
        )
        if canonical_request is not None:
            shown_request = canonical_request.replace("\n", "#")
            message += f". Server canonical request is:{shown_request}"
        return cls(400, "SignatureDoesNotMatch", message)

    @classmethod
    def access_key_not_found(cls) -> ApiError:
        return cls(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")

    @classmethod
    def access_key_inactive(cls) -> ApiError:
        return cls(403, "InvalidAccessKeyId.Inactive", "Specified access key is disabled.")

    @classmethod
    def timestamp_expired(cls, value: str, server_time: str) -> ApiError:
        return cls(
            400,
            "InvalidTimeStamp.Expired",
            f"Specified time stamp or date value is expired. Request time {value}, "
            f"server time {server_time}; the difference must be within 15 minutes.",
        )

    @classmethod
    def timestamp_format(cls, value: str) -> ApiError:
        return cls(
            400,
            "InvalidTimeStamp.Format",
            f"Specified time stamp or date value {value!r} is not well formatted "
            "(expected YYYY-MM-DDThh:mm:ssZ in UTC).",
        )

    @classmethod
    def nonce_used(cls) -> ApiError:
        return cls(400, "SignatureNonceUsed", "Specified signature nonce was used already.")

    @classmethod
    def missing_security_token(cls) -> ApiError:
        return cls(
            400,
            "MissingSecurityToken",
            "SecurityToken is mandatory for an STS access key (header x-acs-security-token "
            "or parameter SecurityToken).",
        )

    @classmethod
    def invalid_security_token(cls) -> ApiError:
        return cls(
            400,
            "InvalidSecurityToken.Mismatch",
            "Specified SecurityToken does not match the access key.",
        )

    @classmethod
    def security_token_expired(cls) -> ApiError:
        return cls(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")

    @classmethod
    def missing_parameter(cls, name: str) -> ApiError:
        return cls(400, f"MissingParameter.{name}", f"The input parameter {name} is mandatory.")

    @classmethod
    def invalid_parameter(cls, name: str, detail: str) -> ApiError:
        return cls(400, "InvalidParameter", f"The parameter {name} is invalid: {detail}")

    @classmethod
    def instance_not_found(cls, instance_id: str) -> ApiError:
        return cls(
            404,
            "ResourceNotFound.Instance",
            f"The specified instance {instance_id} does not exist.",
        )

    @classmethod
    def action_not_found(cls, action: str) -> ApiError:
        return cls(
            404,
            "InvalidAction.NotFound",
            f"Specified api {action!r} is not found, please check your url and method.",
        )

    @classmethod
    def invalid_version(cls, version: str) -> ApiError:
        return cls(
            400,
            "InvalidVersion",
            f"Specified parameter Version {version!r} is not valid (expected 2021-12-01).",
        )

    @classmethod
    def throttled(cls, retry_after_ms: int) -> ApiError:
        return cls(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
            headers=(("x-acs-retry-after", str(retry_after_ms)),),
        )

    @classmethod
    def service_unavailable(cls) -> ApiError:
        return cls(
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        )

    @classmethod
    def internal_error(cls) -> ApiError:
        return cls(
            500,
            "InternalError",
            "The request processing has failed due to some unknown error, exception or failure.",
        )
