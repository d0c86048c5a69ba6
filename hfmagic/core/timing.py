"""The clocks every measurement runs on: a timed loop of runs (a latency per run, in ms, from
``perf_counter_ns``) and, for a generation, the time after each new token."""

from __future__ import annotations

import time


def timed_runs(fn, min_runs: int, min_time: float) -> list[float]:
    """Run ``fn`` until at least ``min_runs`` runs and ``min_time`` seconds; latencies in ms."""
    clock = time.perf_counter_ns
    limit = int(min_time * 1e9)
    samples = []
    start = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append(t1 - t0)
        if len(samples) >= min_runs and t1 - start >= limit:
            return [s / 1e6 for s in samples]


def token_clock(stamps: list | None, each=None):
    """generate()'s stopping criteria that only note the time after each new token in ``stamps``
    and hand ``each`` (when given) the sequences so far; None when neither is asked for."""
    if stamps is None and each is None:
        return None
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Clock(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            if stamps is not None:
                stamps.append(time.perf_counter_ns())
            if each is not None:
                each(input_ids)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Clock()])
