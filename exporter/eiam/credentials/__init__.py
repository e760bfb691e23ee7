"""Alibaba Cloud credentials: the value type, the provider interface and the default chain."""

from exporter.eiam.credentials.base import (
    Credential,
    CredentialsProvider,
    StaticCredentialsProvider,
)

__all__ = ["Credential", "CredentialsProvider", "StaticCredentialsProvider"]
