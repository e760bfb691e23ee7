"""The web edge: ``server`` (HTTP/1.1 on h11 and every limit a client meets), ``app`` (the
exporter's routes and landing page), ``config`` (the exporter-toolkit web config: TLS, basic
auth). It knows the exposition's snapshot type and nothing of polling or the API."""
