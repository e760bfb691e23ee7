"""Where the EIAM API lives: region → ``https://eiam.<region>.aliyuncs.com``, or a given base URL.

Why strict: a typo in the region silently sends signed requests to the wrong host, and plain
HTTP would put signed requests and STS tokens on the wire in clear. Plain ``http://`` is
therefore accepted only for loopback hosts (the built-in simulator, a local proxy).

>>> str(resolve_endpoint("cn-beijing"))
'https://eiam.cn-beijing.aliyuncs.com/'
>>> str(resolve_endpoint("cn-hangzhou", "http://127.0.0.1:8080"))
'http://127.0.0.1:8080/'
>>> resolve_endpoint("cn-hangzhou", "http://eiam.example.com")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
exporter.eiam.endpoint.EndpointError: endpoint http://eiam.example.com uses plain http:// ...
"""

from __future__ import annotations

import ipaddress
import re

import httpx

__all__ = ["DEFAULT_REGION", "EndpointError", "is_loopback_host", "resolve_endpoint"]

DEFAULT_REGION = "cn-hangzhou"
_REGION = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")


class EndpointError(ValueError):
    """The region or endpoint setting cannot be used; the message says how to fix it."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and any address in 127.0.0.0/8 or ``::1``."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_endpoint(region: str = DEFAULT_REGION, endpoint: str | None = None) -> httpx.URL:
    """Return the API base URL (path ``/``) for *endpoint* if given, else for *region*."""
    if endpoint:
        text = endpoint.strip()
        if "://" not in text:
            raise EndpointError(
                f"endpoint {text!r} has no scheme; give a full base URL such as https://{text}"
            )
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL as exc:
            raise EndpointError(f"endpoint {text!r} is not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise EndpointError(
                f"endpoint {text!r} must be an http(s) URL with a host, "
                "e.g. https://eiam.cn-hangzhou.aliyuncs.com"
            )
        if url.scheme == "http" and not is_loopback_host(url.host):
            raise EndpointError(
                f"endpoint {text} uses plain http:// to a non-loopback host; use https:// "
                "(plain http is allowed for 127.0.0.1, ::1 and localhost only)"
            )
        if url.query or url.fragment or url.path not in ("", "/"):
            raise EndpointError(
                f"endpoint {text!r} must be a base URL without path, query or fragment "
                "(the RPC-style API is served at /)"
            )
        return url.copy_with(path="/")
    name = region.strip()
    if not _REGION.match(name):
        raise EndpointError(
            f"region {region!r} is not a region ID; use one like cn-hangzhou, cn-beijing, "
            "cn-hongkong, ap-southeast-1 or eu-central-1"
        )
    return httpx.URL(f"https://eiam.{name}.aliyuncs.com/")
