"""The pure core: no I/O, no clock, no network — data in, data out.

``tracker`` (which jobs are new, in progress, newly terminal: exactly-once), ``ledger`` (the
counters and last-* values they produce), ``instance`` (one instance's tracker and ledger),
``contract`` (every metric family the exporter serves, built from one input), ``exposition``
(rendering families as text and OpenMetrics, and the snapshot a scrape is served from),
``statecodec`` (the state file's format). Only the API's data types are imported from below.
"""
