"""benchmark(): latency, throughput and memory of variants x backends x shapes."""
