"""Per-organization, per-day counters of attempts and messages, kept by database triggers."""
