"""One replica of a served variant: a Ray Serve deployment that loads the variant on its backend
once (:class:`~hfmagic.measure.runner.Runner`, as %evaluate runs it) and answers each HTTP request
with the task's prediction, through Ray Serve's dynamic batching (``@serve.batch``: requests that
arrive within the batch wait are run as one batch, up to the largest batch).

A request is JSON ``{"inputs": EXAMPLE}`` (a text) or ``{"inputs": [EXAMPLE, ...]}``; the answer
is ``{"predictions": [...], "server_ms": ..., "batch_sizes": [...], "replica": ...}``: the task's
predictions (a classifier's label and score), the time the replica spent on the request from its
arrival to its answer (queueing for a batch included), and the size of the batch each example ran
in. Imported on the replica's node and by ``serve()``, never at ``%load_ext`` (it imports Ray Serve).
"""

from __future__ import annotations

import os
import time

from ray import serve

from hfmagic.core.telemetry import ray_off


def answers(model, outputs: dict) -> list[dict]:
    """A classifier's predictions from a batch's outputs: each example's label (the config's
    ``id2label``) and its softmax probability."""
    import numpy as np

    logits = np.asarray(outputs["logits"], dtype=np.float64)
    labels = model.config.get("id2label") or {}
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs = shifted / shifted.sum(axis=-1, keepdims=True)
    best = probs.argmax(axis=-1)
    return [{"label": labels.get(str(int(i)), labels.get(int(i), str(int(i)))), "score": float(p[i])}
            for i, p in zip(best, probs)]


@serve.deployment(ray_actor_options={"num_cpus": 1})
class Replica:
    """A variant loaded once; ``__call__`` answers an HTTP request (see the module docstring)."""

    def __init__(self, spec: dict, backend: str | None, threads: int, max_batch: int, batch_wait_s: float,
                 delay_ms: float = 0.0):
        ray_off()
        from hfmagic.measure.runner import Runner
        from hfmagic.measure.spec import variant_from_spec

        self.variant = variant_from_spec(spec)
        self.model = self.variant.model
        self.runner = Runner(self.variant, threads, backend)
        self.model.preprocessor()  # loaded (and kept by the handle) before the first request, not during it
        self.delay_s = delay_ms / 1000  # a server made slow on purpose (tests): added to every batch
        self.predict.set_max_batch_size(max_batch)
        self.predict.set_batch_wait_timeout_s(batch_wait_s)
        self.name = f"{os.uname().nodename}:{os.getpid()}"

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def predict(self, examples: list) -> list[dict]:
        inputs = self.model.task_plugin.inputs
        outputs = self.runner.run(inputs.encode(self.model, list(examples)))
        if self.delay_s:
            time.sleep(self.delay_s)
        return [{**a, "batch_size": len(examples)} for a in answers(self.model, outputs)]

    async def __call__(self, request) -> dict:
        import asyncio

        arrived = time.perf_counter()
        body = await request.json()
        examples = body.get("inputs") if isinstance(body, dict) else None
        one = isinstance(examples, str)
        if one:
            examples = [examples]
        if not examples or not all(isinstance(e, str) for e in examples):
            from starlette.responses import JSONResponse

            return JSONResponse({"error": 'send JSON {"inputs": "a text"} or {"inputs": ["a text", ...]}'},
                                status_code=400)
        done = await asyncio.gather(*(self.predict(e) for e in examples))
        return {"predictions": [{k: v for k, v in d.items() if k != "batch_size"} for d in done],
                "batch_sizes": [d["batch_size"] for d in done], "replica": self.name,
                "server_ms": (time.perf_counter() - arrived) * 1000}
