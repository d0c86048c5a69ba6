"""optimize(): the fastest variant x backend that keeps the accuracy."""
