"""The pure core: job tracking (exactly-once) and the ledger of counters. No I/O here."""
