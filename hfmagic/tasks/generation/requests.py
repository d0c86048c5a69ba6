"""What a served decoder takes and answers (see :class:`hfmagic.tasks.base.Requests`).

A request is ``{"inputs": "a prompt", "max_new_tokens": 64}``; the answer is streamed as it is
generated, as newline-delimited JSON (``application/x-ndjson``): one line per new token
(``{"token": "its text"}``), then ``{"done": true, "text", "tokens", "server_ttft_ms",
"server_ms", "queue_ms"}``. The generation is %benchmark's: greedy, exactly ``max_new_tokens``
tokens (no stop at end-of-text, as vLLM's serving benchmark with ``--ignore-eos``: every request
of a load test costs the same), on the variant's own backend. A replica generates one request at a
time (the others wait their turn: the wait is in their time to first token); batching several
generations in flight is a serving engine's work (vLLM, TGI), not this replica's.
"""

from __future__ import annotations

from hfmagic.core.errors import UsageProblem
from hfmagic.data.tables import texts_of
from hfmagic.tasks.base import LOAD_SAMPLES, Requests

NEW_TOKENS = 64  # a request's new tokens unless it says max_new_tokens


class PromptRequests(Requests):
    SHAPE = '"a prompt"'
    STREAMS = True

    def check(self, model) -> None:
        if model.tokenizer() is None:
            raise UsageProblem(f"{model.name} has no tokenizer to read prompts with; serve a model saved with one")

    def example(self, model, value):
        if not isinstance(value, str) or not value.strip():
            raise UsageProblem('send JSON {"inputs": "a prompt", "max_new_tokens": 64} (one non-empty prompt per '
                               f"request: its tokens stream back); got {type(value).__name__}")
        return value

    def new_tokens(self, model, body: dict, prompt: str) -> int:
        """The request's ``max_new_tokens`` (default :data:`NEW_TOKENS`), checked against the context."""
        asked = body.get("max_new_tokens", NEW_TOKENS)
        if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
            raise UsageProblem(f"max_new_tokens must be a whole number of tokens, at least 1; got {asked!r}")
        prompt_tokens = len(model.tokenizer()(prompt)["input_ids"])
        limit = model.max_positions
        if limit and prompt_tokens + asked > limit:
            raise UsageProblem(f"the prompt's {prompt_tokens} tokens and {asked} new ones do not fit {model.name}'s "
                               f"context of {limit}; send a shorter prompt or fewer max_new_tokens")
        return asked

    def stream(self, model, runner, prompt: str, new_tokens: int, emit) -> str:
        """Generate ``new_tokens`` after ``prompt`` on the runner's backend, calling ``emit(text)``
        with each new token's text as it comes (the text it adds to what came before: a token that
        ends inside a character adds ""); the whole new text."""
        import numpy as np

        from hfmagic.tasks.generation.decoding import generation_config, greedy

        tokenizer = model.tokenizer()
        ids = np.asarray(tokenizer(prompt, return_tensors="np")["input_ids"], dtype=np.int64)
        config = runner.backend.generation_settings(generation_config(model, new_tokens))
        made: list[int] = []
        said = [""]

        def each(sequences) -> None:
            newest = getattr(sequences, "tokens", None)
            made.append(int(newest[0]) if newest else int(sequences[0, -1]))
            text = tokenizer.decode(made, skip_special_tokens=True)
            emit(text[len(said[0]):] if text.startswith(said[0]) else text)
            said[0] = text

        greedy(runner.backend.generator(), {"input_ids": ids, "attention_mask": np.ones_like(ids)}, config, each=each)
        return said[0]

    def sent(self, model, data=None):
        if data is None:
            prompts, source = self.task.inputs.samples(model, LOAD_SAMPLES)
            return list(prompts), source
        return texts_of(data)
