"""Sub-commands of ``idaas-sync-exporter``: one module per command."""
