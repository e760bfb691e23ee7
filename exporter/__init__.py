"""idaas-sync-exporter: Prometheus metrics for Alibaba Cloud IDaaS (EIAM) synchronization jobs."""

import sys
from importlib import metadata

# httpx imports its optional command-line client at import time; where click and pygments are
# installed (development environments, images with other tools) that costs 1.5 MB of RSS for
# code the exporter never runs. Without the module, httpx defines a stub (its documented
# fallback when the CLI's dependencies are missing): nothing else changes.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

try:
    __version__ = metadata.version("idaas-sync-exporter")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
