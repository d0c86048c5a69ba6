"""One replica of a served variant: a Ray Serve deployment that loads the variant on its backend
once (:class:`~hfmagic.measure.runner.Runner`, as %evaluate runs it) and answers each HTTP request
with the task's prediction, through Ray Serve's dynamic batching (``@serve.batch``: requests that
arrive within the batch wait are run as one batch, up to the largest batch).

A request is JSON ``{"inputs": EXAMPLE}`` or ``{"inputs": [EXAMPLE, ...]}``, an example being what
the task reads (a text; a question and its context; an image or audio file in base64), or for an
image or audio model the file itself as the body. The task's :class:`~hfmagic.tasks.base.Requests`
decodes it and runs a batch through %evaluate's own prediction path, so an answer is the
prediction %evaluate scores. The answer is ``{"predictions": [...], "server_ms": ...,
"batch_sizes": [...], "replica": ...}``: the predictions, the time the replica spent on the
request from its arrival to its answer (queueing for a batch included), and the size of the batch
each example ran in. A request it cannot read gets HTTP 400 with one line saying what to send.
Imported on the replica's node and by ``serve()``, never at ``%load_ext`` (it imports Ray Serve).
"""

from __future__ import annotations

import os
import time

from ray import serve

from hfmagic.core.errors import UsageProblem
from hfmagic.core.telemetry import ray_off
from hfmagic.tasks.base import STREAM_TYPE


@serve.deployment(ray_actor_options={"num_cpus": 1})
class Replica:
    """A variant loaded once; ``__call__`` answers an HTTP request (see the module docstring)."""

    def __init__(self, spec: dict, backend: str | None, threads: int, max_batch: int, batch_wait_s: float,
                 delay_ms: float = 0.0, folders: dict | None = None, holders: dict | None = None):
        ray_off()
        from hfmagic.measure.runner import Runner
        from hfmagic.measure.spec import variant_from_spec

        if folders:  # on a cluster's node: the model's and the variant's folders, from the object store
            from hfmagic.cluster.transfer import localize, materialize

            spec = localize(spec, {role: materialize(digest, (holders or {}).get(digest))[0]
                                   for role, digest in folders.items()})

        self.variant = variant_from_spec(spec)
        self.model = self.variant.model
        self.runner = Runner(self.variant, threads, backend)
        self.requests = self.model.task_plugin.requests
        import asyncio

        self.turn = asyncio.Lock()  # a decoder's streams take turns (one generation at a time)
        self.model.preprocessor()  # loaded (and kept by the handle) before the first request, not during it
        self.delay_s = delay_ms / 1000  # a server made slow on purpose (tests): added to every batch
        self.predict.set_max_batch_size(max_batch)
        self.predict.set_batch_wait_timeout_s(batch_wait_s)
        self.name = f"{os.uname().nodename}:{os.getpid()}"

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def predict(self, examples: list) -> list[dict]:
        answers = self.requests.predict(self.model, self.runner, list(examples))
        if self.delay_s:
            time.sleep(self.delay_s)
        return [{**a, "batch_size": len(examples)} for a in answers]

    async def _stream(self, request, arrived: float):
        """A decoder's answer, streamed: one JSON line per new token as it is made, then a line of
        the whole (hfmagic.tasks.generation.requests). One generation at a time per replica."""
        import asyncio
        import json

        from starlette.responses import StreamingResponse

        try:
            body = await request.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        prompt = self.requests.example(self.model, body.get("inputs"))
        new_tokens = self.requests.new_tokens(self.model, body, prompt)

        async def lines():
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue = asyncio.Queue()
            async with self.turn:
                started = time.perf_counter()

                def work():
                    try:
                        return self.requests.stream(self.model, self.runner, prompt, new_tokens,
                                                    lambda text: loop.call_soon_threadsafe(queue.put_nowait, text))
                    finally:
                        loop.call_soon_threadsafe(queue.put_nowait, None)

                job = loop.run_in_executor(None, work)
                first, count = None, 0
                while (text := await queue.get()) is not None:
                    first, count = first or time.perf_counter(), count + 1
                    yield json.dumps({"token": text}) + "\n"
                try:
                    whole = await job
                except Exception as exc:  # the stream has begun: its last line says what broke
                    yield json.dumps({"error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}) + "\n"
                    return
            now = time.perf_counter()
            yield json.dumps({"done": True, "text": whole, "tokens": count, "replica": self.name,
                              "queue_ms": (started - arrived) * 1000,
                              "server_ttft_ms": (first - arrived) * 1000 if first else None,
                              "server_ms": (now - arrived) * 1000}) + "\n"

        return StreamingResponse(lines(), media_type=STREAM_TYPE)

    async def _examples(self, request) -> list:
        """The request's examples, decoded; a request that cannot be read raises UsageProblem."""
        shape = self.requests.SHAPE
        if self.requests.FILES and request.headers.get("content-type", "").startswith(self.requests.FILES):
            return [self.requests.example(self.model, await request.body())]
        try:
            body = await request.json()
        except ValueError:
            body = None
        values = body.get("inputs") if isinstance(body, dict) else None
        if values is None or values == []:
            raise UsageProblem(f'send JSON {{"inputs": {shape}}} or {{"inputs": [{shape}, ...]}}')
        return [self.requests.example(self.model, v) for v in (values if isinstance(values, list) else [values])]

    async def __call__(self, request) -> dict:
        import asyncio

        arrived = time.perf_counter()
        try:
            if self.requests.STREAMS:
                return await self._stream(request, arrived)
            examples = await self._examples(request)
        except UsageProblem as exc:
            from starlette.responses import JSONResponse

            return JSONResponse({"error": str(exc)}, status_code=400)
        done = await asyncio.gather(*(self.predict(e) for e in examples))
        return {"predictions": [{k: v for k, v in d.items() if k != "batch_size"} for d in done],
                "batch_sizes": [d["batch_size"] for d in done], "replica": self.name,
                "server_ms": (time.perf_counter() - arrived) * 1000}
