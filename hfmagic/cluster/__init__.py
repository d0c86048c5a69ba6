"""Running workers and evaluation shards on a Ray cluster (and a local one for tests)."""
