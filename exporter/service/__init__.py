"""The service: the polling loop and its I/O around the pure core.

``poller`` (one loop per IDaaS instance), ``daemon`` (wiring, the commit order, signals),
``state_store`` (the state file on disk), ``clients`` (API clients from the settings). They
may import the core, the API client, the web edge and the process set-up, never a command.
"""
