"""idaas-sync-exporter: Prometheus metrics for Alibaba Cloud IDaaS (EIAM) synchronization jobs."""

from importlib import metadata

try:
    __version__ = metadata.version("idaas-sync-exporter")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
