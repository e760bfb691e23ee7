"""The web edge: ``server`` (HTTP/1.1 on h11 and every limit a client meets), ``app`` (the
exporter's routes), ``landing`` (the landing page: what fails now, per target and instance),
``config`` (the exporter-toolkit web config: TLS, basic auth). It knows the exposition's
snapshot and the view it was rendered from, and nothing of polling or the API."""
