"""``python -m exporter`` is the same as the ``idaas-sync-exporter`` console script."""

from exporter.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
